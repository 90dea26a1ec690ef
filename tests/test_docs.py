"""Docs: the configuration reference names every key of the schema and no other; links resolve."""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import pytest

from logship.config.load import Config
from logship.config.outputs import Output

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "configuration.md"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
#: Config fields that load() fills in itself, not keys of the file
NOT_KEYS = {"file"}


def schema_keys(cls: type = Config, prefix: str = "") -> set[str]:
    """Every key path of the dataclass `cls`: `broker.prefetch`, `queues[].name`, `outputs[file].rotate.size`."""
    keys: set[str] = set()
    hints = get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if not field.init or (not prefix and field.name in NOT_KEYS):
            continue
        keys |= _keys_of(hints[field.name], f"{prefix}{field.name}")
    return keys


def _keys_of(hint: Any, key: str) -> set[str]:
    """The key itself, or the keys inside it when it is a table or an array of tables."""
    origin = get_origin(hint)
    if origin is tuple and dataclasses.is_dataclass(get_args(hint)[0]):
        return _table_keys(get_args(hint)[0], f"{key}[]")
    if origin in (types.UnionType, typing.Union):
        tables = [a for a in get_args(hint) if dataclasses.is_dataclass(a)]
        if tables:  # an optional table: the key (unset means off) and its own keys
            return {key} | set().union(*(_table_keys(t, key) for t in tables))
    if dataclasses.is_dataclass(hint):
        return _table_keys(hint, key)
    return {key}


def _table_keys(cls: type, key: str) -> set[str]:
    """Keys of a table; for an output, the common keys as `outputs[].x`, per type as `outputs[TYPE].x`."""
    if cls is not Output:
        return schema_keys(cls, f"{key}.")
    common = schema_keys(Output, f"{key}.")
    names = {k.rpartition(".")[2] for k in common}
    typed = set()
    for kind, variant in Output.variants.items():
        typed |= {k for k in schema_keys(variant, f"{key[:-2]}[{kind}].")
                  if k.split("].", 1)[1].split(".")[0] not in names}
    return common | typed


def documented_keys() -> set[str]:
    """The keys in the first column of the tables under "## Keys" of the reference."""
    text = REFERENCE.read_text()
    section = text.split("\n## Keys\n", 1)[1].split("\n## ", 1)[0]
    keys = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            keys |= set(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return keys


def test_the_schema_walk_finds_keys_of_every_kind():
    keys = schema_keys()
    assert {"broker.prefetch", "queues[].name", "outputs[].name", "outputs[].type", "outputs[file].path",
            "outputs[file].rotate", "outputs[file].rotate.size", "outputs[syslog].address",
            "routes[].when", "quarantine.path", "log.level", "metrics.listen"} <= keys
    assert "outputs[file].name" not in keys and "file" not in keys


def test_every_config_key_is_in_the_reference():
    missing = sorted(schema_keys() - documented_keys())
    assert not missing, f"keys in the schema but not in docs/configuration.md: {missing}"


def test_every_key_in_the_reference_exists():
    unknown = sorted(documented_keys() - schema_keys())
    assert not unknown, f"keys in docs/configuration.md but not in the schema: {unknown}"


# --- links ---

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^ *```.*?^ *```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path: Path) -> set[str]:
    """The anchors GitHub makes from a page's headings (lower case, punctuation dropped, -N for repeats)."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_headings(path.read_text()):
        slug = re.sub(r"[^\w\- ]", "", line.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def prose_headings(text: str) -> list[str]:
    """The headings' text (code spans keep their content, as GitHub's anchors do)."""
    text = re.sub(r"^ *```.*?^ *```", "", text, flags=re.S | re.M)
    return [m.group(1) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)]


def links() -> list[tuple[Path, str]]:
    """Every relative link of the README and the docs pages, with the page it is on."""
    return [(page, target) for page in PAGES for target in LINK.findall(prose(page.read_text()))
            if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page, target", links(), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_every_relative_link_points_at_an_existing_file_and_anchor(page, target):
    file, _, anchor = target.partition("#")
    path = (page.parent / file).resolve() if file else page
    assert path.exists(), f"{page.name}: {target}: no file {path}"
    if anchor:
        assert path.suffix == ".md", f"{page.name}: {target}: an anchor into a file that is not Markdown"
        assert anchor in anchors(path), f"{page.name}: {target}: no heading makes #{anchor} in {path.name}"


def test_the_link_check_sees_links_and_anchors():
    assert (ROOT / "README.md", "docs/configuration.md") in links()
    assert "queues-and-scopes-one-record-per-attempt-never-twice" in anchors(REFERENCE)
    assert "outputs-with-type--file" in anchors(REFERENCE)


# --- code blocks that must match what the code and the tests do ---

def blocks(text: str) -> list[str]:
    """The fenced code blocks of a Markdown text, without their fences."""
    return re.findall(r"^ *```[^\n]*\n(.*?)^ *```", text, flags=re.S | re.M)


def shipped_format_samples() -> dict[str, list[str]]:
    """Format name -> the sample lines docs/formats.md shows for it."""
    section = (DOCS / "formats.md").read_text().split("\n## Shipped formats\n", 1)[1].split("\n## ", 1)[0]
    samples = {}
    for chunk in re.split(r"^(?=`\w+`(?: —|:\n))", section, flags=re.M)[1:]:
        samples[re.match(r"`(\w+)`", chunk).group(1)] = blocks(chunk)[0].splitlines()
    return samples


RECEIVED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")  # record.received; attempt times have no ms


def test_the_docs_show_every_shipped_format():
    assert sorted(shipped_format_samples()) == sorted(p.stem for p in (ROOT / "formats").glob("*.j2"))


@pytest.mark.parametrize("name", sorted(shipped_format_samples()))
def test_the_shipped_format_samples_are_what_render_prints(workdir, name):
    from helpers import logship
    config = workdir / "logship.toml"
    config.write_text((ROOT / "tests" / "traffic" / "example.toml").read_text())
    # the command the page names, with the samples a wheel carries
    out = logship("render", "--config", str(config), "--format", name, "--sample", "results-queue-after-retry",
                  "--sample", "dns-failure")
    assert out.returncode == 0, out.stderr
    shown = shipped_format_samples()[name]
    header = re.match(r"\{#- header: (.*?) -#\}", (workdir / "formats" / f"{name}.j2").read_text())
    if header:  # a file output writes the header line first; render prints records only
        assert shown[0] == header.group(1)
        shown = shown[1:]
    assert [RECEIVED.sub("<received>", line) for line in shown] == \
           [RECEIVED.sub("<received>", line) for line in out.stdout.splitlines()]


def test_the_rsyslog_snippets_are_the_inputs_the_tests_run():
    import test_syslog_rsyslog as tested
    page = (DOCS / "syslog-output.md").read_text()
    inputs = set()
    for block in blocks(page):
        lines = [line for line in block.splitlines() if line.startswith(("module(", "input("))]
        if lines:
            text = re.sub(r'port="\d+"', 'port="{port}"', "\n".join(lines))
            inputs.add(re.sub(r'Socket="[^"]+"', 'Socket="{socket}"', text))
    assert inputs == {tested.TCP, tested.UDP, tested.TLS, tested.UNIX_5424}


def test_the_syslog_ng_snippet_is_the_source_the_tests_run():
    page = (DOCS / "syslog-output.md").read_text()
    source = re.search(r"syslog\(ip\(.*?\)\);", page).group(0)
    source = re.sub(r"port\(\d+\)", "port({self.port})", source)
    source = re.sub(r'transport\("\w+"\)', 'transport("{transport}")', source)
    assert source in (ROOT / "tests" / "syslog_receivers.py").read_text()


def test_the_alert_rules_name_only_metrics_logship_exports():
    source = "".join((ROOT / "logship" / "service" / name).read_text() for name in ("metrics.py", "attempt_metrics.py"))
    rules = "\n".join(b for b in blocks((DOCS / "operations.md").read_text()) if "alert:" in b)
    names = set(re.findall(r"\blogship_\w+", rules))
    assert names, "no alert rules in docs/operations.md"
    family = {n: re.sub(r"_(total|bucket|count|sum)$", "", n) for n in names}  # as the collector names it
    unknown = {n for n in names if f'"{n}"' not in source and f'"{family[n]}"' not in source}
    assert not unknown, f"alert rules name metrics that logship/service/ does not export: {sorted(unknown)}"


# --- the broker-side commands of docs/install.md, against the test run's RabbitMQ ---

def documented_permissions() -> list[list[str]]:
    """The configure, write and read expressions of each `rabbitmqctl set_permissions` line in install.md."""
    import shlex
    lines = re.findall(r"^rabbitmqctl set_permissions .*$", (DOCS / "install.md").read_text(), flags=re.M)
    return [shlex.split(line)[-3:] for line in lines]


@pytest.mark.parametrize("declare", [False, True], ids=["consumes", "declares"])
def test_the_documented_permissions_let_logship_consume_and_nothing_more(rabbit, tmp_path, declare):
    import uuid

    from helpers import RunningDaemon, expected_attempts, line_count, publish, queue_depth, traffic, wait_for
    configure, write, read = documented_permissions()[1 if declare else 0]
    assert write == "^$" and (configure == "^$") != declare
    vhost, user = rabbit.new_vhost(), f"logship-{uuid.uuid4().hex[:8]}"
    rabbit.ctl("add_user", user, "secret")
    rabbit.ctl("set_permissions", "-p", vhost, user, configure, write, read)
    guest = rabbit.vhost_url(vhost)
    events = traffic(30)
    publish(guest, events)
    queues = "".join(f'[[queues]]\nname = "{q}"\ndeclare = {str(declare).lower()}\n' for q in ("results", "retry"))
    config = tmp_path / "logship.toml"
    config.write_text(f'[broker]\nurl = "amqp://{user}:secret@127.0.0.1:{rabbit.port}/{vhost}"\n\n{queues}\n'
                      f'[formats]\ndir = "{ROOT / "formats"}"\n\n'
                      '[[outputs]]\nname = "out"\ntype = "file"\npath = "out.log"\n\n'
                      '[[routes]]\nformat = "json"\noutput = "out"\n')
    expected = len(expected_attempts(events))
    with RunningDaemon(config) as daemon:
        wait_for(lambda: line_count(tmp_path / "out.log") >= expected, what="every attempt written")
        wait_for(lambda: queue_depth(guest, "results") + queue_depth(guest, "retry") == 0, what="every ack")
        assert daemon.stop() == 0
    assert line_count(tmp_path / "out.log") == expected
    assert "reconnecting to the broker" not in daemon.messages()


def install_block(containing: str) -> str:
    """The shell block of install.md that holds `containing`, its `VHOST=/` line left for the caller."""
    (block,) = [b for b in blocks((DOCS / "install.md").read_text()) if containing in b]
    return block


def run_as_documented(rabbit: Any, block: str, vhost: str) -> None:
    """Run a block of install.md with bash against the test node, on `vhost` instead of `/`."""
    import subprocess
    import textwrap
    script = textwrap.dedent(block).replace("VHOST=/\n", f"VHOST={vhost}\n", 1)
    assert f"VHOST={vhost}\n" in script, "the block no longer sets VHOST"
    prelude = f'rabbitmqctl() {{ command rabbitmqctl -q -n "{rabbit.name}" "$@"; }}\nset -e\n'
    done = subprocess.run(["bash", "-c", prelude + script], env=rabbit.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.broker
def test_the_dead_letter_steps_work_without_the_management_plugin_and_catch_what_logship_rejects(rabbit, tmp_path):
    import pika

    from helpers import RunningDaemon, queue_depth, wait_for
    vhost = rabbit.new_vhost()
    url = rabbit.vhost_url(vhost)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_declare("results", durable=True)
    run_as_documented(rabbit, install_block("dead-letter-exchange"), vhost)
    wait_for(lambda: "logship-dlx" in rabbit.ctl("list_queues", "-p", vhost, "name", "policy"), what="the policy")
    connection.channel().basic_publish("", "results", b"{not json")
    connection.close()
    config = tmp_path / "logship.toml"
    config.write_text(f'[broker]\nurl = "{url}"\n[[queues]]\nname = "results"\n[formats]\ndir = "{ROOT / "formats"}"\n'
                      '[[outputs]]\nname = "out"\ntype = "file"\npath = "out.log"\n'
                      '[[routes]]\nformat = "json"\noutput = "out"\n')
    with RunningDaemon(config) as daemon:
        wait_for(lambda: queue_depth(url, "logship-dead") == 1, what="the rejected body in logship-dead")
        assert daemon.stop() == 0
    assert b"{not json" in (tmp_path / "quarantine" / "quarantine.jsonl").read_bytes()


@pytest.mark.broker
def test_the_copy_queue_steps_bind_queues_of_logships_own_to_mailerqs_exchange(rabbit):
    import pika

    from helpers import queue_depth, wait_for
    vhost = rabbit.new_vhost()
    url = rabbit.vhost_url(vhost)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().exchange_declare("mailerq", "direct", durable=True)  # as MailerQ declares it
    run_as_documented(rabbit, install_block('"routing_key": "results"'), vhost)
    wait_for(lambda: "logship-retry" in rabbit.ctl("list_bindings", "-p", vhost, "destination_name"),
             what="the bindings")
    channel = connection.channel()
    for key in ("results", "retry", "retry"):
        channel.basic_publish("mailerq", key, b"{}")
    connection.close()
    wait_for(lambda: (queue_depth(url, "logship-results"), queue_depth(url, "logship-retry")) == (1, 2),
             what="a copy of each result in logship's queues")


def test_the_guarantees_page_has_a_held_row_for_every_fault_scenario() -> None:
    """The fault table (./tests/run tests/faults --figures) is not stale: a row per scenario, each held."""
    text = (DOCS / "guarantees.md").read_text()
    table = text[text.index("<!-- fault figures: begin -->"):text.index("<!-- fault figures: end -->")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith(("| fault |", "| --- "))]
    scenarios = re.findall(r"^def test_", (ROOT / "tests" / "faults" / "test_faults.py").read_text(), re.MULTILINE)
    assert len(rows) == len(scenarios), "run ./tests/run tests/faults --figures after adding or removing a scenario"
    assert all(row.rstrip(" |").endswith("yes") for row in rows), "a scenario that did not hold is in the table"
