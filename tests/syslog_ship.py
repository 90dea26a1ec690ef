"""Records from the samples and traffic, shipped through a SyslogSink the way the consumer does."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from logship.config.outputs import SyslogOutput
from logship.errors import OutputError
from logship.render.formats import FormatSet
from logship.render.record import Source, decode, records
from logship.sinks.syslog.sink import SyslogSink

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "samples"
FORMATS = FormatSet.load(ROOT / "formats")
#: STRUCTURED-DATA as an operator might configure it, hostile values included
SD = {"delivery@32473": {"recipient": "{{ message.recipient }}", "outcome": "{{ record.outcome }}",
                         "code": "{{ attempt.code }}", "description": "{{ attempt.description }}",
                         "subject": "{{ extracted.subject }}"}}


def sample_records() -> list[dict[str, Any]]:
    """Every record of every sample result message."""
    found = []
    for path in sorted(SAMPLES.glob("*.json")):
        try:
            message = decode(path.read_bytes())
        except Exception:
            continue  # not-a-result.json: quarantined, never shipped
        found += records(message, Source("results"), 1_700_000_000.5)
    return found


def traffic_records(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of generated traffic's final results (every attempt once)."""
    return [r for e in events if e["queue"] == "results"
            for r in records(e["body"], Source("results"), time.time())]


def rendered(batch: list[dict[str, Any]], formats: tuple[str, ...] = ("json",)) -> list[tuple[dict[str, Any], str]]:
    """(record, line) for each record in each format."""
    return [(r, FORMATS[name].render(r)) for r in batch for name in formats]


def output(address: str, **keys: Any) -> SyslogOutput:
    """A syslog output config for `address`."""
    return SyslogOutput(name="syslog", type="syslog", address=address, **keys)


def ship(sink: SyslogSink, items: list[tuple[dict[str, Any], str]], timeout: float = 20) -> None:
    """Write every item and flush until the sink has handed them all over, as the consumer would."""
    for record, line in items:
        sink.write(record, line)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sink.flush()
            return
        except OutputError:
            if time.monotonic() > deadline:
                raise
