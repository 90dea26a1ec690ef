"""Routes made ready: each `when` compiled, each route wired to its sink as a lane."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from jinja2 import TemplateSyntaxError

from .config.load import Config, Route
from .errors import ConfigError
from .render.formats import compile_expression
from .sinks import Sink


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

    __slots__ = ("router", "route", "sink", "check", "counted", "secrets", "takes_all")

    def __init__(self, router: Router, sink: Sink, secrets: bool = False) -> None:
        self.router, self.route, self.sink = router, router.route, sink
        self.check: Callable[[dict[str, Any]], Any] | None = getattr(sink, "check", None)
        self.counted = (router.route.output, router.route.format)  # the key of Stats.buffered
        self.secrets = secrets  # its format opted in to see the message's secrets (formats.expose_secrets)
        self.takes_all = router.queues is None and router.when is None  # no call to matches() per record

    def skips(self, record: dict[str, Any], only: frozenset[tuple[str, str, int]]) -> bool:
        """Whether a replay limited to `only` (format, output, attempt) leaves this record out here."""
        return (self.route.format, self.route.output, record["record"]["attempt_number"]) not in only
