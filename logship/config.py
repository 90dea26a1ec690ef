"""The TOML configuration as frozen dataclasses; see README.md for every key."""
from __future__ import annotations

import os
import tomllib
import urllib.parse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from .errors import ConfigError
from .outputs import Output
from .schema import PATH, build

Scope = Literal["all", "latest", "message"]
#: MailerQ's retry queue carries every attempt so far: only the newest one is new
RETRY_ROLES = {"retry"}


@dataclass(frozen=True)
class Broker:
    """Where and how to consume."""

    url: str = field(default="amqp://guest:guest@localhost:5672/%2F", repr=False)
    password_file: str | None = field(default=None, metadata=PATH)
    prefetch: int = 1000
    heartbeat: int = 30
    # acknowledge at most this many deliveries at once; unset: a quarter of prefetch (see README)
    batch_size: int | None = None
    batch_interval: float = 0.05  # and at the latest this many seconds after the first
    reconnect_max: float = 30.0   # cap of the reconnect backoff, seconds

    def __post_init__(self) -> None:
        if not self.url.startswith(("amqp://", "amqps://")):
            raise ValueError("url: must start with amqp:// or amqps://")
        if self.batch_size is None:
            # Acks a quarter of the window at a time, so the broker always has three quarters
            # to send ahead while a batch syncs; and a batch fills even at a small prefetch.
            object.__setattr__(self, "batch_size", max(1, self.prefetch // 4))
        for name in ("prefetch", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")
        if self.batch_interval <= 0:
            raise ValueError("batch_interval: must be more than 0")

    @property
    def display_url(self) -> str:
        """The URL with any password replaced, safe to log."""
        parts = urllib.parse.urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Queue:
    """One queue to consume, and which of its attempts are new."""

    name: str
    role: Literal["results", "success", "failures", "retry", "other"] | None = None
    scope: Scope | None = None
    declare: bool = False  # declare the queue (durable) if it does not exist

    def __post_init__(self) -> None:
        role = self.role or (self.name if self.name in ("results", "success", "failures", "retry") else "other")
        object.__setattr__(self, "role", role)

    @property
    def final(self) -> bool:
        """Whether messages on this queue carry a final result."""
        return self.role not in RETRY_ROLES


@dataclass(frozen=True)
class Formats:
    """Where the formats live: NAME.j2 is the format called NAME."""

    dir: str = field(default="formats", metadata=PATH)
    watch: bool = True  # reload when a format or the config file changes on disk (README: reload)
    render_timeout: float = 1.0        # seconds one render, `when` or path expression may take
    max_line_length: int = 1 << 20     # characters a line (and any value built on the way) may have
    # true, or the names of the formats that see dkim keys, the smarthost password, mime and data
    expose_secrets: bool | tuple[str, ...] = False

    def __post_init__(self) -> None:
        if self.render_timeout <= 0:
            raise ValueError("render_timeout: must be more than 0")
        if self.max_line_length < 1:
            raise ValueError("max_line_length: must be at least 1")

    def exposes_secrets(self, name: str) -> bool:
        """Whether the format called `name` sees the secrets in a message (opted in)."""
        return self.expose_secrets is True or (isinstance(self.expose_secrets, tuple) and name in self.expose_secrets)


@dataclass(frozen=True)
class Messages:
    """Limits on the bodies logship takes from the broker."""

    # a body may be this big, as received and after gzip or deflate: past it, it is quarantined
    max_size: str | int = "64MiB"

    def __post_init__(self) -> None:
        from .sinks.rotate import parse_size
        try:
            size = parse_size(self.max_size)
        except ValueError:
            raise ValueError(f"max_size: {self.max_size!r} is not a size such as \"64MiB\"") from None
        if size < 1:
            raise ValueError("max_size: must be more than 0")

    @property
    def bytes(self) -> int:
        """max_size in bytes."""
        from .sinks.rotate import parse_size
        return parse_size(self.max_size)




@dataclass(frozen=True)
class Route:
    """Records in `format` to `output`, when `when` holds."""

    format: str
    output: str
    when: str | None = None
    queues: tuple[str, ...] | None = None
    severity: str | None = None  # syslog outputs: this severity instead of the outcome's

    def __post_init__(self) -> None:
        from .syslog_wire import SEVERITIES
        if self.severity is not None and self.severity not in SEVERITIES:
            raise ValueError(f"severity: must be one of {', '.join(SEVERITIES)}, got {self.severity!r}")


@dataclass(frozen=True)
class Quarantine:
    """Where undecodable or unrenderable messages are kept, raw."""

    # its own folder, apart from the logs that log shippers read: it may hold whole bodies
    path: str = field(default="quarantine/quarantine.jsonl", metadata=PATH)


@dataclass(frozen=True)
class Log:
    """The daemon's own log (JSON lines on stderr)."""

    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class Metrics:
    """The Prometheus endpoint (see README: Metrics); off unless `listen` is set."""

    listen: str | None = None  # "127.0.0.1:9108", "[::1]:9108"

    def __post_init__(self) -> None:
        if self.listen is not None:
            listen_address(self.listen)

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to listen on, or None when metrics are off."""
        return None if self.listen is None else listen_address(self.listen)


def listen_address(text: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' as (host, port); ValueError naming the `listen` key."""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"listen: {text!r} is not HOST:PORT (such as \"127.0.0.1:9108\")")
    return host, int(port)


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    broker: Broker = field(default_factory=Broker)
    queues: tuple[Queue, ...] = ()
    formats: Formats = field(default_factory=Formats)
    messages: Messages = field(default_factory=Messages)
    outputs: tuple[Output, ...] = ()
    routes: tuple[Route, ...] = ()
    quarantine: Quarantine = field(default_factory=Quarantine)
    log: Log = field(default_factory=Log)
    metrics: Metrics = field(default_factory=Metrics)
    file: str = field(default="", compare=False)

    def output(self, name: str) -> Output:
        """The output called `name`."""
        return next(o for o in self.outputs if o.name == name)


def load(path: str | os.PathLike[str], environ: dict[str, str] | None = None,
         require_formats: bool = True) -> Config:
    """Read, check and resolve the config file at `path`.

    A reload passes `require_formats=False`: a route whose format file is gone then stays,
    and the pipeline skips it with a warning instead of the whole config being refused.
    """
    file = str(path)
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as error:
        raise ConfigError(file, "", f"cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(file, "", f"not valid TOML: {error}") from None
    config = build(Config, table, "", file, Path(file).resolve().parent)
    config = replace(config, file=file, broker=_credentials(config.broker, file, environ or os.environ),
                     queues=scoped(config.queues))
    check(config, require_formats)
    return config


def scoped(queues: tuple[Queue, ...]) -> tuple[Queue, ...]:
    """Fill in each queue's default scope from its role and its neighbours.

    A retry queue's message holds every attempt so far: only the newest is new (`latest`).
    A final queue's message holds them all: every one is new (`all`), unless a retry queue
    is consumed too, which has already written every attempt but the last (`latest`).
    """
    with_retry = any(q.role in RETRY_ROLES for q in queues)
    def default(q: Queue) -> Scope:
        return "latest" if q.role in RETRY_ROLES or (with_retry and q.role != "other") else "all"
    return tuple(q if q.scope else replace(q, scope=default(q)) for q in queues)


def warnings(config: Config) -> list[str]:
    """Legal but probably unintended settings, for `check` and the daemon's log."""
    roles = {q.role for q in config.queues}
    found = []
    if "results" in roles and roles & {"success", "failures"}:
        found.append("results and success/failures both consumed: every final result is written twice "
                     "unless routes select queues")
    broker = config.broker
    if broker.batch_size > broker.prefetch:  # type: ignore[operator]
        found.append(f"broker.batch_size ({broker.batch_size}) is larger than broker.prefetch ({broker.prefetch}): "
                     "a batch never fills, so every ack waits for broker.batch_interval")
    return found


def _credentials(broker: Broker, file: str, environ: dict[str, str]) -> Broker:
    """Apply LOGSHIP_BROKER_URL, LOGSHIP_BROKER_PASSWORD or password_file to the URL."""
    url = environ.get("LOGSHIP_BROKER_URL", broker.url)
    password = environ.get("LOGSHIP_BROKER_PASSWORD")
    if password is None and broker.password_file:
        try:
            password = Path(broker.password_file).read_text().strip()
        except OSError as error:
            raise ConfigError(file, "broker.password_file", f"cannot read: {error.strerror}") from None
    if password is not None:
        parts = urllib.parse.urlsplit(url)
        user = parts.username or "guest"
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{user}:{urllib.parse.quote(password, safe='')}@{host}"
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return replace(broker, url=url)


def check(config: Config, require_formats: bool = True) -> None:
    """Cross-checks between sections: names unique, routes pointing at what exists."""
    file = config.file
    _unique(file, "queues", [q.name for q in config.queues])
    _unique(file, "outputs", [o.name for o in config.outputs])
    if not config.queues:
        raise ConfigError(file, "queues", "at least one [[queues]] entry is needed")
    outputs = {o.name for o in config.outputs}
    queues = {q.name for q in config.queues}
    formats = Path(config.formats.dir)
    for i, route in enumerate(config.routes):
        if route.output not in outputs:
            raise ConfigError(file, f"routes[{i}].output", f"no output called {route.output!r}")
        if require_formats and not (formats / f"{route.format}.j2").is_file():
            raise ConfigError(file, f"routes[{i}].format", f"no format {route.format!r} ({formats / route.format}.j2 not found)")
        for queue in route.queues or ():
            if queue not in queues:
                raise ConfigError(file, f"routes[{i}].queues", f"no queue called {queue!r}")
    if not config.routes:
        raise ConfigError(file, "routes", "at least one [[routes]] entry is needed")


def _unique(file: str, key: str, names: list[str]) -> None:
    """Raise if a name appears twice in an array of tables."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ConfigError(file, f"{key}[{i}].name", f"{name!r} is used twice")
        seen.add(name)
