"""The broker's settings: its nodes' URLs, credentials and TLS (the queues are in queues.py)."""
from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from ..errors import ConfigError
from .schema import PATH

@dataclass(frozen=True)
class Broker:
    """Where and how to consume: one node's URL, or a list of a cluster's nodes (docs/cluster.md)."""

    url: str | tuple[str, ...] = field(default="amqp://guest:guest@localhost:5672/%2F", repr=False)
    password_file: str | None = field(default=None, metadata=PATH)
    prefetch: int = 1000
    heartbeat: int = 30
    # acknowledge at most this many deliveries at once; unset: a quarter of prefetch (docs/configuration.md, "Batches")
    batch_size: int | None = None
    batch_interval: float = 0.05  # and at the latest this many seconds after the first
    reconnect_max: float = 30.0   # cap of the reconnect backoff (per full round of nodes), seconds
    tls_ca: str | None = field(default=None, metadata=PATH)     # amqps:// only; unset: the system's CAs
    tls_cert: str | None = field(default=None, metadata=PATH)   # a client certificate, if the node asks
    tls_key: str | None = field(default=None, metadata=PATH)
    tls_verify: bool = True
    tls_server_name: str | None = None  # the name the certificates must carry; unset: each URL's host

    def __post_init__(self) -> None:
        for i, url in enumerate(self.urls):
            _check_url(url, "url" if isinstance(self.url, str) else f"url[{i}]")
        if not self.urls:
            raise ValueError("url: needs at least one amqp:// or amqps:// URL")
        if self.batch_size is None:
            # Acks a quarter of the window at a time, so the broker always has three quarters
            # to send ahead while a batch syncs; and a batch fills even at a small prefetch.
            object.__setattr__(self, "batch_size", max(1, self.prefetch // 4))
        for name in ("prefetch", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")
        if self.batch_interval <= 0:
            raise ValueError("batch_interval: must be more than 0")
        if any(url.startswith("amqps://") for url in self.urls):
            check_tls(self)

    @property
    def urls(self) -> tuple[str, ...]:
        """The nodes' URLs, in the order they are tried."""
        return (self.url,) if isinstance(self.url, str) else self.url

    @property
    def display_url(self) -> str:
        """The URLs with any password replaced, safe to log (comma-separated for a cluster)."""
        return ", ".join(mask(url) for url in self.urls)


def mask(url: str) -> str:
    """A URL with its password replaced by ***, safe to log and print."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def split_urls(text: str) -> tuple[str, ...]:
    """LOGSHIP_BROKER_URL's nodes: URLs separated by whitespace or commas (a comma before amqp[s]://)."""
    return tuple(url for url in re.split(r"\s*,\s*(?=amqps?://)|\s+", text.strip()) if url)


def _check_url(url: str, key: str) -> None:
    """A ValueError naming `key` unless `url` is an amqp:// or amqps:// URL with a host (pika's reading: broker/)."""
    if not url.startswith(("amqp://", "amqps://")):
        raise ValueError(f"{key}: must start with amqp:// or amqps://, got {mask(url)!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # raises on a port that is not a number or out of range
    except ValueError as error:
        raise ValueError(f"{key}: not a URL ({error}): {mask(url)!r}") from None
    if not parts.hostname or any(c.isspace() for c in url):
        raise ValueError(f"{key}: not a URL with a host: {mask(url)!r}")
    if "ssl_options" in urllib.parse.parse_qs(parts.query):
        raise ValueError(f"{key}: ssl_options in the URL is not supported: use broker.tls_ca, tls_cert, "
                         "tls_key and tls_server_name")


def credentials(broker: Broker, file: str, environ: Mapping[str, str]) -> Broker:
    """Apply LOGSHIP_BROKER_URL, LOGSHIP_BROKER_PASSWORD or password_file to every node's URL."""
    urls, source = broker.url, "broker.url"
    if "LOGSHIP_BROKER_URL" in environ:
        found = split_urls(environ["LOGSHIP_BROKER_URL"])
        urls, source = found[0] if len(found) == 1 else found, "LOGSHIP_BROKER_URL"
    password, origin = environ.get("LOGSHIP_BROKER_PASSWORD"), "LOGSHIP_BROKER_PASSWORD"
    if password is None and broker.password_file:
        password, origin = _read_password(broker.password_file, file), "broker.password_file"
    if password is not None:
        if not password or any(c in password for c in "\r\n\0"):
            raise ConfigError(file, origin, "the password is empty or holds a line break or NUL")
        urls = _with_password(urls, password) if isinstance(urls, str) else \
            tuple(_with_password(url, password) for url in urls)
    try:
        broker = replace(broker, url=urls)
    except ValueError as error:  # the environment's URLs are checked as the file's were
        key, _, problem = str(error).partition(": ")
        where = source + key[3:] if key.startswith("url") else f"broker.{key}"  # url[1] -> LOGSHIP_BROKER_URL[1]
        raise ConfigError(file, where, problem or str(error)) from None
    _require_passwords(broker, source, file)
    return broker


def _require_passwords(broker: Broker, source: str, file: str) -> None:
    """A ConfigError for a URL that names a user but, with every source of a password applied, has none."""
    for i, url in enumerate(broker.urls):
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None and parts.password is None:
            key = source if isinstance(broker.url, str) else f"{source}[{i}]"
            raise ConfigError(file, key, f"names the user {parts.username!r} but no password: put the password in "
                              "a file (one line, readable by the service user) and set broker.password_file to "
                              "its path, or set LOGSHIP_BROKER_PASSWORD")


def _read_password(path: str, file: str) -> str:
    """The password in `path`, without surrounding whitespace."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(file, "broker.password_file", f"cannot read {path}: {error.strerror} (it holds the "
                          "broker password, one line, readable by the service user)") from None
    except UnicodeDecodeError:
        raise ConfigError(file, "broker.password_file", "not UTF-8 text") from None


def _with_password(url: str, password: str) -> str:
    """`url` with `password` (quoted) for its user, guest when it names none."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url  # Broker's own check names it
    user = parts.username or "guest"
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{urllib.parse.quote(password, safe='')}@{host}"))


def check_tls(broker: Broker) -> None:
    """Load the CA, certificate and key now, so `check` and start-up name a bad file (ValueError)."""
    if broker.tls_key and not broker.tls_cert:
        raise ValueError("tls_key: needs tls_cert (the client certificate it belongs to)")
    if not (broker.tls_ca or broker.tls_cert):
        return  # nothing to load: replay, render and check without TLS need no OpenSSL context
    import ssl  # here, not at the top: only a TLS config pays for it (a tenth of replay's imports)
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    key = "tls_ca"
    try:
        if broker.tls_ca:
            probe.load_verify_locations(cafile=broker.tls_ca)
        key = "tls_cert"
        if broker.tls_cert:
            probe.load_cert_chain(broker.tls_cert, broker.tls_key)
    except ssl.SSLError as error:
        raise ValueError(f"{key}: cannot load: {error.reason or error}") from None
    except OSError as error:
        raise ValueError(f"{key}: cannot read {error.filename or ''}: {error.strerror}") from None
