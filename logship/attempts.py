"""Delivery attempts counted for deliverability: by provider, sending IP and status class, and their lag.

An attempt is noted when the pipeline takes its delivery (the records `records()` makes, one per
attempt new in its queue's scope, whatever routes take them) and counted when the flush that
precedes the delivery's ack succeeds: the moment `logship_records_written_total` counts its records.
A delivery quarantined whole is never counted; one the broker redelivers is counted again only when
the pipeline writes it again.
"""
from __future__ import annotations

import bisect
import calendar
import ipaddress
import logging
import re
from collections import Counter
from typing import Any, Iterable

from .providers import OTHER, PROVIDERS, Providers

log = logging.getLogger("logship")

OUTCOMES = ("delivered", "deferred", "bounced", "expired", "failed")  # record.outcome's values
NONE = "none"  # no enhanced status, or no sending IP
#: lag bucket bounds in seconds: MailerQ stamps attempts to the second, so nothing finer;
#: up to a day, for a backlog drained after an outage
LAG_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)
MAX_SOURCES = 256
_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)", re.ASCII)
_STATUS = re.compile(r"([245])\.([0-7])\.\d{1,3}", re.ASCII)  # RFC 3463: class 2, 4 or 5; subjects 0 to 7
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


def status_class(status: Any) -> str:
    """`4.7` for "4.7.28": the enhanced status code's class and subject; `none` for anything else."""
    if isinstance(status, str):
        found = _STATUS.fullmatch(status.strip())
        if found:
            return f"{found[1]}.{found[2]}"
    return NONE


def attempt_epoch(stamp: Any) -> float | None:
    """MailerQ's attempt `time` (UTC, `YYYY-MM-DD HH:MM:SS`) as Unix time; None when it is not one."""
    found = _STAMP.fullmatch(stamp) if isinstance(stamp, str) else None
    if found is None:
        return None
    year, month, day, hour, minute, second = map(int, found.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second)))


class Sources:
    """Sending IPs as labels: the first `cap` seen keep their own, later ones are `other` (said once)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.labels: dict[str, str] = {}  # as MailerQ wrote it -> the address in its normal form
        self.admitted: set[str] = set()
        self.warned = False

    def label(self, raw: Any) -> str:
        """The label of an attempt's `from`: its address, `other` past the cap, `none` without one."""
        known = self.labels.get(raw) if isinstance(raw, str) else None
        return known if known is not None else self._new(raw)

    def _new(self, raw: Any) -> str:
        """A `from` not seen before: admit it while there is room."""
        try:
            address = str(ipaddress.ip_address(raw)) if isinstance(raw, str) else None
        except ValueError:
            address = None  # not an address: no sending IP to speak of
        if address is None:
            return NONE
        if address not in self.admitted:
            if len(self.admitted) >= self.cap:
                self._full(address)
                return OTHER
            self.admitted.add(address)
        if len(self.labels) < 2 * self.cap:  # other spellings of an admitted address: bounded too
            self.labels[raw] = address
        return address

    def _full(self, address: str) -> None:
        """Say once that the cap is reached: the label set stops growing here."""
        if not self.warned:
            self.warned = True
            log.warning("metrics.max_sources reached: further sending IPs are counted as source_ip=\"other\"",
                        extra={"max_sources": self.cap, "source_ip": address})


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
