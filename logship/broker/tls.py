"""TLS for amqps:// broker URLs: the client context and the name each node's certificate must carry."""
from __future__ import annotations

import ssl
import urllib.parse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config.broker import Broker


def context(broker: Broker) -> ssl.SSLContext:
    """A client context: the node's certificate checked against tls_ca (or the system's CAs) by default."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    if broker.tls_verify:
        if broker.tls_ca:
            tls.load_verify_locations(cafile=broker.tls_ca)
        else:
            tls.load_default_certs()
    else:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    if broker.tls_cert:
        tls.load_cert_chain(broker.tls_cert, broker.tls_key)
    return tls


def server_name(broker: Broker, url: str) -> str:
    """The name the node's certificate is checked against: tls_server_name, else the URL's host."""
    return broker.tls_server_name or urllib.parse.urlsplit(url).hostname or ""
