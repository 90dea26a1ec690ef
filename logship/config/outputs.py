"""The [[outputs]] tables of the configuration, one frozen dataclass per output type."""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .schema import PATH

#: syslog's severities, most severe first (their codes are their places)
SEVERITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

@dataclass(frozen=True)
class Output:
    """One output; `type` selects the subclass (and the sink) that handles it."""

    name: str
    type: str
    variants: ClassVar[dict[str, type[Output]]] = {}


@dataclass(frozen=True)
class Rotate:
    """Built-in rotation of a file output; see docs/file-output.md, "Rotation"."""

    size: str | int | None = None          # "100MB": rotate before a file would pass this size
    every: Literal["hourly", "daily"] | None = None
    at: str | None = None                  # "HH:MM": the daily rotation time (default 00:00)
    timezone: Literal["utc", "local"] = "utc"
    keep: int | None = None                # rotated files kept per path
    max_age: str | int | None = None       # "30d": rotated files older than this are deleted
    compress: Literal["gzip", "zstd", "none"] = "none"

    def __post_init__(self) -> None:
        from .units import parse_age, parse_size
        if self.size is not None and parse_size(self.size) < 1:
            raise ValueError("size: must be more than 0")
        if self.max_age is not None:
            parse_age(self.max_age)
        if self.at is not None and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", self.at):
            raise ValueError(f"at: {self.at!r} is not a time such as \"00:00\"")
        if self.at is not None and self.every == "hourly":
            raise ValueError("at: only with every = \"daily\" (or without every)")
        if self.keep is not None and self.keep < 0:
            raise ValueError("keep: must be 0 or more")
        if self.size is None and self.every is None and self.at is None:
            raise ValueError("rotate needs size, every or at")
        if self.compress == "zstd" and importlib.util.find_spec("zstandard") is None:
            raise ValueError("compress: \"zstd\" needs the zstandard package (pip install 'logship[zstd]')")


@dataclass(frozen=True)
class FileOutput(Output):
    """Lines appended to a file, or to per-record files under a base folder."""

    path: str = field(metadata=PATH)
    sync: Literal["batch", "never"] | float = "batch"  # fdatasync per batch, never, or every N s
    mode: str = "0640"
    dir_mode: str = "0750"
    owner: str | None = None
    group: str | None = None
    rotate: Rotate | None = None
    max_open_files: int = 256  # per-record paths: least recently used files are closed past this

    def __post_init__(self) -> None:
        for name in ("mode", "dir_mode"):
            try:
                int(getattr(self, name), 8)
            except ValueError:
                raise ValueError(f"{name}: must be an octal string such as \"0640\"") from None
        if not isinstance(self.sync, str) and self.sync <= 0:
            raise ValueError("sync: seconds must be more than 0")
        if self.max_open_files < 1:
            raise ValueError("max_open_files: must be at least 1")
        _check_owner(self.owner, self.group)  # the path template is the file sink's to check


def _check_owner(owner: str | None, group: str | None) -> None:
    """Raise ValueError when the configured user or group does not exist."""
    import grp
    import pwd
    try:
        if owner is not None:
            pwd.getpwnam(owner)
    except KeyError:
        raise ValueError(f"owner: no user {owner!r}") from None
    try:
        if group is not None:
            grp.getgrnam(group)
    except KeyError:
        raise ValueError(f"group: no group {group!r}") from None


Output.variants["file"] = FileOutput


@dataclass(frozen=True)
class SyslogOutput(Output):
    """Syslog messages to a receiver; keys: docs/configuration.md; how: docs/syslog-output.md."""

    address: str = "unix:///dev/log"    # udp://host:port, tcp://…, tls://…, unix:///path
    protocol: Literal["rfc5424", "rfc3164"] = "rfc5424"
    facility: str = "mail"
    severities: dict[str, str] = field(default_factory=dict, hash=False)  # outcome -> severity
    hostname: str = ""                  # "" is this host's name
    app_name: str = "logship"
    procid: str = ""                    # "" is the daemon's pid
    msgid: str = "{{ record.outcome }}"  # a template
    structured_data: dict[str, dict[str, str]] = field(default_factory=dict, hash=False)  # SD-ID -> name -> template
    timestamp: Literal["attempt", "received"] = "attempt"
    framing: Literal["octet-counting", "lf"] | None = None  # streams only; octet-counting by default
    max_size: int | None = None         # bytes per message; default by transport
    tls_ca: str | None = field(default=None, metadata=PATH)
    tls_cert: str | None = field(default=None, metadata=PATH)
    tls_key: str | None = field(default=None, metadata=PATH)
    tls_verify: bool = True
    tls_server_name: str | None = None
    connect_timeout: float = 5.0
    reconnect_max: float = 10.0         # cap of the reconnect backoff, seconds
    flush_timeout: float = 0.1          # how long a flush waits for the sender before failing
    # the address, templates, sizes and TLS files are the syslog sink's to check (sinks.check)


Output.variants["syslog"] = SyslogOutput
