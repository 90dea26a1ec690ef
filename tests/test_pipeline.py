"""The pipeline without a broker: routing, rendering, quarantine, failing outputs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import write_config
from logship.settings import load
from logship.errors import OutputError
from logship.render.formats import FormatSet
from logship.pipeline import Delivery, Pipeline
from logship.quarantine import Quarantine
from logship.render.record import Source
from logship.config.providers import PROVIDERS
from logship.render.deliverability import AttemptLabels
from logship.stats import Attempts

SAMPLES = Path(__file__).parent / "samples"

ROUTES = """
[[outputs]]
name = "all"
type = "file"
path = "log/all.log"

[[outputs]]
name = "acme"
type = "file"
path = "log/acme.log"

[[routes]]
format = "mailerq"
output = "all"

[[routes]]
format = "logfmt"
output = "acme"
when = "message.customer == 'acme' and record.outcome in ('bounced', 'expired')"

[[routes]]
format = "json"
output = "acme"
queues = ["retry"]
"""


class FakeSink:
    """Keeps lines in memory; can be told to fail its flushes."""

    def __init__(self, name: str) -> None:
        self.name, self.lines, self.held, self.failing = name, [], [], False
        self.routes: list[object] = []

    def write(self, record: dict, line: str, route: object = None) -> None:
        self.lines.append(line)
        self.routes.append(route)

    def flush(self) -> None:
        if self.failing:
            raise OutputError(f"{self.name}: disk full")
        self.held, self.lines = self.held + self.lines, []

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def pipeline(workdir: Path) -> Pipeline:
    """A pipeline over the config above with fake sinks."""
    config = load(write_config(workdir, "amqp://localhost", ROUTES))
    sinks = {output.name: FakeSink(output.name) for output in config.outputs}
    return Pipeline(config, FormatSet.load(config.formats.dir), sinks, Quarantine(config.quarantine.path))


def delivery(name: str, queue: str = "results", **changes: object) -> Delivery:
    """A sample as a delivery, with top-level fields changed."""
    message = json.loads((SAMPLES / name).read_text())
    message.update(changes)
    return Delivery(json.dumps(message).encode(), Source(queue, "all", queue != "retry"))


def test_routes_select_by_expression_and_queue(pipeline):
    assert pipeline.handle(delivery("dns-failure.json", customer="acme"))
    assert pipeline.handle(delivery("dns-failure.json", customer="globex"))
    assert pipeline.handle(delivery("retry-queue-first-attempt.json", "retry"))
    pipeline.flush()
    assert len(pipeline.sinks["all"].held) == 3
    acme = pipeline.sinks["acme"].held
    assert acme[0].startswith("time=2026-11-27T08:00:01Z outcome=bounced")
    assert json.loads(acme[1])["queue"] == "retry" and len(acme) == 2
    assert [r.format for r in pipeline.sinks["acme"].routes] == ["logfmt", "json"]  # the route reaches the sink


def test_an_undecodable_body_is_quarantined_raw_and_nothing_is_written(pipeline, workdir):
    body = (SAMPLES / "not-json.txt").read_bytes()
    assert not pipeline.handle(Delivery(body, Source("results")))
    pipeline.flush()
    kept = json.loads((workdir / "quarantine" / "quarantine.jsonl").read_text())
    assert kept["body"].encode() == body and kept["reason"].startswith("not JSON")
    assert pipeline.sinks["all"].held == []


def test_a_binary_body_is_quarantined_as_base64(pipeline, workdir):
    assert not pipeline.handle(Delivery(b"\xff\xfe\x00junk", Source("results")))
    pipeline.flush()
    kept = json.loads((workdir / "quarantine" / "quarantine.jsonl").read_text())
    assert kept["body_base64"] == "//4AanVuaw=="


def test_a_format_that_raises_quarantines_its_route_and_the_other_routes_write(pipeline, workdir):
    (workdir / "formats" / "logfmt.j2").write_text("{{ attempt.code // 0 }}")
    pipeline.formats = FormatSet.load(workdir / "formats")
    assert pipeline.handle(delivery("dns-failure.json", customer="acme")), "acked: the other route holds it"
    pipeline.flush()
    assert len(pipeline.sinks["all"].held) == 1 and pipeline.sinks["acme"].held == []
    kept = json.loads((workdir / "quarantine" / "quarantine.jsonl").read_text())
    assert "format 'logfmt': ZeroDivisionError" in kept["reason"]
    assert kept["routes"] == [{"format": "logfmt", "output": "acme", "attempt": 1, "reason": kept["reason"]}]
    assert pipeline.stats.route_failures == {("acme", "logfmt"): 1}
    assert pipeline.stats.render_errors == {"logfmt": 1} and not pipeline.stats.quarantined


def test_a_message_whose_every_route_fails_is_quarantined_whole_and_rejected(pipeline, workdir):
    for name in ("logfmt", "mailerq"):
        (workdir / "formats" / f"{name}.j2").write_text("{{ attempt.code // 0 }}")
    pipeline.formats = FormatSet.load(workdir / "formats")
    assert not pipeline.handle(delivery("dns-failure.json", customer="acme"))
    pipeline.flush()
    assert pipeline.sinks["all"].held == [] and pipeline.sinks["acme"].held == []
    kept = json.loads((workdir / "quarantine" / "quarantine.jsonl").read_text())
    assert "routes" not in kept and "and 1 more failed routes" in kept["reason"]
    assert pipeline.stats.quarantined == {"results": 1}


def test_a_failing_output_raises_on_flush_and_keeps_its_records(pipeline):
    pipeline.handle(delivery("dns-failure.json"))
    pipeline.sinks["all"].failing = True
    with pytest.raises(OutputError, match="all: disk full"):
        pipeline.flush()
    pipeline.sinks["all"].failing = False
    pipeline.flush()
    assert len(pipeline.sinks["all"].held) == 1


def counting(pipeline: Pipeline) -> Pipeline:
    """The pipeline with the deliverability counters on, as a daemon with metrics has it."""
    pipeline.stats.attempts = Attempts(AttemptLabels(PROVIDERS, 256))
    return pipeline


def test_an_attempt_counts_once_the_flush_before_the_ack_succeeds_and_only_once(pipeline):
    attempts = counting(pipeline).stats.attempts
    assert pipeline.handle(delivery("results-queue-after-retry.json"))  # every attempt: scope all
    pipeline.sinks["all"].failing = True
    with pytest.raises(OutputError):
        pipeline.flush()
    assert not attempts.by_provider, "counted before every output held it"
    pipeline.sinks["all"].failing = False
    pipeline.flush()
    pipeline.flush()
    made = len(json.loads((SAMPLES / "results-queue-after-retry.json").read_text())["results"])
    assert sum(attempts.by_provider.values()) == sum(attempts.by_status.values()) == made > 1
    assert len(pipeline.sinks["all"].held) == made  # as many as written, though two routes may take one


def test_a_delivery_quarantined_whole_counts_no_attempt_and_one_with_a_failed_route_counts_all(pipeline, workdir):
    attempts = counting(pipeline).stats.attempts
    (workdir / "formats" / "logfmt.j2").write_text("{{ attempt.code // 0 }}")
    pipeline.formats = FormatSet.load(workdir / "formats")
    assert pipeline.handle(delivery("dns-failure.json", customer="acme"))  # the route to acme fails
    (workdir / "formats" / "mailerq.j2").write_text("{{ attempt.code // 0 }}")
    pipeline.formats = FormatSet.load(workdir / "formats")
    assert not pipeline.handle(delivery("dns-failure.json", customer="acme"))  # every route fails
    pipeline.flush()
    assert attempts.by_provider == {("bounced", "other"): 1}


def test_an_attempt_whose_state_is_not_a_string_is_written_not_raised(pipeline):
    message = json.loads((SAMPLES / "dns-failure.json").read_text())
    message["results"][0]["state"] = ["process"]  # any JSON value may come where a string is expected
    assert pipeline.handle(Delivery(json.dumps(message).encode(), Source("results")))
    pipeline.flush()
    assert len(pipeline.sinks["all"].held) == 1


def test_a_message_nested_too_deep_to_write_back_still_quarantines_its_failed_route(pipeline, workdir):
    (workdir / "formats" / "logfmt.j2").write_text("{{ attempt.code // 0 }}")
    pipeline.formats = FormatSet.load(workdir / "formats")
    nested: object = 1
    for _ in range(600):  # orjson reads 1024 levels but writes only 254
        nested = [nested]
    body = json.loads((SAMPLES / "dns-failure.json").read_text()) | {"customer": "acme", "deep": nested}
    assert pipeline.handle(Delivery(json.dumps(body).encode(), Source("results")))
    pipeline.flush()
    kept = json.loads((workdir / "quarantine" / "quarantine.jsonl").read_text())
    assert kept["routes"][0]["format"] == "logfmt"
    assert json.loads(kept["body"])["deep"] == "(left out: nested too deep to write)"
    assert json.loads(kept["body"])["recipient"] == body["recipient"]
