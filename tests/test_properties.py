"""Properties of the pipeline over arbitrary bodies and arbitrary formats (hypothesis).

Whatever arrives and whatever a user writes: handling a delivery never raises; every record is one
line, and one syslog message; a delivery handled as acked has each of its records written on each
route that took it or kept in the quarantine for that route; one rejected is in the quarantine whole.
The examples are few and derandomized (the `logship` profile in conftest.py): the suite never flakes,
and `HYPOTHESIS_PROFILE=explore` searches much further.
"""
from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import write_config
from logship.errors import MessageError
from logship.pipeline import Delivery, Pipeline
from logship.quarantine import Quarantine
from logship.render.formats import FormatError, FormatSet, compile_format
from logship.render.record import Source, decode, records
from logship.settings import load
from logship.sinks.syslog.message import MessageBuilder

SAMPLES = Path(__file__).parent / "samples"
SAMPLE_NAMES = ["accepted-tls.json", "dns-failure.json", "expired.json", "hostile-fields.json",
                "process-invalid.json", "response-pattern-overrides.json", "results-queue-after-retry.json",
                "retry-queue-first-attempt.json", "secrets-and-mime.json"]

ROUTES = """
[[outputs]]
name = "file"
type = "file"
path = "log/all.log"

[[outputs]]
name = "syslog"
type = "syslog"
address = "tcp://127.0.0.1:9"
framing = "lf"
msgid = "{{ record.outcome }}"

[[routes]]
format = "user"
output = "file"

[[routes]]
format = "json"
output = "file"

[[routes]]
format = "logfmt"
output = "file"
queues = ["retry"]

[[routes]]
format = "mailerq"
output = "syslog"

[[routes]]
format = "user"
output = "syslog"
when = "attempt.code > 400 or message.customer.startswith('a')"
"""

#: a format that reaches into most of what a message carries
USER_FORMAT = ("{{ message.recipient }} {{ message.envelope }} <{{ attempt.code }}> {{ attempt.time }} "
               "{{ message.extracted.subject }} {{ message.extracted.headers }} {{ record.outcome }} "
               "{{ attempt | json }} {{ message.tags | join(',') }}\n")


@dataclass
class Recorder:
    """A sink that keeps what it was given: (format, output, attempt number, line)."""

    name: str
    kept: list[tuple[str, str, int, str]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)  # as the quarantine's sink: its entries

    def write(self, record: dict[str, Any], line: str, route: Any = None) -> None:
        if route is None:  # the quarantine writes its entries this way
            self.entries.append(record)
            return
        self.kept.append((route.format, route.output, record["record"]["attempt_number"], line))

    def flush(self) -> None:
        pass

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class SyslogRecorder(Recorder):
    """A syslog sink without a socket: it builds each message as the real one would and keeps it."""

    builder: MessageBuilder | None = None
    frames: list[bytes] = field(default_factory=list)

    def write(self, record: dict[str, Any], line: str, route: Any = None) -> None:
        self.frames.append(self.builder.build(record, line, route))  # type: ignore[union-attr]
        super().write(record, line, route)


@dataclass
class Rig:
    """A pipeline over the config above, its recording sinks, and the shipped formats to start from."""

    pipeline: Pipeline
    file: Recorder
    syslog: SyslogRecorder
    quarantine: Recorder
    folder: Path
    base: FormatSet


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One pipeline for every example (examples share no state but what the recorders keep)."""
    folder = tmp_path_factory.mktemp("properties")
    (folder / "formats").mkdir()
    for path in (Path(__file__).resolve().parent.parent / "formats").glob("*.j2"):
        (folder / "formats" / path.name).write_text(path.read_text())
    (folder / "formats" / "user.j2").write_text(USER_FORMAT)
    config = load(write_config(folder, "amqp://localhost", ROUTES))
    syslog_output = next(o for o in config.outputs if o.name == "syslog")
    file, syslog = Recorder("file"), SyslogRecorder("syslog", builder=MessageBuilder(syslog_output))
    quarantine = Quarantine(config.quarantine.path)
    quarantine.sink = kept = Recorder("quarantine")  # type: ignore[assignment]
    base = FormatSet.load(config.formats.dir)
    assert not base.errors
    pipeline = Pipeline(config, base, {"file": file, "syslog": syslog}, quarantine, clock=lambda: 1_700_000_000.0)
    yield Rig(pipeline, file, syslog, kept, folder, base)
    pipeline.close()


def handled(rig: Rig, delivery: Delivery) -> None:
    """Handle one delivery and check everything the properties promise about it."""
    sinks = (rig.file, rig.syslog, rig.quarantine)
    for sink in sinks:
        sink.kept.clear()
        sink.entries.clear()
    rig.syslog.frames.clear()
    acked = rig.pipeline.handle(delivery)  # anything raised here fails the property
    rig.pipeline.flush()
    written = rig.file.kept + rig.syslog.kept
    for *_key, line in written:
        assert "".join(line.splitlines()) == line, f"a record of more than one line: {line[:200]!r}"
    for frame in rig.syslog.frames:
        assert frame.endswith(b"\n") and frame.count(b"\n") == 1, f"not one syslog message: {frame[:200]!r}"
    entries = rig.quarantine.entries
    if not acked:
        assert not written, "a rejected delivery wrote records"
        assert len(entries) == 1 and "routes" not in entries[0], "a rejected delivery is quarantined whole"
        return
    failed = {(r["format"], r["output"], r["attempt"]) for e in entries for r in e.get("routes", [])}
    assert all("routes" in e for e in entries), "an acked delivery quarantined whole"
    held = {(fmt, output, attempt) for fmt, output, attempt, _line in written}
    for key in taken(rig.pipeline, delivery):
        assert key in held or key in failed, f"acked with a record missing on route {key}"
    assert not held & failed, "a route both written and quarantined for one record"


def taken(pipeline: Pipeline, delivery: Delivery) -> Iterator[tuple[str, str, int]]:
    """(format, output, attempt) of every route that takes a record of the delivery, or fails deciding."""
    message = decode(delivery.body, delivery.content_encoding, pipeline.max_size, pipeline.max_attempts)
    for record in records(message, delivery.source, pipeline.clock()):
        for lane in pipeline.lanes:
            try:
                if not lane.router.matches(record):
                    continue
            except BaseException:  # noqa: BLE001  a `when` that fails must quarantine the route
                pass
            if lane.route.format in pipeline.formats.formats:
                yield lane.route.format, lane.route.output, record["record"]["attempt_number"]


# -- arbitrary bodies --------------------------------------------------------------------------

def huge_text() -> st.SearchStrategy[str]:
    """A long run of one character, from any plane (a few hundred KiB: past the line limit)."""
    return st.builds(lambda c, n: c * n, st.characters(), st.integers(10_000, 400_000))


def deep(depth: int) -> Any:
    """Arrays nested `depth` deep, an object at the bottom."""
    value: Any = {"code": 550}
    for _ in range(depth):
        value = [value]
    return value


TEXT = st.text(st.characters(exclude_categories=()), max_size=40)  # every plane, lone surrogates included
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=False) | TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12) | huge_text() | st.integers(1, 1500).map(deep)
MESSAGE_FIELDS = ["recipient", "envelope", "customer", "tags", "extracted", "mailing_id", "queues", "keepmime",
                  "dkim", "smarthost", "mime", "results"]
ATTEMPT_FIELDS = ["state", "result", "time", "mta", "from", "to", "messages", "code", "status", "description",
                  "dsn", "cipher", "certificate", "fatal", "individual", "strange", "greylisted", "fallback"]


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """A sample result message with some fields, of it and of its attempts, replaced by any JSON value."""
    message = json.loads((SAMPLES / draw(st.sampled_from(SAMPLE_NAMES))).read_text())
    attempts = message["results"]
    for attempt in attempts:
        attempt.update(draw(st.dictionaries(st.sampled_from(ATTEMPT_FIELDS), JSON, max_size=3)))
    message.update(draw(st.dictionaries(st.sampled_from(MESSAGE_FIELDS), JSON, max_size=3)))
    if draw(st.booleans()):
        message["extracted"] = {"subject": draw(JSON), "headers": draw(st.dictionaries(TEXT, JSON, max_size=3))}
    return message


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """A message as bytes: ASCII escapes (lone surrogates too) or raw UTF-8, maybe compressed, maybe mislabelled."""
    text = json.dumps(draw(messages()), ensure_ascii=draw(st.booleans()))
    body = text.encode("utf-8", "surrogatepass")  # a raw lone surrogate is invalid UTF-8: quarantined
    encoding = draw(st.sampled_from([None, None, "gzip", "x-gzip", "deflate", "deflate-raw", "identity",
                                     "GZIP ", "br", "gzip-mislabelled"]))
    if encoding in ("gzip", "x-gzip", "GZIP "):
        body = gzip.compress(body)
    elif encoding == "deflate":
        body = zlib.compress(body)
    elif encoding == "deflate-raw":
        packer = zlib.compressobj(wbits=-15)
        body, encoding = packer.compress(body) + packer.flush(), "deflate"
    elif encoding == "gzip-mislabelled":
        encoding = "gzip"  # says gzip, is not
    return body, encoding


SOURCES = st.builds(Source, st.sampled_from(["results", "retry"]), st.sampled_from(["all", "latest", "message"]),
                    st.booleans(), st.just("results"), st.booleans(), st.none() | st.integers(0, 30))


@given(body=bodies(), source=SOURCES)
def test_any_body_in_any_encoding_is_written_on_each_route_or_quarantined_and_never_raises(
        rig: Rig, body: tuple[bytes, str | None], source: Source) -> None:
    handled(rig, Delivery(body[0], source, body[1]))


def test_the_check_fails_a_pipeline_that_acks_with_a_route_left_out(rig: Rig) -> None:
    """The check itself can fail: records a route took but neither wrote nor quarantined are caught."""
    body = (SAMPLES / "dns-failure.json").read_bytes()
    lanes = [lane for lane in rig.pipeline.lanes if lane.route.output == "syslog"]
    try:
        for lane in lanes:
            lane.sink = Recorder("nowhere")  # the syslog routes' records vanish
        with pytest.raises(AssertionError, match="acked with a record missing"):
            handled(rig, Delivery(body, Source("results")))
    finally:
        for lane in lanes:
            lane.sink = rig.syslog


# -- arbitrary formats -------------------------------------------------------------------------

FIELDS = ["message.recipient", "message.envelope", "message.customer", "message.tags", "message.extracted",
          "message.extracted.headers", "message.results", "attempt", "attempt.code", "attempt.time",
          "attempt.description", "attempt.cipher", "record", "record.outcome", "record.attempt_number",
          "message.nothing.deeper", "message.dkim", "message.smarthost.password"]
FILTERS = ["", " | json", " | string", " | upper", " | length", " | default('-')", " | join(',')",
           " | first", " | int", " | float", " | round", " | abs", " | e", " | list", " | sort",
           " | replace('a', 'b' * 1000)", " | truncate(5)", " | wordcount", " | trim", " | title"]
OPERATIONS = ["", " ~ '\\n'", " * 3", " // 0", " + 1", " ~ ' ' ~ record.queue", " * 100000"]


@st.composite
def expressions(draw: st.DrawFn) -> str:
    """A Jinja expression over a message's fields: a filter, an operation that may raise."""
    return f"({draw(st.sampled_from(FIELDS))}{draw(st.sampled_from(FILTERS))}){draw(st.sampled_from(OPERATIONS))}"


@st.composite
def format_sources(draw: st.DrawFn) -> str:
    """A format: text of any kind (newlines and control characters too) between expressions, ifs and loops."""
    pieces = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["text", "expr", "expr", "if", "for"]))
        if kind == "text":
            pieces.append(draw(st.text(st.characters(codec="utf-8"), max_size=30)).replace("{", "(").replace("%", "/"))
        elif kind == "expr":
            pieces.append("{{ " + draw(expressions()) + " }}")
        elif kind == "if":
            pieces.append("{% if " + draw(expressions()) + " %}{{ " + draw(expressions()) + " }}{% else %}\n{% endif %}")
        else:
            pieces.append("{% for x in " + draw(st.sampled_from(FIELDS)) + " %}{{ x }}|\n{% endfor %}")
    return "".join(pieces) + draw(st.sampled_from(["\n", "", "\r\n"]))


@given(source=format_sources(), sample=st.sampled_from(SAMPLE_NAMES), queue=st.sampled_from(["results", "retry"]))
def test_any_format_writes_one_line_per_record_or_quarantines_its_route(
        rig: Rig, source: str, sample: str, queue: str) -> None:
    path = rig.folder / "formats" / "user.j2"
    path.write_text(source, encoding="utf-8")
    try:
        user = compile_format(path)
    except FormatError:
        return  # refused at load, as `logship check` and a reload refuse it: never rendered
    rig.pipeline.formats = FormatSet(rig.base.folder, {**rig.base.formats, "user": user}, {})
    try:
        body = (SAMPLES / sample).read_bytes()
        handled(rig, Delivery(body, Source(queue, "all", queue == "results")))
    finally:
        rig.pipeline.formats = rig.base


def test_the_bodies_reach_the_pipeline_in_every_shape_the_strategy_promises() -> None:
    """The strategies are not vacuous: decodable and undecodable bodies, every encoding, both escapes."""
    seen: set[str] = set()

    @given(body=bodies())
    def probe(body: tuple[bytes, str | None]) -> None:
        try:
            decode(body[0], body[1])
            seen.add("decoded")
        except MessageError:
            seen.add("quarantined")
        seen.add(f"encoding {body[1]}")

    probe()
    assert {"decoded", "quarantined", "encoding gzip", "encoding deflate", "encoding None"} <= seen, seen
