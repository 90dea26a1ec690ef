"""What systemd and Prometheus see of a running daemon: notifications, STATUS, metrics."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..errors import LogshipError
from .notify import Notifier, default

if TYPE_CHECKING:
    from .observed import DaemonState
    from .metrics import MetricsServer

log = logging.getLogger("logship")

STATUS_EVERY = 2.0  # seconds between STATUS= updates (and the window of the records/s figure)


class Service:
    """Sends READY/RELOADING/STOPPING/WATCHDOG/STATUS and serves /metrics for one daemon."""

    def __init__(self, daemon: DaemonState, notifier: Notifier | None = None) -> None:
        self.daemon = daemon
        self.notifier = notifier or default()
        self.metrics: MetricsServer | None = None
        self._status_at = 0.0
        self._written_then = 0
        self._rate = 0.0

    def start(self) -> None:
        """Before consuming: start the metrics server, make the loop tick often enough."""
        interval = self.notifier.watchdog_interval
        if interval is not None:
            # a ping is due every interval/2; ticking at interval/4 keeps it on time
            self.daemon.consumer.tick_interval = min(1.0, interval / 4)
        address = self.daemon.config.metrics.address
        if address is not None:
            from .metrics import MetricsServer
            try:
                self.metrics = MetricsServer(self.daemon, *address)
            except OSError as error:
                raise LogshipError(f"metrics: cannot listen on {_netloc(*address)}: {error.strerror}") from None
            host, port = self.metrics.address
            log.info("metrics listening", extra={"url": f"http://{_netloc(host, port)}/metrics"})
        self.notifier.status("connecting to the broker")

    def consuming(self) -> None:
        """Connected and consuming (again): READY=1."""
        self.notifier.ready(self.status_line())

    def tick(self) -> None:
        """Every loop turn: the watchdog ping when due, a fresh STATUS every few seconds."""
        self.notifier.watchdog()
        now = time.monotonic()
        if now - self._status_at >= STATUS_EVERY:
            written = self.daemon.pipeline.stats.written_total()
            if self._status_at:
                self._rate = (written - self._written_then) / (now - self._status_at)
            self._status_at, self._written_then = now, written
            self.notifier.status(self.status_line())

    def reloading(self) -> None:
        """RELOADING=1 (with MONOTONIC_USEC) before a reload."""
        self.notifier.reloading("reloading")

    def reloaded(self) -> None:
        """READY=1 after a reload, whatever its outcome: the daemon runs on."""
        self.notifier.ready(self.status_line())

    def stopping(self) -> None:
        """STOPPING=1 as shutdown begins."""
        self.notifier.stopping("stopping: settling the deliveries in hand")

    def status_line(self) -> str:
        """One line for `systemctl status`: what it does, how fast, what went wrong last."""
        consumer, stats = self.daemon.consumer, self.daemon.pipeline.stats
        queues = len(consumer.queues)
        if consumer.consuming:
            text = (f"consuming {queues} queue{'s' if queues != 1 else ''}, {self._rate:.0f} records/s, "
                    f"{stats.written_total()} written, {consumer.rejected} quarantined")  # rejected after quarantining
        else:
            text = "connecting to the broker"
        if consumer.output_error:
            text += "; OUTPUT FAILING, not acking"
        if consumer.last_error is not None:
            at, error = consumer.last_error
            text += f"; last error {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(at))}: {error}"  # as the log
        return text[:400]

    def close(self) -> None:
        """Stop the metrics server and close the notify socket."""
        if self.metrics is not None:
            self.metrics.close()
        self.notifier.close()


def _netloc(host: str, port: int) -> str:
    """host:port, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
