"""Delivery attempts counted for deliverability: by provider, sending IP and status class, and their lag.

An attempt is noted when the pipeline takes its delivery (the records `records()` makes, one per
attempt new in its queue's scope, whatever routes take them) and counted when the flush that
precedes the delivery's ack succeeds: the moment `logship_records_written_total` counts its records.
A delivery quarantined whole is never counted; one the broker redelivers is counted again only when
the pipeline writes it again.
"""
from __future__ import annotations

import bisect
from collections import Counter
from typing import Any, Iterable

from .render.deliverability import Sources, attempt_epoch, status_class
from .render.providers import PROVIDERS, Providers

#: lag bucket bounds in seconds: MailerQ stamps attempts to the second, so nothing finer;
#: up to a day, for a backlog drained after an outage
LAG_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)
MAX_SOURCES = 256
_CACHE_SIZE = 4096

Noted = tuple[str, str, Any, Any, Any]  # outcome, recipient domain, from, status, time


class Histogram:
    """A histogram as plain counts: observing is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        """Count `value` `times` times in the first bucket whose bound is at least it."""
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.sum += value * times

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, count) pairs as Prometheus wants them, +Inf last."""
        out, total = [], 0
        for bound, n in zip([*map(str, self.bounds), "+Inf"], list(self.counts)):
            total += n
            out.append((bound, total))
        return out


class Attempts:
    """The deliverability counters: attempts by (outcome, provider), (outcome, source), (outcome, status), lag."""

    def __init__(self, providers: Providers | None = None, max_sources: int = MAX_SOURCES) -> None:
        self.providers = providers or Providers(PROVIDERS)
        self.sources = Sources(max_sources)
        self.pending: list[Noted] = []  # taken by the pipeline, not yet written
        self.by_provider: Counter[tuple[str, str]] = Counter()
        self.by_source: Counter[tuple[str, str]] = Counter()
        self.by_status: Counter[tuple[str, str]] = Counter()
        self.lag = Histogram(LAG_BUCKETS)
        self._epochs: dict[str, float | None] = {}

    def note(self, records: Iterable[dict[str, Any]]) -> None:
        """The records of a delivery the pipeline took (hot path: one tuple per attempt)."""
        append = self.pending.append
        for record in records:
            attempt, derived = record["attempt"], record["record"]
            append((derived["outcome"], derived["recipient_domain"], attempt.get("from"),
                    attempt.get("status"), attempt.get("time")))

    def written(self, now: float) -> None:
        """Every noted attempt is in its outputs now (the flush before the ack succeeded): count it."""
        if not self.pending:
            return
        for (outcome, domain, source, status, stamp), n in _tally(self.pending).items():
            self.by_provider[(outcome, self.providers.of(domain))] += n
            self.by_source[(outcome, self.sources.label(source))] += n
            self.by_status[(outcome, status_class(status))] += n
            epoch = self._epoch(stamp)
            if epoch is not None:
                self.lag.observe(max(now - epoch, 0.0), n)  # a clock ahead of ours is no lag
        self.pending.clear()

    def _epoch(self, stamp: Any) -> float | None:
        """attempt_epoch, remembered: the attempts of a busy second share their stamp."""
        if not isinstance(stamp, str):
            return None
        if stamp not in self._epochs:
            if len(self._epochs) >= _CACHE_SIZE:
                self._epochs.clear()
            self._epochs[stamp] = attempt_epoch(stamp)
        return self._epochs[stamp]


def _tally(pending: list[Noted]) -> Counter[Noted]:
    """Equal attempts counted together; a field a hostile body made a list or table counts as absent."""
    try:
        return Counter(pending)
    except TypeError:  # unhashable: rare, so the common case pays nothing for the check
        return Counter(tuple(v if v is None or isinstance(v, (str, int, float)) else None for v in noted)
                       for noted in pending)  # type: ignore[misc]
