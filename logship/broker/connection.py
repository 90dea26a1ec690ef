"""pika's side of one node: connection parameters, and broker errors said plainly (declarations: topology.py)."""
from __future__ import annotations

import logging
import ssl
from types import TracebackType

import pika
import pika.exceptions

from ..errors import ConfigError
from . import tls
from ..config.broker import Broker, mask

log = logging.getLogger("logship")

# The settings a connection is made with; a reload that changes one of them reconnects.
CONNECTION_KEYS = ("url", "prefetch", "heartbeat", "tls_ca", "tls_cert", "tls_key", "tls_verify", "tls_server_name")


def parameters(broker: Broker, url: str) -> pika.URLParameters:
    """pika's parameters for one node: our heartbeat, one try (the rounds are ours), TLS for amqps://."""
    params = pika.URLParameters(url)
    params.heartbeat = broker.heartbeat
    params.connection_attempts = 1
    if url.startswith("amqps://"):
        params.ssl_options = pika.SSLOptions(tls.context(broker), tls.server_name(broker, url))
    return params


def check_urls(broker: Broker, file: str, source: str = "broker.url") -> None:
    """A ConfigError naming the key when pika's own parser refuses a node's URL: at load, never at a connect."""
    for i, url in enumerate(broker.urls):
        try:
            pika.URLParameters(url)
        except Exception as error:  # ValueError, TypeError, KeyError...: whatever pika's parser raises
            key = source if isinstance(broker.url, str) else f"{source}[{i}]"
            raise ConfigError(file, key, f"pika cannot use this URL ({type(error).__name__}: {error}): "
                              f"{mask(url)!r}") from None


def settings(broker: Broker) -> tuple[object, ...]:
    """The settings a connection is made with (batches and the backoff are not among them)."""
    return tuple(getattr(broker, key) for key in CONNECTION_KEYS)


def delivery_count(headers: dict[str, object]) -> int | None:
    """A quorum queue's x-delivery-count (deliveries before this one); None where the queue keeps none."""
    count = headers.get("x-delivery-count")
    return int(count) if isinstance(count, int) and not isinstance(count, bool) else None


def describe(error: BaseException) -> str:
    """A short description of a broker error without credentials."""
    if isinstance(error, ssl.SSLCertVerificationError):  # say which setting decides, not just _ssl.c's words
        return (f"TLS: the node's certificate is refused: certificate verify failed: {error.verify_message} "
                "(broker.tls_ca names the CAs trusted, broker.tls_server_name the name expected)")
    text = str(error) or repr(error)
    return f"{type(error).__name__}: {text}"[:300]


# Modules that are pika's connection layer: pika itself and the frame loop logship gives it.
PIKA_LAYER = ("pika.", "logship.broker.frames")


def raised_by_pika(error: BaseException) -> bool:
    """True when pika's connection layer raised `error`, not logship's own code called from it.

    pika reports a connection that died under it in more ways than its own exceptions: a
    timer asked of a closed ioloop is a ValueError ("Timeout closed before call"), a write on
    a torn-down transport an AttributeError. Those are a lost connection. The innermost frame
    that is pika's or logship's decides, so a bug in logship's code (a callback pika calls
    included) still surfaces instead of turning into an endless reconnect.
    """
    deciding = None
    tb: TracebackType | None = error.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.startswith(("pika.", "logship.")):
            deciding = module
        tb = tb.tb_next
    return deciding is not None and deciding.startswith(PIKA_LAYER)
