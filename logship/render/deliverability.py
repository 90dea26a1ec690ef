"""An attempt's deliverability labels: its provider, sending IP (capped), status class, and time as Unix time."""
from __future__ import annotations

import calendar
import ipaddress
import logging
import re
from typing import Any, Mapping

from ..config.providers import OTHER

log = logging.getLogger("logship")

OUTCOMES = ("delivered", "deferred", "bounced", "expired", "failed")  # record.outcome's values
NONE = "none"  # no enhanced status, or no sending IP
_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)", re.ASCII)
_STATUS = re.compile(r"([245])\.([0-7])\.\d{1,3}", re.ASCII)  # RFC 3463: class 2, 4 or 5; subjects 0 to 7
CACHE_SIZE = 16384  # domains or times remembered; a long tail past it is looked up afresh, never grows memory


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
        self._cache: dict[str, str] = {}

    def of(self, domain: str) -> str:
        """The provider of a lower-cased recipient domain, or `other`."""
        provider = self._cache.get(domain)
        if provider is None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            provider = self._cache[domain] = self._match(domain)
        return provider

    def _match(self, domain: str) -> str:
        """The lookup behind the cache."""
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
    """What stats.Attempts asks of an attempt, from the config's provider table and source cap."""

    def __init__(self, table: Mapping[str, tuple[str, ...]], max_sources: int) -> None:
        self.providers = Providers(table)
        self.names = self.providers.names
        self.provider = self.providers.of
        self.source = Sources(max_sources).label
        self.status = status_class
        self._epochs: dict[str, float | None] = {}

    def epoch(self, stamp: Any) -> float | None:
        """attempt_epoch, remembered: the attempts of a busy second share their stamp."""
        if not isinstance(stamp, str):
            return None
        if stamp not in self._epochs:
            if len(self._epochs) >= CACHE_SIZE:
                self._epochs.clear()
            self._epochs[stamp] = attempt_epoch(stamp)
        return self._epochs[stamp]
