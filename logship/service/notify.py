"""The systemd notify protocol (sd_notify): a few lines over a unix datagram socket."""
from __future__ import annotations

import os
import socket
import time
from typing import Mapping


class Notifier:
    """Tells systemd about readiness, reloads, shutdown, status and liveness; a no-op outside systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.address = _address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(environ)
        self._socket: socket.socket | None = None
        self._last_ping = 0.0
        self._status = ""

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send one datagram of VAR=value lines; False (never an exception) when it cannot go."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto("\n".join(assignments).encode(), self.address)
            return True
        except OSError:
            return False  # systemd gone or restarting: the service itself must carry on

    def ready(self, status: str | None = None) -> bool:
        """READY=1: started (or done reloading); optionally with a STATUS line."""
        return self.send("READY=1", *self._status_line(status))

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC, which systemd 253+ needs to match the reload."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *self._status_line(status))

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: shutting down on purpose."""
        return self.send("STOPPING=1", *self._status_line(status))

    def status(self, text: str) -> bool:
        """STATUS=text for `systemctl status`, sent only when it changed."""
        if text == self._status:
            return False
        return self.send(*self._status_line(text))

    def watchdog(self, now: float | None = None) -> bool:
        """WATCHDOG=1 when half the watchdog interval has passed since the last ping."""
        if self.watchdog_interval is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_ping < self.watchdog_interval / 2:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")

    def _status_line(self, text: str | None) -> list[str]:
        """The STATUS assignment (one line: a newline would end the value), remembered."""
        if text is None:
            return []
        self._status = text
        return ["STATUS=" + " ".join(text.splitlines())]

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _address(value: str) -> str | bytes | None:
    """NOTIFY_SOCKET as a socket address: a path, or '@name' in the abstract namespace."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # unset, or a vsock address that a service on the host never gets


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """WATCHDOG_USEC in seconds, when it is meant for this process (WATCHDOG_PID)."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID")
    if usec <= 0 or (pid is not None and pid != str(os.getpid())):
        return None
    return usec / 1_000_000


_default: Notifier | None = None


def default() -> Notifier:
    """The process's notifier, built from the environment on first use."""
    global _default
    if _default is None:
        _default = Notifier()
    return _default


def ready(status: str | None = None) -> bool:
    """READY=1 through the default notifier."""
    return default().ready(status)


def reloading(status: str | None = None) -> bool:
    """RELOADING=1 + MONOTONIC_USEC through the default notifier."""
    return default().reloading(status)


def stopping(status: str | None = None) -> bool:
    """STOPPING=1 through the default notifier."""
    return default().stopping(status)
