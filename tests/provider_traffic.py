#!/usr/bin/env python3
"""MailerQ traffic across hundreds of recipient domains and sending IPs, and what each attempt must count as.

  provider_traffic.py N [--seed S] > traffic.jsonl     # {"queue", "body"} lines, as publish.py reads

As MailerQ publishes: each soft failure to `retry` with the attempts so far, the final result to
`results` with all of them. Attempt times are a few seconds to a few minutes before now (UTC), so
the lag a daemon measures is its own. The expectations are written out by hand here, not computed
with logship's code: provider per domain, outcome and status label per attempt.
"""
from __future__ import annotations

import argparse
import calendar
import ipaddress
import json
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

#: domains of the shipped table, with the provider each must count under
KNOWN = {"gmail.com": "google", "googlemail.com": "google", "hotmail.co.uk": "microsoft",
         "outlook.fr": "microsoft", "live.com": "microsoft", "msn.com": "microsoft", "yahoo.co.jp": "yahoo",
         "aol.com": "yahoo", "icloud.com": "apple", "gmx.net": "gmx", "web.de": "gmx", "mail.ru": "mailru",
         "yandex.ru": "yandex", "orange.fr": "orange"}
CUSTOM = {"eu.acme.example": "acme", "us.acme.example": "acme"}  # the test config's [metrics.providers]
LOOKALIKES = ["notgmail.com", "mx.gmail.com", "gmail.com.example", "live.nationevents.com", "acme.example"]
TAIL = [f"shop{k}.example" for k in range(400)] + [f"mail.firm{k}.test" for k in range(100)]
SOURCES = [f"203.0.113.{k}" for k in range(1, 255)] + [f"198.51.100.{k}" for k in range(1, 61)] + \
    [f"2001:0db8::{k:x}" for k in range(1, 11)]  # 324 in all; IPv6 written unnormalized, as some do
SOFT = [(421, "4.7.28"), (451, "4.3.0"), (452, "4.2.2"), (421, "4.77.1"), (450, None)]
HARD = [(550, "5.1.1"), (554, "5.7.1"), (550, "x.y.z"), (552, 552)]
STATUS_LABEL = {"4.7.28": "4.7", "4.3.0": "4.3", "4.2.2": "4.2", "5.1.1": "5.1", "5.7.1": "5.7", "2.0.0": "2.0",
                "5.1.2": "5.1", "4.4.7": "4.4"}  # anything else ("4.77.1", "x.y.z", 552, none): "none"


@dataclass(frozen=True)
class Expected:
    """What one attempt must be counted as."""

    outcome: str
    provider: str
    source: str | None  # the address in its normal form, None without one
    status: str
    epoch: float


def provider(domain: str) -> str:
    """The provider the test expects for a recipient domain."""
    return KNOWN.get(domain) or CUSTOM.get(domain) or "other"


def stamp(epoch: float) -> str:
    """MailerQ's attempt time: UTC, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def attempt(rng: random.Random, kind: str, epoch: float) -> dict[str, Any]:
    """One element of `results`: kind is accepted, soft, hard, dns or expired."""
    if kind == "dns":
        return {"state": "dns", "result": "error", "time": stamp(epoch), "code": 550, "status": "5.1.2"}
    if kind == "expired":
        return {"state": "process", "result": "timeout", "time": stamp(epoch), "code": 450, "status": "4.4.7"}
    code, status = (250, "2.0.0") if kind == "accepted" else rng.choice(SOFT if kind == "soft" else HARD)
    out = {"state": "message" if kind == "accepted" else "rcptto", "result": "accepted" if kind == "accepted"
           else "error", "time": stamp(epoch), "from": rng.choice(SOURCES), "code": code}
    if status is not None:
        out["status"] = status
    return out


def expected(kind: str, domain: str, made: dict[str, Any]) -> Expected:
    """What the attempt `made` of `kind` to `domain` must count as."""
    outcome = {"accepted": "delivered", "soft": "deferred", "hard": "bounced", "dns": "bounced",
               "expired": "expired"}[kind]
    source = str(ipaddress.ip_address(made["from"])) if "from" in made else None
    status = STATUS_LABEL.get(made.get("status"), "none") if isinstance(made.get("status"), str) else "none"
    epoch = float(calendar.timegm(time.strptime(made["time"], "%Y-%m-%d %H:%M:%S")))
    return Expected(outcome, provider(domain), source, status, epoch)


def email(rng: random.Random, i: int, now: float) -> tuple[list[dict[str, Any]], list[Expected]]:
    """The events of one e-mail and the attempts they hold."""
    domain = rng.choice(rng.choices([list(KNOWN), list(CUSTOM), LOOKALIKES, TAIL], [45, 5, 5, 45])[0])
    final = rng.choices(["accepted", "hard", "dns", "expired"], [80, 12, 4, 4])[0]
    softs = 0 if final == "dns" else rng.choices([0, 1, 2], [70, 20, 10])[0]
    start = now - rng.uniform(5, 240)
    base = {"envelope": f"bounces+{i}@sender.example.com", "recipient": f"user{i}@{domain}"}
    history: list[dict[str, Any]] = []
    events, attempts = [], []
    for k, kind in enumerate(["soft"] * softs + [final]):
        made = attempt(rng, kind, start + 60 * k - 60 * softs)
        history.append(made)
        attempts.append(expected(kind, domain, made))
        events.append({"queue": "retry" if kind == "soft" else "results", "body": {**base, "results": list(history)}})
    return events, attempts


def traffic(n: int, seed: int = 23, now: float | None = None) -> tuple[list[dict[str, Any]], list[Expected]]:
    """The events of `n` e-mails and every attempt they hold, once."""
    rng, now = random.Random(seed), time.time() if now is None else now
    events: list[dict[str, Any]] = []
    attempts: list[Expected] = []
    for i in range(n):
        more, made = email(rng, i, now)
        events += more
        attempts += made
    return events, attempts


def main() -> int:
    """Print the events as JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("--seed", type=int, default=23)
    args = parser.parse_args()
    for event in traffic(args.n, args.seed)[0]:
        sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
