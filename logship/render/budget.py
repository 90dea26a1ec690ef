"""The time budget of a render: a render that runs past it is interrupted on the main thread.

A format is a program: `{% for i in range(100000) %}{% for j in range(100000) %}…` would run
for hours on the consumer's thread, with no ack, no heartbeat work and no watchdog ping.
While a budget is armed, a periodic SIGALRM (setitimer, a few times a second; no thread) lets
the main thread look at the render in progress: one that has run past the budget is ended
with RenderTimeout. Marking a render costs one clock read; nothing is armed per render,
since a system call per record would cost more than the limits may.

Python runs signal handlers on the main thread only, so renders on other threads are not
timed (logship renders only on its main thread). Single operations that could run long in C
are refused before they start (sandbox.py), so every long render is a Python-level loop that
the handler can interrupt.
"""
from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any, Callable, TypeVar

DEFAULT_SECONDS = 1.0
T = TypeVar("T")


class RenderTimeout(BaseException):
    """A render ran past its budget (a BaseException, so no `except Exception` on the way swallows it)."""


class Budget:
    """How long one render may take, and the render now running (its start, 0 when none)."""

    def __init__(self, seconds: float = DEFAULT_SECONDS) -> None:
        self.seconds = seconds
        self.started = 0.0   # time.monotonic() when the current render began; 0.0: none running
        self._previous: Any = None
        self.armed = False
        # called at each alarm while a render within its budget runs (the daemon: the systemd
        # watchdog ping): many slow but bounded renders are progress, not a stuck loop
        self.on_progress: Callable[[], Any] | None = None

    def begin(self) -> None:
        """A render starts now (the hot path: one clock read)."""
        self.started = time.monotonic()

    def end(self) -> None:
        """No render is running."""
        self.started = 0.0

    def run(self, render: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`render(*args, **kwargs)`, timed: a `when`, a path expression, a syslog header template."""
        self.begin()
        try:
            return render(*args, **kwargs)
        finally:
            self.end()

    def arm(self) -> bool:
        """Start the periodic check (main thread only); False elsewhere, where renders are not timed."""
        if self.armed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
        tick = min(0.25, max(self.seconds / 4, 0.01))
        signal.setitimer(signal.ITIMER_REAL, tick, tick)
        self.armed = True
        return True

    def disarm(self) -> None:
        """Stop the periodic check and put the previous SIGALRM handler back."""
        if not self.armed:
            return
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, self._previous if self._previous is not None else signal.SIG_DFL)
        self.armed = False

    def _on_alarm(self, _signum: int, _frame: FrameType | None) -> None:
        """On the main thread, between two bytecodes: end a render that is over its budget."""
        started = self.started
        if not started:
            return  # no render running: whatever the thread is doing, the alarm is not about it
        if time.monotonic() - started > self.seconds:
            self.started = 0.0
            raise RenderTimeout(f"the render took longer than formats.render_timeout ({self.seconds:g} s)")
        if self.on_progress is not None:
            self.on_progress()


#: the budget every render is measured against; the daemon, replay and render arm it
BUDGET = Budget()
