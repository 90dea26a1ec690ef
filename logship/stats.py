"""Counts the pipeline keeps on the hot path as plain integers; the exporter reads them at scrape time."""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from .attempts import Attempts

#: upper bounds of the flush duration buckets: a write and fdatasync take from well under
#: a millisecond (page cache, SSD) to seconds (a saturated disk, a remote receiver)
FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Durations:
    """A histogram as plain counts: observing is a bisect and two additions, once per flush."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(FLUSH_BUCKETS) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration in the first bucket whose bound is at least `seconds`."""
        self.counts[bisect.bisect_left(FLUSH_BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, count) pairs as Prometheus wants them, +Inf last."""
        counts, total, out = list(self.counts), 0, []
        for bound, n in zip([*map(str, FLUSH_BUCKETS), "+Inf"], counts):
            total += n
            out.append((bound, total))
        return out


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
    attempts: Attempts = field(default_factory=Attempts)                 # deliverability (issue 23)

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
