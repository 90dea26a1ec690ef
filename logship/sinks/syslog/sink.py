"""Records as syslog messages: a buffer in front, a sender thread behind, nothing ever dropped."""
from __future__ import annotations

import bisect
import collections
import itertools
import logging
import threading
import time
from typing import Any

from ...config.load import Route
from ...config.outputs import SyslogOutput
from ...errors import OutputError
from .message import MessageBuilder
from .transport import Transport, parse_address, tls_context

log = logging.getLogger("logship")

#: frames taken per turn of the sender; a stream gets them in one buffer, 64 KiB at a time
BATCH = 256
CHUNK = 1 << 16
#: a flush waits at most this many flush_timeouts, and only while messages keep going out
PATIENCE = 5


class SyslogSink:
    """Buffers framed messages; a thread hands them to the transport in order, reconnecting as needed.

    The buffer is bounded by the consumer: `flush` fails until everything written so far has been
    handed over, so nothing is acknowledged meanwhile and RabbitMQ stops delivering once the
    prefetch window of unacknowledged deliveries is full.
    """

    def __init__(self, name: str, builder: MessageBuilder, transport: Transport,
                 flush_timeout: float = 0.1, reconnect_max: float = 10.0) -> None:
        self.name, self.builder, self.transport = name, builder, transport
        self.flush_timeout, self.reconnect_max = flush_timeout, reconnect_max
        self._frames: collections.deque[bytes] = collections.deque()
        self._written = self._sent = 0
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._reconnect = False
        self._connected = False
        self._down_since: float | None = None
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"syslog-{name}", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, output: SyslogOutput) -> SyslogSink:
        """A sink for a [[outputs]] table of type syslog."""
        address = parse_address(output.address)
        context = (tls_context(output.tls_ca, output.tls_cert, output.tls_key, output.tls_verify)
                   if address.scheme == "tls" else None)
        transport = Transport(address, output.connect_timeout, context, output.tls_server_name)
        return cls(output.name, MessageBuilder(output), transport, output.flush_timeout, output.reconnect_max)

    @property
    def buffered(self) -> int:
        """Messages not yet handed to the transport."""
        return self._written - self._sent

    def write(self, record: dict[str, Any], line: str, route: Route | None = None) -> None:
        """Build the message and queue it for the sender; never blocks on the receiver."""
        message = self.builder.build(record, line, route)
        with self._lock:
            self._frames.append(message)
            self._written += 1
            self._lock.notify_all()

    def flush(self) -> None:
        """Return once everything written so far is handed over, or raise OutputError soon.

        Waits flush_timeout; while the receiver keeps taking messages, up to PATIENCE times that,
        so a busy receiver is not reported as a failed one.
        """
        with self._lock:
            target = self._written
            for _ in range(PATIENCE):
                before = self._sent
                if self._lock.wait_for(lambda: self._sent >= target, timeout=self.flush_timeout):
                    return
                if self._sent == before:
                    break
            waiting = self._written - self._sent
        why = self.last_error or "the receiver is not taking messages fast enough"
        raise OutputError(f"{self.name}: {waiting} syslog messages not yet sent to {self.transport.address}: {why}")

    def reopen(self) -> None:
        """Reconnect before the next batch (SIGHUP)."""
        self._reconnect = True

    def close(self) -> None:
        """Stop the sender; what it has not sent by then is not promised."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        self._thread.join(timeout=5)
        self.transport.close()

    def _run(self) -> None:
        """The sender thread: take a batch, make sure of a connection, send; back off on errors."""
        delay = 0.1
        while not self._stopping.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            try:
                self._connect()
                self._send(batch)
                delay = 0.1
                self._recovered()
            except Exception as error:  # OSError mostly; anything else must not kill the sender either
                self._lost(error)
                self._stopping.wait(delay)
                delay = min(delay * 2, self.reconnect_max)

    def _next_batch(self) -> list[bytes]:
        """The oldest buffered frames (left in the buffer until sent); waits a moment when none."""
        with self._lock:
            if not self._frames:
                self._lock.wait(timeout=1.0)
            return list(itertools.islice(self._frames, BATCH))

    def _connect(self) -> None:
        """Connect when not connected (or asked to reconnect); check a stream is still open."""
        if self._reconnect:
            self._reconnect, self._connected = False, False
        if self._connected:
            self.transport.check_open()
            return
        self.transport.connect()
        self._connected = True

    def _send(self, batch: list[bytes]) -> None:
        """Hand the frames over in order, counting each one sent as soon as all its bytes are."""
        if self.transport.address.datagram:
            for frame in batch:
                while not self.transport.write(memoryview(frame)):
                    self._check_stopping()
                self._mark_sent(1)
        else:
            self._send_stream(batch)

    def _send_stream(self, batch: list[bytes]) -> None:
        """Write the frames as one buffer, CHUNK bytes at a time; a frame counts once wholly written."""
        data = memoryview(b"".join(batch))
        ends = list(itertools.accumulate(len(f) for f in batch))
        offset = done = 0
        while offset < len(data):
            written = self.transport.write(data[offset:offset + CHUNK])
            if not written:
                self._check_stopping()
            offset += written
            finished = bisect.bisect_right(ends, offset)
            self._mark_sent(finished - done)
            done = finished

    def _mark_sent(self, count: int) -> None:
        """Drop `count` frames from the buffer's head and wake a waiting flush."""
        if not count:
            return
        with self._lock:
            for _ in range(count):
                self._frames.popleft()
            self._sent += count
            self._lock.notify_all()

    def _check_stopping(self) -> None:
        """Give up on a stalled receiver when the sink is closed."""
        if self._stopping.is_set():
            raise InterruptedError("the output is closing")

    def _lost(self, error: Exception) -> None:
        """Drop the connection; the first error of an outage goes to the daemon's log."""
        self.transport.close()
        self._connected = False
        self.last_error = f"{type(error).__name__}: {error}"[:300]
        if self._down_since is None and not self._stopping.is_set():
            self._down_since = time.monotonic()
            log.warning("syslog receiver unreachable; buffering and reconnecting",
                        extra={"output": self.name, "address": str(self.transport.address),
                               "error": self.last_error})

    def _recovered(self) -> None:
        """After an outage: say once that messages flow again."""
        if self._down_since is None:
            return
        log.info("syslog receiver reachable again",
                 extra={"output": self.name, "address": str(self.transport.address),
                        "down_seconds": round(time.monotonic() - self._down_since, 1),
                        "buffered": self.buffered})
        self._down_since, self.last_error = None, None
