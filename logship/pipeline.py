"""From a delivery to rendered lines in the outputs; no broker in sight."""
from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Any, Callable, NamedTuple

import orjson

from .render.budget import RenderTimeout
from .config.load import Config
from .errors import MessageError, OutputError, RecordRefused, RenderError
from .render.filters import redact, scrub
from .render.formats import FormatSet, configure, describe
from .stats import Stats
from .quarantine import Quarantine
from .render.record import Source, decode, records
from .routes import Lane, Router, routers
from .sinks import Sink, build_sink

log = logging.getLogger("logship")


class Delivery(NamedTuple):
    """One message as the broker handed it over (a tuple: one is made per delivery)."""

    body: bytes
    source: Source
    content_encoding: str | None = None
    # a replayed route quarantine: only these (format, output, attempt number) are rendered
    only: frozenset[tuple[str, str, int]] | None = None


# Delivery((body, source, encoding, only)) built in C, for the loops that make one per message:
# NamedTuple's own __new__ is a Python function
new_delivery = functools.partial(tuple.__new__, Delivery)


class Failure(NamedTuple):
    """One route that failed for one record: it goes to the quarantine, the others are written."""

    lane: Lane
    attempt: int
    reason: str


class Pipeline:
    """Decodes, routes, renders and writes; `flush` makes it durable."""

    def __init__(self, config: Config, formats: FormatSet, sinks: dict[str, Sink],
                 quarantine: Quarantine, clock: Callable[[], float] = time.time,
                 stats: Stats | None = None) -> None:
        self.config, self.formats, self.sinks = config, formats, sinks
        self.quarantine, self.clock = quarantine, clock
        self.stats = stats or Stats()  # passed in so counts survive a rebuilt pipeline
        self._missing: set[str] = set()  # formats routed to but not loaded, warned about once
        self._wire(routers(config))

    def _wire(self, ready: list[Router]) -> None:
        """Give each route its sink (a lane) and each sink the header of its formats."""
        formats = self.config.formats
        configure(formats.render_timeout, formats.max_line_length)
        self.max_size, self.max_attempts = self.config.messages.bytes, self.config.messages.max_attempts
        self.lanes = [Lane(router, self.sinks[router.route.output], formats.exposes_secrets(router.route.format))
                      for router in ready]
        self.keeps_secrets = any(lane.secrets for lane in self.lanes)
        for name, sink in self.sinks.items():
            headers = {getattr(self.formats.formats.get(r.format), "header", None)
                       for r in self.config.routes if r.output == name}
            if len(headers) == 1 and hasattr(sink, "header"):
                sink.header = headers.pop()

    @classmethod
    def build(cls, config: Config, formats: FormatSet | None = None, stats: Stats | None = None) -> Pipeline:
        """A pipeline with a sink for every configured output."""
        sinks = {o.name: build_sink(o) for o in config.outputs}
        return cls(config, formats or FormatSet.load(config.formats.dir), sinks,
                   Quarantine(config.quarantine.path), stats=stats)

    def handle(self, delivery: Delivery) -> bool:
        """Write the delivery's records; False when it was quarantined whole and must be rejected."""
        # the deliverability counters note the attempts as records() makes them (counted at the flush
        # before the ack); a replay of failed routes redoes attempts already counted
        noted = self.stats.attempts.noting if delivery.only is None else None
        mark = len(noted) if noted is not None else 0
        try:
            message = decode(delivery.body, delivery.content_encoding, self.max_size, self.max_attempts)
            source, only = delivery.source, delivery.only
            if only is not None:  # the failed attempts are named: read them all, whatever the scope
                source = dataclasses.replace(source, scope="all")
            lines, failures = self.render(records(message, source, self.clock(), noted), message, only)
        except MessageError as error:
            return self._refuse(delivery, str(error), noted, mark)
        except MemoryError:  # one delivery's failure, never the daemon's
            return self._refuse(delivery, "MemoryError: handling this delivery ran out of memory", noted, mark)
        if failures and not lines and only is None:  # every route failed: reject it whole
            return self._refuse(delivery, self._reason(failures, message), noted, mark, message)
        buffered = self.stats.buffered
        for lane, record, line in lines:
            lane.sink.write(record, line, lane.route)
            buffered[lane.counted] += 1
        if failures:
            self._quarantine(delivery, self._reason(failures, message), message, failures)
        return True

    def _refuse(self, delivery: Delivery, reason: str, noted: list[Any] | None, mark: int,
                message: dict[str, Any] | None = None) -> bool:
        """Quarantine the whole delivery, its attempts not counted; False: it is to be rejected."""
        if noted is not None:
            del noted[mark:]
        self._quarantine(delivery, reason, message)
        return False

    def render(self, batch: list[dict[str, Any]], message: dict[str, Any],
               only: frozenset[tuple[str, str, int]] | None = None,
               ) -> tuple[list[tuple[Lane, dict[str, Any], str]], list[Failure]]:
        """Every (lane, record, line) the records make, and the routes that failed for a record."""
        lines: list[tuple[Lane, dict[str, Any], str]] = []
        failures: list[Failure] = []
        formats = self.formats.formats
        for record in batch:
            for lane in self.lanes:
                if only is not None and lane.skips(record, only):
                    continue
                # a format that opted in to the secrets sees the message as it came
                seen = {**record, "message": message} if lane.secrets else record
                try:
                    if not (lane.takes_all or lane.router.matches(seen)):
                        continue
                except (Exception, RenderTimeout) as error:  # a user's `when` may raise anything
                    failures.append(self._failed(lane, seen, RenderError(
                        lane.route.format, f"route `when` failed: {describe(error)}")))
                    continue
                fmt = formats.get(lane.route.format)
                if fmt is None:
                    self._format_missing(lane.router)
                    continue
                try:
                    line = fmt.render(seen)
                    if lane.check is not None:
                        lane.check(seen)  # the output may refuse it before anything is written
                except (RenderError, RecordRefused) as error:
                    failures.append(self._failed(lane, seen, error))
                    continue
                lines.append((lane, seen, line))
        return lines, failures

    def _failed(self, lane: Lane, record: dict[str, Any], error: Exception) -> Failure:
        """Count one failed route of one record."""
        if isinstance(error, RenderError):
            self.stats.render_errors[error.format_name] += 1
        self.stats.route_failures[lane.counted] += 1
        return Failure(lane, record["record"]["attempt_number"], str(error))

    @staticmethod
    def _reason(failures: list[Failure], message: dict[str, Any]) -> str:
        """What failed, in a few words, without any secret of the message."""
        first = failures[0].reason
        more = f" (and {len(failures) - 1} more failed routes)" if len(failures) > 1 else ""
        return scrub(first + more, message)

    def _format_missing(self, router: Router) -> None:
        """A route whose format is gone (deleted) writes nothing; say so once, not per record."""
        name = router.route.format
        if name not in self._missing:
            self._missing.add(name)
            log.warning("format not loaded; its routes write nothing until it returns",
                        extra={"format": name, "output": router.route.output})

    def swap(self, config: Config, formats: FormatSet, ready: list[Router],
             sinks: dict[str, Sink], quarantine: Quarantine) -> None:
        """Put a new setup in place in one step, between two deliveries (reload).

        Sinks and a quarantine that are not carried over are flushed first (an OutputError
        leaves everything as it was) and closed after: records already written to them are
        durable before the deliveries they came from are acked.
        """
        kept = {id(s) for s in [*sinks.values(), quarantine.sink]}
        retired = [s for s in self._every_sink() if id(s) not in kept]
        for sink in retired:
            sink.flush()
        self.config, self.formats = config, formats
        self.sinks, self.quarantine = sinks, quarantine
        self._missing &= {r.route.format for r in ready} - set(formats.formats)
        self._wire(ready)
        for sink in retired:
            sink.close()

    def _quarantine(self, delivery: Delivery, reason: str, message: dict[str, Any] | None = None,
                    failures: list[Failure] | None = None) -> None:
        """Keep the delivery (or its failed routes) for a replay and say so in the daemon's own log."""
        identity = {"queue": delivery.source.queue, "routing_key": delivery.source.routing_key}
        if message is not None:
            identity["recipient"] = str(message.get("recipient", ""))[:200]
            identity["envelope"] = str(message.get("envelope", ""))[:200]
        routes = None if failures is None else [
            {"format": f.lane.route.format, "output": f.lane.route.output, "attempt": f.attempt,
             "reason": scrub(f.reason, message or {})} for f in failures]
        log.warning("routes quarantined" if routes else "message quarantined",
                    extra={"reason": reason, **identity, **({"routes": len(routes)} if routes else {})})
        if routes is None:
            self.stats.quarantined[delivery.source.queue] += 1
        body, encoding = delivery.body, delivery.content_encoding
        if message is not None and not self.keeps_secrets:  # what a replay needs, and no secret
            body, encoding = _without_secrets(message), None
        self.quarantine.keep(body, delivery.source, reason, encoding, routes)

    def flush(self) -> None:
        """Flush every sink and the quarantine; raise OutputError naming what failed."""
        failures = []
        for name, sink in [*self.sinks.items(), ("quarantine", self.quarantine.sink)]:
            started = time.perf_counter()  # once per sink and batch: cheap beside the flush itself
            try:
                sink.flush()
                self.stats.flushed(name, time.perf_counter() - started)
            except OutputError as error:
                self.stats.flush_failed(name, time.perf_counter() - started)
                failures.append(str(error))
        if failures:
            raise OutputError("; ".join(failures))
        self.stats.attempts.written(self.clock())  # every output holds them: the acks follow

    def reopen(self) -> None:
        """Reopen every sink (SIGUSR1, SIGHUP); the quarantine's file is started at once."""
        for sink in self.sinks.values():
            sink.reopen()
        self.quarantine.reopen()

    def close(self) -> None:
        """Close every sink."""
        for sink in self._every_sink():
            sink.close()

    def _every_sink(self) -> list[Sink]:
        """The outputs' sinks and the quarantine's."""
        return [*self.sinks.values(), self.quarantine.sink]


def _without_secrets(message: dict[str, Any]) -> bytes:
    """The decoded message as JSON with its secrets replaced: enough for a replay, safe to keep."""
    clean = redact(message)
    try:
        return orjson.dumps(clean)
    except TypeError:  # nested past what orjson writes (254 levels; it reads 1024): keep the rest
        return orjson.dumps({key: _writable(value) for key, value in clean.items()})


def _writable(value: Any) -> Any:
    """`value` if orjson can write it, else a note saying why it was left out."""
    try:
        orjson.dumps(value)
    except TypeError:
        return "(left out: nested too deep to write)"
    return value
