"""A TCP proxy between the daemon and RabbitMQ that can blackhole both directions: a network partition."""
from __future__ import annotations

import select
import socket
import threading


class Proxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream`; `partition()` stops every byte, `heal()` lets them go.

    A partition drops nothing and closes nothing, as a cable pulled out would: bytes wait in the
    kernel's socket buffers (TCP's retransmissions, in effect), and a connection opened during
    the partition is accepted by the kernel but reaches RabbitMQ only once the path heals. So
    nothing but the peers' own timeouts (heartbeats, pika's handshake timeout) ends a connection.
    """

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.passing = threading.Event()
        self.passing.set()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.connections = 0  # accepted from the daemon, in total
        self._spawn(self._accept, "proxy-accept")

    def url(self, vhost: str, user: str = "guest", password: str = "guest") -> str:
        """The AMQP URL of `vhost` through the proxy."""
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/{vhost}"

    def partition(self) -> None:
        """Stop passing bytes, both ways, on every connection, new ones included."""
        self.passing.clear()

    def heal(self) -> None:
        """Pass bytes again: what waited is delivered, connections opened meanwhile reach the broker."""
        self.passing.set()

    def _spawn(self, target: object, name: str, *args: object) -> None:
        """A thread of the proxy's, joined by close()."""
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        """Accept connections; each reaches the broker once the path is open."""
        while not self.closed.is_set():
            try:
                if not select.select([self.listener], [], [], 0.1)[0]:
                    continue
            except (OSError, ValueError):  # closed under us
                return
            try:
                client, _ = self.listener.accept()
            except (OSError, ValueError):  # closed under us
                return
            self.connections += 1
            self.sockets.append(client)
            self._spawn(self._connect, "proxy-connect", client)

    def _connect(self, client: socket.socket) -> None:
        """Wait for an open path, connect upstream, then pump both ways."""
        while not self.passing.wait(0.1):
            if self.closed.is_set():
                return
        try:
            server = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            client.close()
            return
        self.sockets.append(server)
        self._spawn(self._pump, "proxy-up", client, server)
        self._pump(server, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy bytes from `source` to `sink` while the path is open; an end on either side ends both."""
        try:
            while not self.closed.is_set():
                if not self.passing.wait(0.1):
                    continue  # partitioned: leave the bytes in the kernel's buffers
                if not select.select([source], [], [], 0.1)[0]:
                    continue
                data = source.recv(65536)
                if not data:
                    break
                while not self.passing.wait(0.1):  # read just before the partition: deliver after it
                    if self.closed.is_set():
                        return
                sink.sendall(data)
        except (OSError, ValueError):  # reset by a peer, or closed under us
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Close every connection and the listener, and join the proxy's threads."""
        self.closed.set()
        self.passing.set()
        for sock in [self.listener, *self.sockets]:
            try:
                sock.close()
            except OSError:
                pass
        joined = 0
        while joined < len(self.threads):  # a thread may start one more on its way out
            self.threads[joined].join(timeout=5)
            joined += 1

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
