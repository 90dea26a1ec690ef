"""Wiring for `logship run`: config, formats, outputs, consumer, signals."""
from __future__ import annotations

import logging
import signal
from types import FrameType

from .config import Config, warnings
from .consumer import Consumer
from .formats import FormatSet
from .pipeline import Pipeline

log = logging.getLogger("logship")


class Daemon:
    """One running logship: a pipeline fed by a consumer, steered by signals."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.formats = FormatSet.load(config.formats.dir)
        self.pipeline = Pipeline.build(config, self.formats)
        self.consumer = Consumer(config.broker, config.queues, self.pipeline, on_tick=self.tick)
        self._reopen = False

    def run(self) -> None:
        """Consume until SIGTERM or SIGINT, then flush, ack and close."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._hangup)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past a file size limit: EFBIG, not death
        log.info("started", extra={"config": self.config.file, "formats": self._versions(),
                                   "outputs": [o.name for o in self.config.outputs],
                                   "scopes": {q.name: q.scope for q in self.config.queues}})
        for warning in warnings(self.config):
            log.warning(warning)
        try:
            self.consumer.run()
        finally:
            self.pipeline.close()
        log.info("stopped", extra={"acked": self.consumer.acked, "rejected": self.consumer.rejected})

    def tick(self) -> None:
        """Called from the consumer's loop between deliveries."""
        if self._reopen:
            self._reopen = False
            self.pipeline.reopen()
            log.info("outputs reopened")

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: finish the batch in hand and exit."""
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        self.consumer.stop()

    def _hangup(self, _signum: int, _frame: FrameType | None) -> None:
        """SIGHUP: reopen output files (after logrotate) at the next tick."""
        self._reopen = True

    def _versions(self) -> dict[str, str]:
        """Each live format's content hash, for the log."""
        return {name: f.digest for name, f in self.formats.formats.items()}
