"""An attempt's deliverability labels: its provider, sending IP (capped), status class, and time as Unix time."""
from __future__ import annotations

import calendar
import ipaddress
import logging
import re
from bisect import bisect_left, bisect_right
from collections import Counter
from itertools import compress, repeat
from operator import add, is_, itemgetter
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from ..config.providers import OTHER

if TYPE_CHECKING:
    from ..stats import Durations

log = logging.getLogger("logship")

OUTCOMES = ("delivered", "deferred", "bounced", "expired", "failed")  # record.outcome's values
NONE = "none"  # no enhanced status, or no sending IP
_HOUR = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d)", re.ASCII)
_STATUS = re.compile(r"([245])\.([0-7])\.\d{1,3}", re.ASCII)  # RFC 3463: class 2, 4 or 5; subjects 0 to 7
CACHE_SIZE = 16384  # domains or sending IPs remembered; a long tail past it is looked up afresh, never grows memory


def status_class(status: Any) -> str:
    """`4.7` for "4.7.28": the enhanced status code's class and subject; `none` for anything else."""
    if isinstance(status, str):
        found = _STATUS.fullmatch(status.strip())
        if found:
            return f"{found[1]}.{found[2]}"
    return NONE


def attempt_epoch(stamp: Any) -> float | None:
    """MailerQ's attempt `time` (UTC, `YYYY-MM-DD HH:MM:SS`) as Unix time; None when it is not one."""
    if type(stamp) is not str or len(stamp) != 19:
        return None
    hour = _HOURS_SEEN.get(stamp[:13])
    if hour is None:
        hour = _hour(stamp[:13])
    into = _INTO_HOUR.get(stamp[13:])  # two lookups, no parsing: every attempt has a time
    return None if hour < 0 or into is None else hour + into


#: ":MM:SS" -> seconds into the hour (":59:60" is a leap second); 3,660 short strings
_INTO_HOUR = {f":{m:02d}:{s:02d}": m * 60 + s for m in range(60) for s in range(61)}
_HOURS_SEEN: dict[str, float] = {}  # "YYYY-MM-DD HH" -> its Unix time, -1 when it is not one
_PREFIX, _SUFFIX = itemgetter(slice(0, 13)), itemgetter(slice(13, None))  # "YYYY-MM-DD HH", ":MM:SS"


def _hour(prefix: str) -> float:
    """Unix time of a UTC `YYYY-MM-DD HH`, remembered (a bounded few); -1 when it is not one."""
    found = _HOUR.fullmatch(prefix)
    year, month, day, hour = map(int, found.groups()) if found else (0, 0, 0, 0)
    valid = 1 <= month <= 12 and 1 <= day <= 31 and hour < 24
    if len(_HOURS_SEEN) >= 4096:  # garbage or a backlog of many hours: never grows past this
        _HOURS_SEEN.clear()
    _HOURS_SEEN[prefix] = epoch = float(calendar.timegm((year, month, day, hour, 0, 0))) if valid else -1.0
    return epoch


def observe_lags(lag: Durations, stamps: Sequence[Any], now: float) -> None:
    """Observe `now` minus each MailerQ time of a batch: in C passes, unless a time is not well formed."""
    # A slice and a lookup per half of each time, mapped in C; then the times sorted (nearly in
    # order already) and each bucket's count read by bisecting them: no Python step per attempt.
    try:
        hours = list(map(_HOURS_SEEN.get, map(_PREFIX, stamps)))
        if None in hours:  # an hour not seen yet: read each new one, then look again
            for stamp in set(stamps):
                if type(stamp) is str and stamp[:13] not in _HOURS_SEEN:
                    _hour(stamp[:13])
            hours = list(map(_HOURS_SEEN.get, map(_PREFIX, stamps)))
        into = list(map(_INTO_HOUR.get, map(_SUFFIX, stamps)))
    except TypeError:  # a number, a list or a table a hostile body put there
        hours = into = [None]
    if None in hours or None in into or min(hours, default=0.0) < 0:  # some value is not a time
        _observe_each(lag, stamps, now)
        return
    times = sorted(map(add, hours, into))
    total, counts, below = len(times), lag.counts, 0
    for i, bound in enumerate(lag.bounds):  # a lag within `bound` is a time at or after now - bound
        within = total - bisect_left(times, now - bound)
        counts[i] += within - below
        below = within
    counts[-1] += total - below
    behind = bisect_right(times, now)  # a time ahead of our clock is no lag
    lag.sum += now * behind - sum(times[:behind])


def _observe_each(lag: Durations, stamps: Sequence[Any], now: float) -> None:
    """observe_lags for a batch holding something that is no time: each distinct value on its own."""
    try:
        distinct = Counter(stamps)
    except TypeError:  # unhashable: no time
        distinct = Counter(s if type(s) is str else None for s in stamps)
    counts, bounds, total = lag.counts, lag.bounds, 0.0
    for stamp, n in distinct.items():
        epoch = attempt_epoch(stamp)
        if epoch is not None:
            late = now - epoch
            late = late if late > 0 else 0.0  # a clock ahead of ours is no lag
            counts[bisect_left(bounds, late)] += n
            total += late * n
    lag.sum += total


class Sources:
    """Sending IPs as labels: the first `cap` seen keep their own, later ones are `other` (said once)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.admitted: set[str] = set()
        self.warned = False

    def label(self, raw: Any) -> str:
        """The label of an attempt's `from`: its address, `other` past the cap, `none` without one."""
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
        return address

    def _full(self, address: str) -> None:
        """Say once that the cap is reached: the label set stops growing here."""
        if not self.warned:
            self.warned = True
            log.warning("metrics.max_sources reached: further sending IPs are counted as source_ip=\"other\"",
                        extra={"max_sources": self.cap, "source_ip": address})


class Labelled:
    """A label made batch-wise: each distinct value labelled once and remembered, the batch mapped in C."""

    def __init__(self, label: Callable[[Any], str], size: int = CACHE_SIZE) -> None:
        self.label, self.size = label, size
        self.cache: dict[Any, str] = {}

    def __call__(self, values: Sequence[Any]) -> Iterable[str]:
        """The label of each value, in order."""
        cache = self.cache
        try:
            labels = list(map(cache.get, values))  # a label is never None: None is a value not seen yet
        except TypeError:  # a list or table a hostile body put there: as absent
            values = [v if v is None or isinstance(v, (str, int, float)) else None for v in values]
            labels = list(map(cache.get, values))
        if None not in labels:
            return labels
        new = dict.fromkeys(compress(values, map(is_, labels, repeat(None))))  # in the order they came
        if len(cache) + len(new) > self.size:  # a long tail is labelled afresh, memory stays bounded
            cache.clear()
            new = dict.fromkeys(values)
        for value in new:  # the first sources seen are the ones kept
            cache[value] = self.label(value)
        return map(cache.__getitem__, values)


class Providers:
    """Groups recipient domains into providers: exact, then the longest `*.` suffix, then `name.*`."""

    def __init__(self, table: Mapping[str, tuple[str, ...]]) -> None:
        self.names = tuple(table)
        self.exact: dict[str, str] = {}
        self.suffixes: dict[str, str] = {}   # "example.com" for "*.example.com"
        self.any_tld: dict[str, str] = {}    # "hotmail" for "hotmail.*"
        for name, patterns in table.items():
            for pattern in patterns:
                if pattern.startswith("*."):
                    self.suffixes[pattern[2:]] = name
                elif pattern.endswith(".*"):
                    self.any_tld[pattern[:-2]] = name
                else:
                    self.exact[pattern] = name

    def of(self, domain: str) -> str:
        """The provider of a lower-cased recipient domain, or `other`."""
        found = self.exact.get(domain)
        if found is not None:
            return found
        labels = domain.split(".")
        for i in range(1, len(labels) - 1):  # longest suffix first; a bare TLD is no provider's
            found = self.suffixes.get(".".join(labels[i:]))
            if found is not None:
                return found
        if len(labels) == 2 or (len(labels) == 3 and len(labels[1]) <= 3):
            return self.any_tld.get(labels[0], OTHER)
        return OTHER


class AttemptLabels:
    """What stats.Attempts asks of a batch of attempts, from the config's provider table and source cap."""

    def __init__(self, table: Mapping[str, tuple[str, ...]], max_sources: int) -> None:
        providers = Providers(table)
        self.names = providers.names
        self.providers = Labelled(providers.of)
        self.sources = Labelled(Sources(max_sources).label)
        self.statuses = Labelled(status_class, 1024)
        self.lags = observe_lags
