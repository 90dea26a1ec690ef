"""Counts the pipeline keeps on the hot path as plain integers; the exporter reads them at scrape time."""
from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Iterable, Protocol, Sequence

#: upper bounds of the flush duration buckets: a write and fdatasync take from well under
#: a millisecond (page cache, SSD) to seconds (a saturated disk, a remote receiver)
FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: attempt lag bounds: MailerQ stamps attempts to the second, so nothing finer; up to a day,
#: for a backlog drained after an outage
LAG_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)

#: distinct (outcome, provider, source, status) kept before they are summed into the three families
#: (about 150 bytes each)
FOLD_AT = 20_000


class Durations:
    """A histogram as plain counts: observing is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = FLUSH_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        """Count `value` `times` times in the first bucket whose bound is at least it."""
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.sum += value * times

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, count) pairs as Prometheus wants them, +Inf last."""
        counts, total, out = list(self.counts), 0, []
        for bound, n in zip([*map(str, self.bounds), "+Inf"], counts):
            total += n
            out.append((bound, total))
        return out


class AttemptLabels(Protocol):
    """Names a batch of attempts for the deliverability counters (render/deliverability.py has the real one)."""

    names: tuple[str, ...]  # the providers

    def providers(self, domains: Sequence[str]) -> Iterable[str]: ...
    def sources(self, raws: Sequence[Any]) -> Iterable[str]: ...
    def statuses(self, raws: Sequence[Any]) -> Iterable[str]: ...
    def lags(self, lag: Durations, stamps: Sequence[Any], now: float) -> None: ...


Noted = tuple[str, str, Any, Any, Any]  # outcome, recipient domain, from, status, time
_PARTS = itemgetter("attempt", "record")


class Attempts:
    """Attempts by (outcome, provider), (outcome, sending IP), (outcome, status class), and their lag.

    The pipeline notes the records decode makes for each delivery it takes (one per attempt new
    in its queue's scope, whatever routes take them) and counts them when the flush before the
    acks succeeds, as the records written: a redelivery counts again only where it is written
    again. Without labels (metrics off, replay) nothing is noted.
    """

    def __init__(self, labels: AttemptLabels | None = None) -> None:
        self.labels = labels
        self.pending: list[Noted] = []  # attempts taken by the pipeline, not yet written
        # (outcome, provider, source, status) -> attempts: one count per attempt on the hot path;
        # the three families are sums of it, folded into `_folded` when it grows past FOLD_AT keys
        self.combined: Counter[tuple[str, str, str, str]] = Counter()
        self._folded: tuple[Counter[tuple[str, str]], ...] = (Counter(), Counter(), Counter())
        self._lock = threading.Lock()  # the scrape thread reads while the loop thread folds
        self.lag = Durations(LAG_BUCKETS)

    @property
    def noting(self) -> list[Noted] | None:
        """Where records() notes each attempt it makes (render/record.py), or None when nothing is counted."""
        return self.pending if self.labels is not None else None

    def note(self, records: Iterable[dict[str, Any]]) -> None:
        """Note records made without `noting` (tests, tools): one small tuple per attempt."""
        if self.labels is not None:
            self.pending += [(derived["outcome"], derived["recipient_domain"], attempt.get("from"),
                              attempt.get("status"), attempt.get("time")) for attempt, derived in map(_PARTS, records)]

    def written(self, now: float) -> None:
        """Every noted attempt is in its outputs now (the flush before the ack succeeded): count it."""
        labels, pending = self.labels, self.pending
        if not pending or labels is None:
            return
        # by column, each label worked out once per distinct value and the counting done in C
        outcomes, domains, sources, statuses, stamps = zip(*pending)
        self.combined.update(zip(outcomes, labels.providers(domains), labels.sources(sources),
                                 labels.statuses(statuses)))
        labels.lags(self.lag, stamps, now)
        pending.clear()
        if len(self.combined) > FOLD_AT:
            with self._lock:
                self.combined_into(self.combined, self._folded)
                self.combined = Counter()

    @property
    def by_provider(self) -> Counter[tuple[str, str]]:
        """Attempts by (outcome, provider) so far."""
        return self.families()[0]

    @property
    def by_source(self) -> Counter[tuple[str, str]]:
        """Attempts by (outcome, sending IP label) so far."""
        return self.families()[1]

    @property
    def by_status(self) -> Counter[tuple[str, str]]:
        """Attempts by (outcome, status class) so far."""
        return self.families()[2]

    def families(self) -> tuple[Counter[tuple[str, str]], ...]:
        """(by provider, by source, by status), each keyed by (outcome, label); read by the exporter."""
        with self._lock:  # dict copies are single C calls: a batch counted meanwhile is in or out whole
            totals = tuple(Counter(dict(c)) for c in self._folded)
            combined = dict(self.combined)
        self.combined_into(combined, totals)
        return totals

    @staticmethod
    def combined_into(combined: dict[tuple[str, str, str, str], int],
                      totals: tuple[Counter[tuple[str, str]], ...]) -> None:
        """Sum (outcome, provider, source, status) counts into the three (outcome, label) families."""
        by_provider, by_source, by_status = totals
        for (outcome, provider, source, status), n in combined.items():
            by_provider[outcome, provider] += n
            by_source[outcome, source] += n
            by_status[outcome, status] += n


@dataclass
class Stats:
    """What the pipeline did: records per (output, format), quarantines, render errors, flushes."""

    buffered: Counter[tuple[str, str]] = field(default_factory=Counter)  # in a sink, not yet durable
    written: Counter[tuple[str, str]] = field(default_factory=Counter)   # flushed: durable
    quarantined: Counter[str] = field(default_factory=Counter)           # per queue
    render_errors: Counter[str] = field(default_factory=Counter)         # per format
    # per (output, format): one route of a record failed and went to the quarantine (issue 14)
    route_failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    flushes: dict[str, Durations] = field(default_factory=dict)          # per output: flush durations
    failing: set[str] = field(default_factory=set)                       # outputs whose last flush failed
    attempts: Attempts = field(default_factory=Attempts)                 # deliverability; see Attempts

    def flushed(self, output: str, seconds: float | None = None) -> None:
        """The output's buffered records are durable now; its flush took `seconds`."""
        for key in [key for key in self.buffered if key[0] == output]:
            self.written[key] += self.buffered.pop(key)
        self.failing.discard(output)
        if seconds is not None:
            self._durations(output).observe(seconds)

    def flush_failed(self, output: str, seconds: float) -> None:
        """The output's flush raised after `seconds`: it holds the acks back until one succeeds."""
        self.failing.add(output)
        self._durations(output).observe(seconds)

    def _durations(self, output: str) -> Durations:
        """The output's flush histogram, made at its first flush."""
        durations = self.flushes.get(output)
        if durations is None:
            durations = self.flushes[output] = Durations()
        return durations

    def backlog(self) -> Counter[str]:
        """Records per output that are buffered but not yet durable."""
        backlog: Counter[str] = Counter()
        for (output, _format), n in list(self.buffered.items()):
            backlog[output] += n
        return backlog

    def written_total(self) -> int:
        """Every record made durable so far."""
        return sum(list(self.written.values()))

    def written_per_output(self) -> Counter[str]:
        """Records made durable so far, per output."""
        per_output: Counter[str] = Counter()
        for (output, _format), n in list(self.written.items()):
            per_output[output] += n
        return per_output
