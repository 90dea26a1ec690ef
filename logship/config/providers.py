"""Mailbox providers for the deliverability counters: the shipped table, its patterns and their check."""
from __future__ import annotations

import re
from typing import Mapping

OTHER = "other"  # every domain no provider claims

#: The shipped table: provider -> domain patterns (see docs/metrics.md for the syntax).
#: By recipient domain only: a company on Google Workspace or Microsoft 365 is `other`.
PROVIDERS: dict[str, tuple[str, ...]] = {
    "google": ("gmail.com", "googlemail.com"),
    "microsoft": ("outlook.com", "outlook.*", "hotmail.*", "live.*", "msn.com", "windowslive.com",
                  "passport.com"),
    "yahoo": ("yahoo.*", "ymail.com", "rocketmail.com", "aol.*", "aim.com", "verizon.net"),
    "apple": ("icloud.com", "me.com", "mac.com"),
    "gmx": ("gmx.*", "web.de"),  # GMX and WEB.DE: one company, one set of servers
    "mailru": ("mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru"),
    "yandex": ("yandex.*", "ya.ru"),
    "orange": ("orange.fr", "wanadoo.fr"),
    "comcast": ("comcast.net",),
    "proton": ("proton.me", "protonmail.com", "protonmail.ch", "pm.me"),
    "zoho": ("zoho.com", "zohomail.com"),
    "fastmail": ("fastmail.com", "fastmail.fm"),
    "t-online": ("t-online.de",),
    "free": ("free.fr",),
    "sfr": ("sfr.fr", "neuf.fr"),
    "laposte": ("laposte.net",),
    "libero": ("libero.it",),
    "seznam": ("seznam.cz",),
    "wp": ("wp.pl", "o2.pl"),
    "qq": ("qq.com", "foxmail.com"),
    "netease": ("163.com", "126.com", "yeah.net"),
    "naver": ("naver.com",),
}

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
#: `gmail.com` (that domain), `*.example.com` (any subdomain of it), `hotmail.*` (the name under any
#: top-level suffix: one label such as hotmail.fr, or two with a short first one such as hotmail.co.uk)
PATTERN = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})+|{_LABEL}\.\*")
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")


def check_providers(table: Mapping[str, tuple[str, ...]]) -> None:
    """Raise ValueError("providers.NAME[i]: problem") for a bad name or pattern, or one claimed twice."""
    owner: dict[str, str] = {}
    for name, patterns in table.items():
        if not NAME.fullmatch(name) or name == OTHER:
            raise ValueError(f"providers.{name}: a provider name is lower-case letters, digits, '_', '.' "
                             f"or '-', at most 40, and not {OTHER!r}")
        for i, pattern in enumerate(patterns):
            if not PATTERN.fullmatch(pattern):
                raise ValueError(f"providers.{name}[{i}]: {pattern!r} is not a domain, *.domain or name.*")
            if owner.setdefault(pattern, name) != name:
                raise ValueError(f"providers.{name}[{i}]: {pattern!r} is also claimed by {owner[pattern]!r}")


def merged(extra: Mapping[str, tuple[str, ...]], shipped: bool = True) -> dict[str, tuple[str, ...]]:
    """The shipped table (unless `shipped` is false) with `extra`'s providers added or replacing theirs."""
    table = dict(PROVIDERS) if shipped else {}
    table.update(extra)
    return {name: patterns for name, patterns in table.items() if patterns}  # [] drops a shipped one
