"""`logship replay`: JSON-lines result messages through the pipeline, a progress bar, a summary."""
from __future__ import annotations

import base64
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator

import orjson

from .config.load import Config, Route, scoped
from .config.queues import Queue
from .errors import RecordRefused
from .render.formats import FormatSet
from .stats import Stats
from .sinks.file.paths import PathTemplate, is_template
from .pipeline import Pipeline, new_delivery
from .quarantine import Quarantine
from .render.record import Source

# replay acknowledges nothing, so its outputs need be durable only when it ends: flushing every
# 10,000 messages bounds the lines held (a few MB); a file output that syncs every batch syncs
# once, at the last flush (each fdatasync waits for the disk: one per 10,000 messages cost a
# fifteenth of the wall time), or as a file closes before then (rotated, past max_open_files).
FLUSH_EVERY = 10_000
PROGRESS_EVERY = 1_000  # messages between progress bar updates: a bar update costs more than a message

WRAPPED = (b'{"queue"', b'{"quarantined"')  # how a line that is not a plain result message starts
Line = tuple[bytes, str, "str | None", "frozenset[tuple[str, str, int]] | None", str]
"""What a replayed line stands for: body, queue, content encoding, the only routes to redo, routing key."""


def lines(name: str, queue: str) -> Iterator[Line]:
    """(body, queue, content encoding) of each line of a JSON-lines file.

    A plain line is a result message from `queue`; a {"queue", "body"} line (the traffic
    generator's) carries its queue; a quarantine line carries the raw body it kept.
    """
    with sys.stdin.buffer if name == "-" else open(name, "rb") as f:
        for line in f:
            line = line.strip()
            if line.startswith(WRAPPED):
                yield unwrap(line, queue)
            elif line:  # a plain result message, most lines: no call
                yield line, queue, None, None, ""


def unwrap(line: bytes, queue: str) -> Line:
    """The delivery a line stands for; anything unexpected is passed on for the pipeline to judge.

    A quarantine entry with `routes` was written in part: only its failed (format, output,
    attempt) are rendered again, so after a fix and a replay every output holds it once.
    """
    if not line.startswith(WRAPPED):
        return line, queue, None, None, ""
    try:
        entry = orjson.loads(line)
        if "quarantined" in entry:
            body = entry["body"].encode() if "body" in entry else base64.b64decode(entry["body_base64"])
            only = None if entry.get("routes") is None else frozenset(
                (r["format"], r["output"], int(r["attempt"])) for r in entry["routes"])
            # the routing key goes with it: a line that fails again is kept as it came
            return body, entry["queue"], entry.get("content_encoding"), only, str(entry.get("routing_key") or "")
        return orjson.dumps(entry["body"]), entry["queue"], None, None, ""
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return line, queue, None, None, ""


class PlainQueue(str):
    """The queue named for plain lines; its type tells them from lines that carry their own queue."""


@dataclass
class Summary:
    """What a replay did, for its one closing line."""

    messages: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    records: Counter[str] = field(default_factory=Counter)  # per output
    routes_quarantined: int = 0
    plain: str = ""  # how plain lines were read, e.g. "results, scope all", or "" when there were none

    def line(self, quarantine: str, dry_run: bool) -> str:
        """replayed N messages, Q quarantined to PATH; R records to OUTPUT, ...; S s; how plain lines read."""
        verb = "would write" if dry_run else "wrote"
        records = ", ".join(f"{n} to {output}" for output, n in self.records.items()) or "no outputs"
        text = (f"replayed {self.messages} messages, {self.quarantined} quarantined to {quarantine}; "
                f"{verb} records: {records}")
        if self.routes_quarantined:
            text += f"; {self.routes_quarantined} failed routes quarantined"
        text += f"; {self.seconds:.1f} s"
        if self.plain:
            text += f"; plain lines read as from {self.plain}"
        return text + ("; dry run: nothing written" if dry_run else "")


class CountingSink:
    """An output for --dry-run: takes lines and writes nothing; a templated path is still checked."""

    def __init__(self, name: str, path: str | None = None) -> None:
        self.name = name
        self.header: str | None = None
        template = PathTemplate(path) if path and is_template(path) else None
        self.check = self._check if template else None
        self._template = template

    def _check(self, record: dict[str, Any]) -> None:
        """Refuse a record whose path would be unsafe, as the file output would."""
        try:
            self._template.render(record)  # type: ignore[union-attr]
        except RecordRefused as error:
            raise RecordRefused(f"output {self.name!r}: {error}") from None

    def write(self, record: dict[str, Any], line: str, route: Route | None = None) -> None:
        """Drop the line (the pipeline has counted it)."""

    def flush(self) -> None:
        """Nothing to make durable."""

    def reopen(self) -> None:
        """Nothing open."""

    def close(self) -> None:
        """Nothing to release."""


def dry_pipeline(config: Config, formats: FormatSet) -> Pipeline:
    """A pipeline that renders, routes and counts like the real one but writes no output and no quarantine."""
    sinks = {o.name: CountingSink(o.name, getattr(o, "path", None)) for o in config.outputs}
    quarantine = Quarantine(config.quarantine.path)  # its file sink opens nothing until a flush
    quarantine.sink = CountingSink("quarantine")  # type: ignore[assignment]
    return Pipeline(config, formats, sinks, quarantine, stats=Stats())  # type: ignore[arg-type]


class Replay:
    """Feeds lines to a pipeline, reading each as its queue says, and counts what happened."""

    def __init__(self, config: Config, pipeline: Pipeline, scope: str | None) -> None:
        self.config, self.pipeline, self.scope = config, pipeline, scope
        self.sources: dict[tuple[str, bool, str], Source] = {}
        self.summary = Summary(records=Counter({o.name: 0 for o in config.outputs}))

    def run(self, lines: Iterable[Line], progress: Progress | None = None) -> Summary:
        """Every line through the pipeline, flushed every FLUSH_EVERY messages and at the end."""
        started, summary, pipeline = time.monotonic(), self.summary, self.pipeline
        size, last_queue, last_key, source = 0, None, None, None
        deferred = [sink for sink in [*pipeline.sinks.values(), pipeline.quarantine.sink]
                    if getattr(sink, "sync", None) == "batch"]  # file sinks: see FLUSH_EVERY
        for sink in deferred:
            sink.sync = "inf"  # type: ignore[attr-defined]  # a sync at most every infinite seconds
        handle, messages, quarantined = pipeline.handle, 0, 0  # locals: once a message
        try:
            for body, queue, encoding, only, routing_key in lines:
                if queue is not last_queue or routing_key is not last_key:  # plain lines: the same objects each time
                    last_queue, last_key, source = queue, routing_key, self.source(queue, routing_key)
                if not handle(new_delivery((body, source, encoding, only))):
                    quarantined += 1
                messages += 1
                size += len(body) + 1
                if messages % PROGRESS_EVERY == 0 and progress is not None:
                    progress.update(size)
                    size = 0
                if messages % FLUSH_EVERY == 0:
                    pipeline.flush()
        finally:
            summary.messages += messages
            summary.quarantined += quarantined
        for sink in deferred:
            sink.sync = "batch"  # type: ignore[attr-defined]
        pipeline.flush()
        summary.seconds = time.monotonic() - started
        summary.records.update(pipeline.stats.written_per_output())
        summary.routes_quarantined = sum(pipeline.stats.route_failures.values())
        return summary

    def source(self, name: str, routing_key: str = "") -> Source:
        """How to read a line from `name`: plain lines are a complete set, so every attempt is new."""
        plain = isinstance(name, PlainQueue)
        source = self.sources.get((name, plain, routing_key))
        if source is None:
            queue = next((q for q in self.config.queues if q.name == name), None) or scoped((Queue(name),))[0]
            scope = self.scope or (_plain_scope(queue) if plain else queue.scope or "all")
            source = self.sources[(name, plain, routing_key)] = Source(str(queue.name), scope, queue.final,
                                                                       routing_key)
            if plain:
                self.summary.plain = f"{queue.name}, scope {scope} ({SCOPES.get(scope, scope)})"
        return source


SCOPES = {"all": "every attempt", "latest": "the newest attempt", "message": "one record a message"}


def _plain_scope(queue: Queue) -> str:
    """A file of final messages holds each attempt once (`all`); a retry message repeats the earlier ones."""
    return "all" if queue.final else "latest"


class Progress:
    """A tqdm bar on stderr, in bytes of the file read (approximate: bodies, not whole lines)."""

    def __init__(self, name: str, stream: IO[str]) -> None:
        from tqdm import tqdm
        total = os.stat(name).st_size if name != "-" and os.path.isfile(name) else None
        self.bar = tqdm(total=total, unit="B", unit_scale=True, desc="replay", file=stream, leave=False)

    def update(self, size: int) -> None:
        """Move the bar by `size` bytes."""
        self.bar.update(size)

    def close(self) -> None:
        """Take the bar off the terminal; the summary line follows."""
        self.bar.close()


def progress(name: str, stream: IO[str] = sys.stderr) -> Progress | None:
    """A progress bar when `stream` is a terminal (a person watches); None for a pipe or a file."""
    return Progress(name, stream) if stream.isatty() else None
