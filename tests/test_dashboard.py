"""The Grafana dashboards (health, deliverability): every query parses and names a metric a running daemon exports."""
from __future__ import annotations

import json
import re
import subprocess
from typing import Any, Iterator

import pytest

from helpers import (ROOT, TRACE_OUTPUT, RunningDaemon, line_count, metrics_url, promtool, publish, scrape, traffic,
                     wait_for, write_config)

DASHBOARD = ROOT / "contrib" / "grafana" / "logship.json"
DELIVERABILITY = ROOT / "contrib" / "grafana" / "deliverability.json"
DASHBOARDS = [DASHBOARD, DELIVERABILITY]
SAMPLES = ROOT / "tests" / "samples"
METRIC = re.compile(r"\b(?:logship|process)_[a-z_]+\b")
TRACE = ('{% if message.recipient.startswith("boom@") %}{{ 1 // 0 }}{% endif %}'
         '{{ {"recipient": message.recipient} | json }}\n')


def queries(node: Any) -> Iterator[str]:
    """Every PromQL expression in the dashboard: panel targets and template variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def test_the_dashboard_covers_throughput_backlog_latency_errors_reconnects_and_ack_age():
    named = {name for expr in queries(json.loads(DASHBOARD.read_text())) for name in METRIC.findall(expr)}
    assert {"logship_records_written_total", "logship_queue_messages",
            "logship_output_flush_duration_seconds_bucket", "logship_render_errors_total",
            "logship_route_failures_total", "logship_deliveries_total", "logship_broker_reconnects_total",
            "logship_last_ack_timestamp_seconds"} <= named


def test_the_deliverability_dashboard_covers_providers_sending_ips_status_classes_and_the_lag():
    dashboard = json.loads(DELIVERABILITY.read_text())
    named = {name for expr in queries(dashboard) for name in METRIC.findall(expr)}
    assert named == {"logship_attempts_total", "logship_attempts_by_source_total",
                     "logship_attempts_by_status_total", "logship_attempt_lag_seconds_bucket", "logship_build_info"}
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("deferral rate per provider", "bounce rate per provider", "per sending ip", "status classes", "lag"):
        assert topic in titles
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["instance", "provider"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_has_its_own_id_the_data_source_input_and_balanced_queries(path):
    dashboard = json.loads(path.read_text())
    for expr in queries(dashboard):
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in dashboard["panels"])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_query_is_promql_that_promtool_parses(path, tmp_path):
    exprs = [e for e in queries(json.loads(path.read_text())) if not e.startswith("label_values(")]
    rules = {"groups": [{"name": "panels", "rules": [{"record": f"panel:query{i}", "expr": grafana_free(e)}
                                                       for i, e in enumerate(exprs)]}]}
    (tmp_path / "rules.yml").write_text(json.dumps(rules))  # JSON is YAML
    result = subprocess.run([promtool(), "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def grafana_free(expr: str) -> str:
    """A panel query with Grafana's variables replaced by what they stand for."""
    for variable, value in (("$__rate_interval", "5m"), ("$__range", "1h"), ("$instance", ".*"), ("$provider", ".*")):
        expr = expr.replace(variable, value)
    return expr


@pytest.mark.broker
def test_every_metric_the_dashboard_queries_is_exported_by_a_running_daemon(workdir, vhost_url):
    (workdir / "formats" / "trace.j2").write_text(TRACE)
    config = write_config(workdir, vhost_url, TRACE_OUTPUT + '\n[metrics]\nlisten = "127.0.0.1:0"\n')
    boom = json.loads((SAMPLES / "dns-failure.json").read_text())
    events = traffic(200, seed=11) + [{"queue": "results", "body": {**boom, "recipient": "boom@x.example"}}]
    with RunningDaemon(config) as daemon:
        url = metrics_url(daemon)
        publish(vhost_url, events)
        wait_for(lambda: scrape(url)[("logship_deliveries_total", (("outcome", "quarantined"), ("queue", "results")))]
                 == 1, what="the failing message settled")
        wait_for(lambda: line_count(workdir / "log" / "all.jsonl") > 200, what="records written")
        exported = {name for name, _labels in scrape(url)}
        assert daemon.stop() == 0
    named = {name for path in DASHBOARDS for expr in queries(json.loads(path.read_text()))
             for name in METRIC.findall(expr)}
    assert named - exported == set(), f"the dashboard queries metrics the daemon does not export: {named - exported}"
