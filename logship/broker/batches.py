"""The batch in hand: when it is due, and settling it (flush the outputs, reject, then one multiple-ack)."""
from __future__ import annotations

import logging
import time
from collections import Counter

from ..config.broker import Broker
from ..errors import OutputError
from ..pipeline import Pipeline

log = logging.getLogger("logship")

# A batch is also settled once the broker has sent nothing for this share of batch_interval
# (10 ms of the default 50): the end of a burst reaches the disk then, not up to 50 ms later,
# much as rsyslog's omfile flushes when its queue runs dry. A steady stream is never that
# quiet, so it fills its batches as before. A trickle of about 100 a second syncs more often,
# but never more than about twice as often as batch_interval alone allows (docs/configuration.md, "Batches").
QUIET_SHARE = 0.2


class Batches:
    """The consumer's batches: deliveries in hand until the outputs hold them, acks once they do."""

    broker: Broker
    pipeline: Pipeline
    tick_interval: float
    last_error: tuple[float, str] | None

    def _start_batches(self) -> None:
        """Nothing in hand, nothing counted yet."""
        self._pending: list[tuple[int, bool, str]] = []   # (delivery tag, ack?, queue) not yet settled
        self._first_pending = 0.0
        self._last_arrival = 0.0  # when a loop turn last brought deliveries
        self._retry_at = 0.0
        self._output_backoff = 0.0
        self.output_error: str | None = None
        self.last_ack_time = time.time()  # wall clock, for logship_last_ack_timestamp_seconds
        self.acked = self.rejected = 0
        # for STATUS= and metrics: per (queue, received|acked|rejected)
        self.deliveries: Counter[tuple[str, str]] = Counter()

    def _wait(self) -> float:
        """How long the next poll may block: until the batch is due, at most a second."""
        if not self._pending:
            return self.tick_interval
        due = max(self._batch_due(), self._retry_at)
        return min(max(due - time.monotonic(), 0.0), self.tick_interval)

    def _batch_due(self) -> float:
        """When the batch in hand is due, unless it fills first: its interval is over, or the broker went quiet."""
        interval = self.broker.batch_interval
        return min(self._first_pending + interval, self._last_arrival + interval * QUIET_SHARE)

    def _settle(self, channel: object, force: bool) -> None:
        """Flush the outputs when the batch is due, then reject and ack what they hold."""
        if not self._pending:
            return
        now = time.monotonic()
        due = len(self._pending) >= self.broker.batch_size or now >= self._batch_due()
        if not (due or force) or now < self._retry_at:
            return
        try:
            self.pipeline.flush()
        except OutputError as error:
            self._output_failed(str(error), now)
            return
        if self.output_error is not None:
            log.info("outputs recovered; acknowledging again", extra={"after_error": self.output_error})
            self.output_error, self._output_backoff = None, 0.0
        for tag, ok, _queue in self._pending:
            if not ok:
                channel.basic_reject(tag, requeue=False)  # type: ignore[attr-defined]
        # ack up to the last good tag: acking a tag already rejected is a channel error
        good = [tag for tag, ok, _queue in self._pending if ok]
        if good:
            channel.basic_ack(good[-1], multiple=True)  # type: ignore[attr-defined]
        self._count_settled()
        self._pending.clear()
        self.last_ack_time = time.time()

    def _count_settled(self) -> None:
        """Count the batch just settled, per queue and in total."""
        for _tag, ok, queue in self._pending:
            self.deliveries[(queue, "acked" if ok else "rejected")] += 1
        rejected = sum(1 for _tag, ok, _queue in self._pending if not ok)
        self.rejected += rejected
        self.acked += len(self._pending) - rejected

    def _output_failed(self, error: str, now: float) -> None:
        """Stop acking, say so once, and try again after a capped backoff."""
        if self.output_error is None:
            log.error("an output failed; not acknowledging until it recovers", extra={"error": error})
        self.output_error, self.last_error = error, (time.time(), error)
        self._output_backoff = min(max(self._output_backoff * 2, 0.1), 5.0)
        self._retry_at = now + self._output_backoff

    @property
    def in_hand(self) -> int:
        """Deliveries received and not yet acked or rejected."""
        return len(self._pending)
