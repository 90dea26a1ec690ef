"""Filters a log writer needs: quoting for JSON, logfmt and CSV, MailerQ times, redaction."""
from __future__ import annotations

import calendar
import re
from typing import Any

import orjson
from jinja2 import Undefined

#: the fields that carry secrets or bodies; `redact` replaces them
SECRET_PATHS = (("dkim", "*", "key"), ("smarthost", "password"), ("mime",), ("data",))
REDACTED = "[redacted]"

_LOGFMT_BARE = re.compile(r"[^\s\"=\\\x00-\x1f\x7f]+")
_MAILERQ_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)")


def _plain(value: Any) -> Any:
    """Undefined (a missing field) becomes None; anything else is kept."""
    return None if isinstance(value, Undefined) else value


def _default(value: Any) -> Any:
    """orjson fallback: dict and str subclasses, and anything else as text."""
    if isinstance(value, Undefined):
        return None
    if isinstance(value, dict):
        return dict(value)
    return str(value)


def to_json(value: Any) -> str:
    """Any value as JSON (a missing field is null); control characters escaped."""
    return orjson.dumps(value, default=_default).decode()  # _default turns Undefined into null


def logfmt(value: Any) -> str:
    """A logfmt value: bare when safe, else double-quoted with escapes; missing is empty."""
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = value if isinstance(value, str) else to_json(value) if isinstance(value, (dict, list)) else str(value)
    if _LOGFMT_BARE.fullmatch(text):
        return text
    return to_json(text)


def csv(value: Any) -> str:
    """An RFC 4180 CSV field: quoted when it holds a comma, quote or line break."""
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = value if isinstance(value, str) else str(value)
    if any(c in text for c in ',"\r\n') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def iso8601(value: Any) -> str:
    """MailerQ's `YYYY-MM-DD HH:MM:SS` (UTC) as `YYYY-MM-DDTHH:MM:SSZ`; '' when not a time."""
    match = _MAILERQ_TIME.fullmatch(str(_plain(value) or "").strip())
    return "{}-{}-{}T{}:{}:{}Z".format(*match.groups()) if match else ""


def epoch(value: Any) -> int | str:
    """MailerQ's time (UTC) as Unix seconds; '' when not a time."""
    match = _MAILERQ_TIME.fullmatch(str(_plain(value) or "").strip())
    return calendar.timegm(tuple(int(g) for g in match.groups())) if match else ""


def domain(address: Any) -> str:
    """The lower-cased part after the last @, or '' when there is none."""
    if not isinstance(address, str):
        return ""
    at = address.rfind("@")
    return address[at + 1:].strip().strip(">").lower() if at >= 0 else ""


def domain_of(value: Any) -> str:
    """The lower-cased domain of an address."""
    return domain(_plain(value))


def redact(value: Any) -> Any:
    """A copy of a message with dkim keys, smarthost password, mime and data replaced."""
    value = _plain(value)
    if not isinstance(value, dict):
        return value
    copy = dict(value)
    for path in SECRET_PATHS:
        _redact_path(copy, path)
    return copy


def scrub(text: str, message: dict[str, Any]) -> str:
    """`text` (an error's) with every secret of `message` in it replaced, as written or as repr() shows it."""
    for secret in _secrets(message, SECRET_PATHS):
        for form in (secret, repr(secret)[1:-1]):
            if form in text:
                text = text.replace(form, REDACTED)
    return text


def _secrets(node: Any, paths: tuple[tuple[str, ...], ...]) -> list[str]:
    """The texts at `paths` inside `node` (long enough to be worth hiding)."""
    found = []
    for path in paths:
        values = [node]
        for head in path:
            if head == "*":
                values = [v for value in values if isinstance(value, list) for v in value]
            else:
                values = [value[head] for value in values if isinstance(value, dict) and head in value]
        found += [v for v in values if isinstance(v, str) and len(v) >= 4]
    return sorted(found, key=len, reverse=True)  # longest first: a key before a piece of it


def _redact_path(node: Any, path: tuple[str, ...]) -> None:
    """Replace the value at `path` inside `node` (copying what it changes); `*` walks a list."""
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, dict):
                    node[i] = dict(item)
                    _redact_path(node[i], rest)
        return
    if not isinstance(node, dict) or head not in node:
        return
    if not rest:
        node[head] = REDACTED
    elif isinstance(node[head], (dict, list)):
        node[head] = dict(node[head]) if isinstance(node[head], dict) else list(node[head])
        _redact_path(node[head], rest)


FILTERS = {
    "json": to_json,
    "tojson": to_json,
    "logfmt": logfmt,
    "csv": csv,
    "iso8601": iso8601,
    "epoch": epoch,
    "domain": domain_of,
    "redact": redact,
}
