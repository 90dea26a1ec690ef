"""Syslog transports: UDP, TCP, TLS (RFC 5425) and unix datagram sockets, none of them blocking long."""
from __future__ import annotations

import select
import socket
import ssl
import urllib.parse
from dataclasses import dataclass

#: how long one socket operation may block before the sender looks at its flags again
POLL = 0.5
DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}
#: max_size defaults: RFC 5426 asks UDP receivers for 2048; rsyslog's default maxMessageSize is 8096
#: (a longer octet-counted frame is split into two messages there), syslog-ng's is 65536
DEFAULT_SIZES = {"udp": 2048, "tcp": 8096, "tls": 8096, "unix": 8096}
MAX_SIZES = {"udp": 65507, "tcp": 1 << 20, "tls": 1 << 20, "unix": 1 << 20}


@dataclass(frozen=True)
class Address:
    """Where a syslog receiver listens: udp://host:port, tcp://…, tls://… or unix:///path."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def datagram(self) -> bool:
        """Whether each message travels alone (no framing)."""
        return self.scheme in ("udp", "unix")

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse an output's `address`; ValueError says what is wrong."""
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "unix":
        path = parts.path
        if parts.netloc or not path.startswith("/"):
            raise ValueError(f"address: {text!r}: a unix socket is written unix:///absolute/path")
        return Address("unix", path=path)
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"address: {text!r}: must start with udp://, tcp://, tls:// or unix://")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError(f"address: {text!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"address: {text!r}: expected {scheme}://host:port")
    return Address(scheme, parts.hostname, port)


def tls_context(ca: str | None, cert: str | None, key: str | None, verify: bool) -> ssl.SSLContext:
    """A client context: the server's certificate checked against `ca` (or the system's) by default."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        if ca:
            context.load_verify_locations(cafile=ca)
        else:
            context.load_default_certs()
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert:
        context.load_cert_chain(cert, key)
    return context


class Transport:
    """One connection to a receiver; `write` returns how many bytes it took (0: try again)."""

    def __init__(self, address: Address, connect_timeout: float = 5.0,
                 context: ssl.SSLContext | None = None, server_name: str | None = None) -> None:
        self.address, self.connect_timeout = address, connect_timeout
        self.context, self.server_name = context, server_name
        self.sock: socket.socket | None = None

    def connect(self) -> None:
        """Open the socket (a datagram socket is connected, so errors come back to us)."""
        self.close()
        if self.address.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.connect(self.address.path)
            except OSError:
                sock.close()
                raise
        elif self.address.scheme == "udp":
            family, kind, proto, _name, where = socket.getaddrinfo(
                self.address.host, self.address.port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.connect(where)
            except OSError:
                sock.close()
                raise
        else:
            sock = self._connect_stream()
        sock.settimeout(POLL)
        self.sock = sock

    def _connect_stream(self) -> socket.socket:
        """A TCP connection, wrapped in TLS for tls:// (handshake included)."""
        sock = socket.create_connection((self.address.host, self.address.port), timeout=self.connect_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # notice a receiver host that vanished
        if self.address.scheme != "tls":
            return sock
        try:
            tls = self.context.wrap_socket(sock, server_hostname=self.server_name or self.address.host)  # type: ignore[union-attr]
            if tls.version() == "TLSv1.3":
                self._await_verdict(tls)
            return tls
        except BaseException:
            sock.close()
            raise

    def _await_verdict(self, tls: ssl.SSLSocket) -> None:
        """Wait briefly for the server's answer to our certificate, which TLS 1.3 sends after the handshake.

        A server that rejects the client (no or an untrusted certificate) says so only then; messages
        written before would be counted as handed over and lost. OpenSSL servers send their session
        tickets once they accept the client, so the wait ends as soon as those arrive.
        """
        readable, _, _ = select.select([tls], [], [], min(self.connect_timeout, 1.0))
        if not readable:
            return  # a server that sends nothing: go ahead
        tls.setblocking(False)
        try:
            if tls.recv(4096) == b"":
                raise ConnectionResetError("the receiver closed the connection after the TLS handshake")
        except ssl.SSLWantReadError:
            pass  # session tickets: accepted
        finally:
            tls.settimeout(self.connect_timeout)

    def write(self, data: memoryview) -> int:
        """Send a datagram or part of a stream; 0 when the receiver is not taking data right now."""
        try:
            return self.sock.send(data)  # type: ignore[union-attr]
        except (TimeoutError, ssl.SSLWantWriteError, BlockingIOError):
            return 0  # a TLS write that timed out must be retried with the same bytes: the caller does

    def check_open(self) -> None:
        """Raise ConnectionResetError when a stream receiver has closed its end."""
        if self.address.datagram or self.sock is None:
            return
        readable, _, _ = select.select([self.sock], [], [], 0)
        if not readable:
            return
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(4096)  # receivers send nothing; TLS may send session tickets
        except (ssl.SSLWantReadError, BlockingIOError):
            data = None
        finally:
            self.sock.settimeout(POLL)
        if data == b"":
            raise ConnectionResetError("the receiver closed the connection")

    def close(self) -> None:
        """Close the socket, if open."""
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
