"""The TOML configuration as frozen dataclasses and its loading; docs/configuration.md has every key."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Mapping

from .broker import Broker, credentials
from ..errors import ConfigError
from .outputs import SEVERITY_NAMES, Output
from .queues import RETRY_ROLES, Queue, Scope, refuse_live, scoped
from .queues import warnings as queue_warnings
from .schema import PATH, build
from .providers import check_providers, merged

__all__ = ["RETRY_ROLES", "Broker", "Queue", "Scope", "scoped"]  # the broker's and queues' tables, at home beside


@dataclass(frozen=True)
class Formats:
    """Where the formats live: NAME.j2 is the format called NAME."""

    dir: str = field(default="formats", metadata=PATH)
    watch: bool = True  # reload when a format or the config file changes on disk (docs/operations.md: live formats)
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
    # a message may hold this many attempts (MailerQ's own stop far sooner): each is a record
    # to render, and a delivery is rendered whole before the loop turns again
    max_attempts: int = 10_000

    def __post_init__(self) -> None:
        from .units import parse_size
        try:
            size = parse_size(self.max_size)
        except ValueError:
            raise ValueError(f"max_size: {self.max_size!r} is not a size such as \"64MiB\"") from None
        if size < 1:
            raise ValueError("max_size: must be more than 0")
        if self.max_attempts < 1:
            raise ValueError("max_attempts: must be at least 1")

    @property
    def bytes(self) -> int:
        """max_size in bytes."""
        from .units import parse_size
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
        if self.severity is not None and self.severity not in SEVERITY_NAMES:
            raise ValueError(f"severity: must be one of {', '.join(SEVERITY_NAMES)}, got {self.severity!r}")


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
    """The Prometheus endpoint (docs/operations.md, "Metrics"); off unless `listen` is set."""

    listen: str | None = None  # "127.0.0.1:9108", "[::1]:9108"
    # mailbox providers for logship_attempts_total: name -> domains, "*.domain" or "name.*";
    # added to the shipped table (a shipped name is replaced, [] drops it) unless shipped_providers is false
    providers: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    shipped_providers: bool = True
    max_sources: int = 256  # sending IPs with a label of their own; later ones are "other"

    def __post_init__(self) -> None:
        if self.listen is not None:
            listen_address(self.listen)
        check_providers(self.providers)  # ValueError("providers.NAME[i]: ...") names the key
        if self.max_sources < 1:
            raise ValueError("max_sources: must be at least 1")

    def provider_table(self) -> dict[str, tuple[str, ...]]:
        """The providers logship_attempts_total groups recipient domains into."""
        return merged(self.providers, self.shipped_providers)

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


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None,
         require_formats: bool = True) -> Config:
    """Read, check and resolve the config file at `path`.

    A reload passes `require_formats=False`: a route whose format file is gone then stays,
    and the pipeline skips it with a warning instead of the whole config being refused.
    """
    config = read(path, environ)
    check(config, require_formats)
    return config


def read(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """The config file at `path` as dataclasses, each table checked alone, credentials resolved."""
    file = str(path)
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as error:
        raise ConfigError(file, "", f"cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(file, "", f"not valid TOML: {error}") from None
    config = build(Config, table, "", file, Path(file).resolve().parent)
    environ = os.environ if environ is None else environ  # {} is an empty environment
    return replace(config, file=file, broker=credentials(config.broker, file, environ),
                   queues=scoped(config.queues))


def warnings(config: Config) -> list[str]:
    """Legal but probably unintended settings, for `check` and the daemon's log."""
    found = queue_warnings(config.queues)
    broker = config.broker
    if broker.batch_size > broker.prefetch:  # type: ignore[operator]
        found.append(f"broker.batch_size ({broker.batch_size}) is larger than broker.prefetch ({broker.prefetch}): "
                     "a batch never fills, so every ack waits for broker.batch_interval")
    if (broker.tls_ca or broker.tls_cert) and not any(url.startswith("amqps://") for url in broker.urls):
        found.append("broker.tls_ca or tls_cert is set, but no broker URL is amqps://: TLS is not used")
    return found


def check(config: Config, require_formats: bool = True) -> None:
    """Cross-checks between sections: names unique, routes pointing at what exists."""
    file = config.file
    _unique(file, "queues", [q.name for q in config.queues])
    _unique(file, "outputs", [o.name for o in config.outputs])
    if not config.queues:
        raise ConfigError(file, "queues", "at least one [[queues]] entry is needed")
    refuse_live(file, config.queues)  # consuming MailerQ's outbox or retries takes mail away from it
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
