"""MailerQ's own config file, read for `logship init --from-mailerq`: what it publishes, and how to tap it once."""
from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field

from ..errors import ConfigError

#: the keys `init --from-mailerq` reads; every other line of MailerQ's file is left alone
KEYS = ("rabbitmq-address", "rabbitmq-verify", "rabbitmq-exchange", "rabbitmq-results", "rabbitmq-success",
        "rabbitmq-failure", "rabbitmq-retry", "rabbitmq-retries", "rabbitmq-encoding", "rabbitmq-outbox",
        "rabbitmq-queue")
#: where MailerQ connects when rabbitmq-address is empty (its documented default)
DEFAULT_ADDRESS = "amqp://guest:guest@localhost/"
#: the name of every queue logship declares for itself starts so: never mistaken for one of MailerQ's
PREFIX = "logship."
#: caps of a copy queue: a stopped logship loses its oldest records, the broker never fills (docs/mailerq.md);
#: the count matches the bytes at 4 KiB a result, so that reaching the cap is seen (AMQP counts no bytes)
MAX_LENGTH = 250_000
MAX_LENGTH_BYTES = 1 << 30


@dataclass(frozen=True)
class MailerQConfig:
    """The `key: value` settings of a MailerQ config file (the last of a repeated key wins)."""

    file: str
    settings: dict[str, str]

    def get(self, key: str) -> str:
        """A setting's value; '' when it is empty or not in the file."""
        return self.settings.get(key, "")


def read(path: str | os.PathLike[str]) -> MailerQConfig:
    """MailerQ's config file: `key: value` lines, `#` comments; a line of another shape is a ConfigError."""
    file = str(path)
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as error:
        raise ConfigError(file, "", f"cannot read MailerQ's config file: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(file, "", "not UTF-8 text: is this MailerQ's config file?") from None
    settings: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, colon, value = line.partition(":")
        if not colon or not key.strip() or " " in key.strip():
            raise ConfigError(file, f"line {number}", f"not a `key: value` line: {line[:60]!r}")
        settings[key.strip()] = value.strip()
    return MailerQConfig(file, settings)


@dataclass(frozen=True)
class Tap:
    """One queue logship consumes: a copy of its own (bound with `keys`) or, with no keys, MailerQ's queue itself."""

    name: str
    role: str
    keys: tuple[str, ...] = ()
    scope: str | None = None
    why: str = ""


@dataclass
class Plan:
    """What `init --from-mailerq` chose: the nodes, the exchange, the queues, and what it has to say about them."""

    urls: tuple[str, ...]
    vhost: str
    tls_verify: bool
    exchange: str
    layout: str
    taps: list[Tap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # why it chose so, and what MailerQ could do better


def plan(mq: MailerQConfig, version: tuple[int, int] | None = None) -> Plan:
    """Read what this MailerQ publishes and choose the queues that take all of it, once."""
    urls = logship_urls(mq)
    new = version >= (5, 15) if version else "rabbitmq-retries" in mq.settings
    exchange, exchange_note = _exchange(mq, version, new)
    result = Plan(urls, _vhost(urls[0]), mq.get("rabbitmq-verify").lower() not in ("false", "0", "no", "off"),
                  exchange, "MailerQ 5.15 or later" if new else "MailerQ up to 5.14")
    result.notes += [exchange_note] if exchange_note else []
    finals, retry, role = (_finals_new if new else _finals_old)(mq, result.notes)
    if not finals and not retry:
        raise ConfigError(mq.file, "rabbitmq-results", "MailerQ publishes no results with these settings: set "
                          + ("rabbitmq-success and rabbitmq-failure" if new else "rabbitmq-results"))
    if not finals:
        result.notes.append("MailerQ publishes no final results with these settings: the last attempt of each "
                            "e-mail is never logged")
    result.taps = (_copies if exchange else _direct)(finals, retry, role, result.notes)
    if mq.get("rabbitmq-encoding").lower() == "gzip":
        result.notes.append("rabbitmq-encoding is gzip: logship reads the content-encoding of each message, "
                            "nothing to set")
    return result


def _exchange(mq: MailerQConfig, version: tuple[int, int] | None, new: bool) -> tuple[str, str]:
    """The exchange MailerQ publishes to, and a note when the file leaves it to MailerQ's default."""
    if "rabbitmq-exchange" in mq.settings:
        return mq.get("rabbitmq-exchange"), ""
    if new or (version and version >= (5, 14)):
        return "mailerq", "rabbitmq-exchange is not set: MailerQ 5.14 and later then publish to \"mailerq\""
    return "", ("rabbitmq-exchange is not set: MailerQ up to 5.13 then publishes to the default exchange, "
                "5.14 and later to \"mailerq\"; read as up to 5.13 (pass --mailerq-version for a later one)")


def _finals_old(mq: MailerQConfig, notes: list[str]) -> tuple[list[tuple[str, str]], str, str]:
    """Up to 5.14: the queue names of the finals to tap, of the retries, and the retries' role."""
    results = mq.get("rabbitmq-results")
    split = [name for name in (mq.get("rabbitmq-success"), mq.get("rabbitmq-failure")) if name]
    if results and split:
        notes.append("rabbitmq-success and rabbitmq-failure carry the finals of rabbitmq-results again: "
                     "not tapped, every final would be written twice")
    retry = mq.get("rabbitmq-retry")
    if not retry:
        notes.append("rabbitmq-retry is empty: attempts that will be retried are logged when their e-mail is "
                     "final (the final result lists every attempt)")
    return ([(results, "results")] if results else _split(mq)), retry, "retry"


def _finals_new(mq: MailerQConfig, notes: list[str]) -> tuple[list[tuple[str, str]], str, str]:
    """5.15 and later: the finals (success, failure), the retries copied unless they go to the outbox."""
    for gone in ("rabbitmq-results", "rabbitmq-retry"):
        if mq.get(gone):
            notes.append(f"{gone} is set, but MailerQ 5.15 and later ignore it: not tapped")
    finals = _split(mq)
    retries = mq.get("rabbitmq-retries")
    outbox = {mq.get("rabbitmq-outbox") or "outbox", mq.get("rabbitmq-queue") or "outbox"}
    if retries in outbox:
        notes.append(f"rabbitmq-retries sends retries back to the outbox ({retries!r}): a copy would hold every "
                     "e-mail MailerQ is to send, bodies included, so only the finals are tapped; they list "
                     "every attempt, so each attempt is written once its e-mail is final (later, not lost)")
        return finals, "", "retries"
    if not retries:
        notes.append("rabbitmq-retries is not set: only the finals are tapped; they list every attempt")
    return finals, retries, "retries"


def _split(mq: MailerQConfig) -> list[tuple[str, str]]:
    """The success and failure queues with their roles; one queue named for both holds every final."""
    success, failure = mq.get("rabbitmq-success"), mq.get("rabbitmq-failure")
    if success and success == failure:
        return [(success, "results")]
    return [(name, role) for name, role in ((success, "success"), (failure, "failures")) if name]


def _copies(finals: list[tuple[str, str]], retry: str, role: str, notes: list[str]) -> list[Tap]:
    """With a named exchange: queues of logship's own, bound with MailerQ's routing keys."""
    keys = tuple(name for name, _role in finals)
    if retry and retry in keys:  # one MailerQ queue holds finals and retries: only each newest attempt is new
        return [Tap(PREFIX + "results", "results", keys, "latest",
                    "finals and retries under one routing key: each message's newest attempt is new")]
    taps = [Tap(PREFIX + "results", "results", keys, None, "every final result")] if finals else []
    if retry:
        taps.append(Tap(PREFIX + role, role, (retry,), None, "attempts that will be retried: the newest is new"))
    notes.append("queues of logship's own are bound to the exchange: MailerQ's queues and whoever consumes "
                 "them are not touched")
    return taps


def _direct(finals: list[tuple[str, str]], retry: str, role: str, notes: list[str]) -> list[Tap]:
    """With the default exchange: MailerQ's queues consumed directly (nothing can be bound to it)."""
    notes.append("MailerQ publishes to the default exchange, which cannot be bound to: logship consumes "
                 "MailerQ's queues directly, and any other program consuming them would share each queue "
                 "with logship, each seeing part of the results. To give logship copies instead, set "
                 "`rabbitmq-exchange: mailerq` in MailerQ, restart it, and run `logship init --from-mailerq` "
                 "again")
    if role == "retries" and retry:
        notes.append(f"{retry!r} holds live e-mails MailerQ sends again: never consumed; only the finals are tapped")
        retry = ""
    if retry and retry in (name for name, _role in finals):
        return [Tap(retry, "results", (), "latest", "finals and retries in one queue: the newest attempt is new")]
    taps = [Tap(name, role, (), None, "final results") for name, role in finals]
    return taps + ([Tap(retry, "retry", (), None, "attempts that will be retried")] if retry else [])


def logship_urls(mq: MailerQConfig) -> tuple[str, ...]:
    """MailerQ's nodes with logship's own user, `logship`, and no password: MailerQ's is never copied."""
    address = mq.get("rabbitmq-address") or DEFAULT_ADDRESS
    return tuple(_logship_url(mq.file, part.strip()) for part in address.split(",") if part.strip())


def _logship_url(file: str, url: str) -> str:
    """One node's URL with user `logship` and no password; the host, port and vhost as MailerQ has them."""
    scheme, sep, rest = url.partition("://")
    # MailerQ's password may hold '#', '/' or '?' unquoted: the host is after the last '@'
    where = rest.rpartition("@")[2]
    host, slash, vhost = where.partition("/")
    if scheme not in ("amqp", "amqps") or not sep or not host:
        raise ConfigError(file, "rabbitmq-address", f"not an amqp:// or amqps:// URL: {scheme}://{where!r}")
    return f"{scheme}://logship@{host}/{vhost if slash and vhost else '%2F'}"


def _vhost(url: str) -> str:
    """The virtual host a URL names."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path[1:]) or "/"
