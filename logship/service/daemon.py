"""Wiring for `logship run`: config, formats, outputs, consumer, watcher, signals."""
from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from types import FrameType

from . import reload as reloading
from ..render.budget import BUDGET
from ..config.load import Config, warnings
from ..broker.consumer import Consumer
from ..errors import OutputError
from ..render.formats import FormatSet
from ..stats import Attempts, Stats
from ..render.deliverability import AttemptLabels
from ..pipeline import Pipeline
from .memory import fewer_collections
from .status import Service
from .watch import Watcher, snapshot

log = logging.getLogger("logship")

RELOAD_RETRY = 1.0  # seconds between tries while an output being replaced cannot flush
GONE_RECHECK = 0.5  # a format file missing at a reload is removed if still missing this much later


class Daemon:
    """One running logship: a pipeline fed by a consumer, steered by signals and the watcher."""

    def __init__(self, config: Config) -> None:
        on_disk = snapshot(config.file, config.formats.dir)  # before loading: no change slips by
        self.config = config
        self.formats = FormatSet.load(config.formats.dir)
        metrics = config.metrics  # read at start only: counts by a table that changed mid-run would mislead
        attempts = Attempts(AttemptLabels(metrics.provider_table(), metrics.max_sources) if metrics.address else None)
        self.pipeline = Pipeline.build(config, self.formats, stats=Stats(attempts=attempts))
        self.consumer = Consumer(config.broker, config.queues, self.pipeline, on_tick=self.tick)
        self.watcher = Watcher(config.file, config.formats.dir, self.request_reload, initial=on_disk) \
            if config.formats.watch else None
        self.last_reload_error: str | None = None
        self.service = Service(self)  # sd_notify and metrics
        self.consumer.on_consuming = self.service.consuming
        self.reloads: Counter[str] = Counter()   # "ok" / "failed", for metrics
        self.reopens = 0                         # SIGHUP and SIGUSR1 reopens, for metrics
        # the outcome of the last reload, and when one last succeeded (start-up counts as one)
        self.last_reload_ok, self.last_reload_success = True, time.time()
        self._reopen = False
        self._reload_at: float | None = None  # when to reload next (monotonic), None: not asked
        self._gone: set[str] = set()  # live formats whose file was missing at the last reload

    def run(self) -> None:
        """Consume until SIGTERM or SIGINT, then flush, ack and close."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._hangup)
        signal.signal(signal.SIGUSR1, self._reopen_signal)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past a file size limit: EFBIG, not death
        log.info("started", extra={"config": self.config.file, "formats": self.formats.versions(),
                                   "outputs": [o.name for o in self.config.outputs],
                                   "scopes": {q.name: q.scope for q in self.config.queues},
                                   "watching": self.watcher is not None})
        for warning in warnings(self.config):
            log.warning(warning)
        if self.watcher:
            self.watcher.start()
        fewer_collections()
        BUDGET.on_progress = self.service.notifier.watchdog  # a long run of bounded renders still pings
        try:
            self.service.start()
            self.consumer.run()
        finally:
            BUDGET.on_progress = None
            if self.watcher:
                self.watcher.stop()
            self.pipeline.close()
            self.service.close()
        log.info("stopped", extra={"acked": self.consumer.acked, "rejected": self.consumer.rejected})

    def tick(self) -> None:
        """Called from the consumer's loop between deliveries: reload and reopen happen here."""
        due = self._reload_at is not None and time.monotonic() >= self._reload_at \
            and not (self.watcher and self.watcher.busy())  # mid-save: the watcher calls again
        if due:
            self._reload_and_reopen()
        elif self._reopen:
            self._reopen_outputs()
        self.service.tick()

    def _reload_and_reopen(self) -> None:
        """A reload (and the reopen SIGHUP asks for) between RELOADING=1 and READY=1, counted for metrics."""
        self.service.reloading()
        ok = self.reload()
        self._reopen_outputs()
        self.reloads["ok" if ok else "failed"] += 1
        self.last_reload_ok = ok
        if ok:
            self.last_reload_success = time.time()
        self.service.reloaded()

    def _reopen_outputs(self) -> None:
        """Reopen every output file and the quarantine, if a signal asked for it; no reload."""
        if self._reopen:
            self._reopen = False
            self.pipeline.reopen()
            self.reopens += 1
            log.info("outputs reopened")

    def request_reload(self) -> None:
        """Ask for a reload at the next tick (thread-safe: the watcher calls it)."""
        self._reload_at = 0.0
        self.consumer.wake()

    def reload(self) -> bool:
        """Re-read config and formats and swap in what is valid; True when all of it was.

        Runs on the consumer's thread, between two deliveries. A broken format keeps its
        running version, an invalid config keeps the running config; both count as failed.
        """
        self._reload_at = None
        try:
            config, errors = reloading.reload(self.pipeline, self._gone)
        except OutputError as error:
            log.error("reload waits: an output being replaced cannot flush", extra={"error": str(error)})
            self._reload_later(RELOAD_RETRY)
            return self._reloaded([f"an output being replaced cannot flush: {error}"])
        except Exception as error:  # a reload must never take the daemon down
            log.exception("reload failed; the running setup stays")
            return self._reloaded([f"{type(error).__name__}: {error}"])
        if self.watcher and config.formats.dir != self.config.formats.dir:
            self.watcher.retarget(config.formats.dir)
        self.config, self.formats = config, self.pipeline.formats
        self.consumer.reconfigure(config.broker, config.queues)
        gone, self._gone = self._gone, reloading.missing(self.formats)
        if self._gone - gone:  # look again once a delete-and-recreate save would be over
            self._reload_later(GONE_RECHECK)
        return self._reloaded(errors)

    def _reload_later(self, seconds: float) -> None:
        """Reload again in `seconds`, unless one is asked for sooner (the watcher, during this one)."""
        later = time.monotonic() + seconds
        if self._reload_at is None or self._reload_at > later:
            self._reload_at = later

    def _reloaded(self, errors: list[str]) -> bool:
        """Log the live versions after a reload; remember the last error for `check`-like reports."""
        self.last_reload_error = "; ".join(errors) if errors else None
        log.info("reloaded" if not errors else "reloaded with errors",
                 extra={"ok": not errors, "formats": self.formats.versions(), "errors": errors})
        return not errors

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: finish the batch in hand and exit."""
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        self.service.stopping()
        self.consumer.stop()

    def _hangup(self, _signum: int, _frame: FrameType | None) -> None:
        """SIGHUP: reload config and formats and reopen output files, at the next tick."""
        self._reopen = True
        self._reload_at = 0.0

    def _reopen_signal(self, _signum: int, _frame: FrameType | None) -> None:
        """SIGUSR1 (logrotate): reopen the output files and the quarantine at the next tick, nothing else."""
        self._reopen = True
