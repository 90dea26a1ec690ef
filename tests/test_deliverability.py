"""Deliverability counters on a running daemon: every attempt once per counter, labels within bounds."""
from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path
from collections import Counter

import pytest

from helpers import (TRACE_OUTPUT as TRACE_ROUTE, RunningDaemon, line_count, logship, metrics_url, promtool, publish,
                     scrape, wait_for, write_config)
from logship.config.load import load
from logship.errors import ConfigError
from logship.config.providers import PROVIDERS
from provider_traffic import Expected, traffic

# One JSON line per record; the recipient "boom@..." makes it fail on every route (quarantined whole).
TRACE = ('{% if message.recipient.startswith("boom@") %}{{ 1 // 0 }}{% endif %}'
         '{{ {"recipient": message.recipient, "attempt": record.attempt_number} | json }}\n')
ROUTES = """
[[outputs]]
name = "all"
type = "file"
path = "log/all.jsonl"

[[outputs]]
name = "bounces"
type = "file"
path = "log/bounces.jsonl"

[[routes]]
format = "trace"
output = "all"

[[routes]]
format = "trace"
output = "bounces"
when = "record.outcome == 'bounced'"

[metrics]
listen = "127.0.0.1:0"

[metrics.providers]
acme = ["*.acme.example"]
"""
Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def family(sample: Sample, name: str, label: str) -> Counter[tuple[str, str]]:
    """(outcome, label value) -> count of one attempt counter, zeros left out."""
    return Counter({(dict(labels)["outcome"], dict(labels)[label]): value for (n, labels), value in sample.items()
                    if n == name and value})


def boom(i: int) -> dict:
    """A final result whose every route fails: quarantined whole, so none of its attempts count."""
    return {"queue": "results", "body": {"recipient": f"boom@{i}.example", "results": [
        {"state": "rcptto", "result": "error", "time": "2026-12-01 00:00:00", "from": "192.0.2.99",
         "code": 550, "status": "5.1.1"}]}}


@pytest.mark.broker
def test_every_attempt_across_hundreds_of_domains_and_ips_is_counted_once_in_each_counter(workdir, vhost_url):
    events, attempts = traffic(1500)
    assert len({a.source for a in attempts if a.source}) > 256 and len({e["body"]["recipient"] for e in events}) > 300
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    config = write_config(workdir, vhost_url, ROUTES)
    bounced = sum(1 for a in attempts if a.outcome == "bounced")
    started = time.time()
    publish(vhost_url, events + [boom(1), boom(2)])
    with RunningDaemon(config) as daemon:
        url = metrics_url(daemon)
        wait_for(lambda: line_count(workdir / "log" / "all.jsonl") == len(attempts)
                 and line_count(workdir / "log" / "bounces.jsonl") == bounced, what="every record written")
        wait_for(lambda: scrape(url)[("logship_unacked_deliveries", ())] == 0, what="everything settled")
        final, text = scrape(url), urllib.request.urlopen(url, timeout=5).read()
        ended = time.time()
        assert daemon.stop() == 0
        warnings = [e for e in daemon.log() if e["message"].startswith("metrics.max_sources reached")]
    assert final[("logship_deliveries_total", (("outcome", "quarantined"), ("queue", "results")))] == 2
    assert family(final, "logship_attempts_total", "provider") == Counter((a.outcome, a.provider) for a in attempts)
    assert family(final, "logship_attempts_by_status_total", "status") == \
        Counter((a.outcome, a.status) for a in attempts)
    check_sources(family(final, "logship_attempts_by_source_total", "source_ip"), attempts)
    assert len(warnings) == 1 and warnings[0]["max_sources"] == 256
    check_bounds(final)
    check_lag(final, attempts, started, ended)
    lint(text)


def lint(exposition: bytes) -> None:
    """promtool's lint of the whole /metrics page finds nothing."""
    result = subprocess.run([promtool(), "check", "metrics"], input=exposition, capture_output=True)
    assert result.returncode == 0 and not result.stdout + result.stderr, (result.stdout + result.stderr).decode()


def check_sources(counted: Counter[tuple[str, str]], attempts: list[Expected]) -> None:
    """The first 256 addresses keep their own label, exactly counted; the rest are `other`; none without one."""
    own = {source for _outcome, source in counted} - {"other", "none"}
    assert len(own) == 256
    assert counted == Counter((a.outcome, a.source if a.source in own else "other" if a.source else "none")
                              for a in attempts)


def check_bounds(sample: Sample) -> None:
    """Label sets within their bounds: the table plus `other`, status classes by shape, five outcomes."""
    providers = {dict(labels)["provider"] for name, labels in sample if name == "logship_attempts_total"}
    assert providers == {*PROVIDERS, "acme", "other"}  # every provider exported from the start, no more
    statuses = {dict(labels)["status"] for name, labels in sample if name == "logship_attempts_by_status_total"}
    assert all(re.fullmatch(r"[245]\.[0-7]|none", s) for s in statuses), statuses
    outcomes = {dict(labels)["outcome"] for name, labels in sample if name.startswith("logship_attempts")}
    assert outcomes == {"delivered", "deferred", "bounced", "expired", "failed"}


def check_lag(sample: Sample, attempts: list[Expected], started: float, ended: float) -> None:
    """Every attempt in the lag histogram once, each between publish and scrape (MailerQ's time is whole seconds)."""
    count = sample[("logship_attempt_lag_seconds_count", ())]
    assert count == len(attempts) == sample[("logship_attempt_lag_seconds_bucket", (("le", "+Inf"),))]
    low, high = sum(started - a.epoch - 1 for a in attempts), sum(ended - a.epoch for a in attempts)
    assert low <= sample[("logship_attempt_lag_seconds_sum", ())] <= high
    assert sample[("logship_attempt_lag_seconds_bucket", (("le", "1.0"),))] == 0  # stamped 5 s or more before


@pytest.mark.parametrize(("table", "key"), [
    ('[metrics.providers]\nAcme = ["acme.example"]\n', "metrics.providers.Acme"),
    ('[metrics.providers]\nacme = ["acme.example", "*acme"]\n', "metrics.providers.acme[1]"),
    ('[metrics.providers]\nacme = "acme.example"\n', "metrics.providers.acme"),
    ('[metrics.providers]\nacme = ["gmail.com"]\ngoogle = ["gmail.com"]\n', "metrics.providers.google[0]"),
    ("[metrics]\nmax_sources = 0\n", "metrics.max_sources"),
])
def test_a_bad_provider_table_or_source_cap_is_a_config_error_naming_the_key_and_file(tmp_path, table, key):
    config = write_config(tmp_path, "amqp://localhost/", table)
    with pytest.raises(ConfigError) as refused:
        load(config, {}, require_formats=False)
    assert refused.value.key == key and refused.value.file == str(config)


def test_the_config_table_extends_or_replaces_the_shipped_one(tmp_path):
    config = write_config(tmp_path, "amqp://localhost/", '[metrics.providers]\nacme = ["*.acme.example"]\n'
                          'orange = []\n\n[[outputs]]\nname = "all"\ntype = "file"\npath = "a.log"\n'
                          '[[routes]]\nformat = "json"\noutput = "all"\n')
    table = load(config, {}, require_formats=False).metrics.provider_table()
    assert table["acme"] == ("*.acme.example",) and "orange" not in table and table["google"] == PROVIDERS["google"]
    config.write_text(config.read_text().replace("[metrics.providers]", "[metrics]\nshipped_providers = false\n"
                                                 "[metrics.providers]"))
    assert load(config, {}, require_formats=False).metrics.provider_table() == {"acme": ("*.acme.example",)}


def test_logship_check_refuses_a_bad_provider_pattern_with_exit_78_naming_file_and_key(workdir):
    config = write_config(workdir, "amqp://localhost/", TRACE_ROUTE + '[metrics.providers]\nacme = ["acme..example"]\n')
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    result = logship("check", "--config", str(config))
    assert result.returncode == 78
    assert f"{config}: metrics.providers.acme[0]: 'acme..example' is not a domain" in result.stderr


DOCS = Path(__file__).resolve().parent.parent / "docs"


def fenced(page: Path, after: str, language: str) -> str:
    """The first ```language block of `page` after the line `after`."""
    text = page.read_text()
    rest = text[text.index(after):]
    return rest.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_documented_provider_table_is_the_shipped_one():
    section = (DOCS / "deliverability.md").read_text().split("## Providers", 1)[1].split("\n\n**Patterns", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (.+) \|$", section, re.M)
    assert {name: tuple(re.findall(r"`([^`]+)`", patterns)) for name, patterns in rows} == PROVIDERS


def test_the_documented_example_of_metrics_providers_loads(tmp_path):
    example = fenced(DOCS / "deliverability.md", "**Changing the table.**", "toml")
    config = write_config(tmp_path, "amqp://localhost/", example + "\n" + TRACE_ROUTE)
    table = load(config, {}, require_formats=False).metrics.provider_table()
    assert "orange" not in table and "*.onmicrosoft.com" in table["microsoft"] and table["acme"][1] == "*.acme.example"


def test_the_example_alert_rules_cover_providers_ips_lag_and_caps_and_promtool_accepts_them(tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(fenced(DOCS / "operations.md", "### Alerts", "yaml"))
    alerts = rules.read_text().count("- alert: ")
    assert {"ProviderDeferring", "SendingIPDeferredMoreThanItsPool", "LogshipLogsLagging", "LogshipQueueAtCap"} <= \
        set(re.findall(r"- alert: (\w+)", rules.read_text()))
    result = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0 and f"SUCCESS: {alerts} rules found" in result.stdout, result.stdout + result.stderr
