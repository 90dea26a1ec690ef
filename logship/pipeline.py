"""From a delivery to rendered lines in the outputs; no broker in sight."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from .config import Config, Route
from .errors import MessageError, OutputError, RecordRefused, RenderError
from .formats import FormatSet, compile_expression
from .metrics import Stats
from .quarantine import Quarantine
from .record import Source, decode, records
from .sinks import Sink, build_sink

log = logging.getLogger("logship")


class Delivery(NamedTuple):
    """One message as the broker handed it over (a tuple: one is made per delivery)."""

    body: bytes
    source: Source
    content_encoding: str | None = None


@dataclass(frozen=True)
class Router:
    """A route made ready: its `when` compiled and its queue filter as a set."""

    route: Route
    when: Callable[..., Any] | None
    queues: frozenset[str] | None

    def matches(self, record: dict[str, Any]) -> bool:
        """Whether this route takes the record."""
        if self.queues is not None and record["record"]["queue"] not in self.queues:
            return False
        return self.when is None or bool(self.when(**record))


def routers(config: Config) -> list[Router]:
    """Compile every route of `config`; a bad `when` is a ConfigError naming the route."""
    from jinja2 import TemplateSyntaxError

    from .errors import ConfigError
    ready = []
    for i, route in enumerate(config.routes):
        try:
            when = compile_expression(route.when) if route.when else None
        except TemplateSyntaxError as error:
            raise ConfigError(config.file, f"routes[{i}].when", f"invalid expression: {error.message}") from None
        ready.append(Router(route, when, frozenset(route.queues) if route.queues is not None else None))
    return ready


class Lane:
    """A route wired to its sink: what each record it takes needs, looked up once per setup."""

    __slots__ = ("router", "route", "sink", "check", "counted")

    def __init__(self, router: Router, sink: Sink) -> None:
        self.router, self.route, self.sink = router, router.route, sink
        self.check: Callable[[dict[str, Any]], Any] | None = getattr(sink, "check", None)
        self.counted = (router.route.output, router.route.format)  # the key of Stats.buffered


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
        self.lanes = [Lane(router, self.sinks[router.route.output]) for router in ready]
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
        """Write the delivery's records; False when it was quarantined and must be rejected."""
        try:
            message = decode(delivery.body, delivery.content_encoding)
        except MessageError as error:
            self._quarantine(delivery, str(error))
            return False
        try:
            lines = self.render(records(message, delivery.source, self.clock()))
        except (RenderError, RecordRefused) as error:
            if isinstance(error, RenderError):
                self.stats.render_errors[error.format_name] += 1
            self._quarantine(delivery, str(error), message)
            return False
        buffered = self.stats.buffered
        for lane, record, line in lines:
            lane.sink.write(record, line, lane.route)
            buffered[lane.counted] += 1
        return True

    def render(self, batch: list[dict[str, Any]]) -> list[tuple[Lane, dict[str, Any], str]]:
        """Every (lane, record, line) the records make; all or nothing, so a replay is exact."""
        lines = []
        formats = self.formats.formats
        for record in batch:
            for lane in self.lanes:
                router = lane.router
                try:
                    if not router.matches(record):
                        continue
                except Exception as error:  # a user's `when` may raise anything
                    raise RenderError(lane.route.format,
                                      f"route `when` failed: {type(error).__name__}: {error}") from None
                fmt = formats.get(lane.route.format)
                if fmt is None:
                    self._format_missing(router)
                    continue
                lines.append((lane, record, fmt.render(record)))
                if lane.check is not None:
                    lane.check(record)  # the output may refuse it before anything is written
        return lines

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

    def _quarantine(self, delivery: Delivery, reason: str, message: dict[str, Any] | None = None) -> None:
        """Keep the raw delivery and say so in the daemon's own log."""
        identity = {"queue": delivery.source.queue, "routing_key": delivery.source.routing_key}
        if message is not None:
            identity["recipient"] = str(message.get("recipient", ""))[:200]
            identity["envelope"] = str(message.get("envelope", ""))[:200]
        log.warning("message quarantined", extra={"reason": reason, **identity})
        self.stats.quarantined[delivery.source.queue] += 1
        self.quarantine.keep(delivery.body, delivery.source, reason, delivery.content_encoding)

    def flush(self) -> None:
        """Flush every sink and the quarantine; raise OutputError naming what failed."""
        failures = []
        for name, sink in [*self.sinks.items(), ("quarantine", self.quarantine.sink)]:
            try:
                sink.flush()
                self.stats.flushed(name)
            except OutputError as error:
                failures.append(str(error))
        if failures:
            raise OutputError("; ".join(failures))

    def reopen(self) -> None:
        """Reopen every sink (SIGHUP)."""
        for sink in self._every_sink():
            sink.reopen()

    def close(self) -> None:
        """Close every sink."""
        for sink in self._every_sink():
            sink.close()

    def _every_sink(self) -> list[Sink]:
        """The outputs' sinks and the quarantine's."""
        return [*self.sinks.values(), self.quarantine.sink]
