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

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the invisible and
# bidirectional formatting marks (zero-width space to RLM, LRE to RLO, LRI to PDI): any of them
# could split a record, hide part of it or reorder it on a terminal (Trojan Source).
# Escapes are valid inside JSON strings too.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# What CONTROL matches past ASCII, as the two bytes after an E2 lead byte in UTF-8 (U+200B-F,
# U+2028-E, U+2066-9); C1 controls are C2 80-9F.
_MARKS = frozenset([*(bytes([0x80, b]) for b in range(0x8b, 0x90)), *(bytes([0x80, b]) for b in range(0xa8, 0xaf)),
                    *(bytes([0x81, b]) for b in range(0xa6, 0xaa))])
_LOOKS = 16  # lead bytes looked at before the full check is cheaper
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


def _escape(match: re.Match[str]) -> str:
    """The visible escape of one control character."""
    char = match.group()
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


def one_line(text: str) -> str:
    """`text` with every control character escaped, so a record is always one line."""
    # isprintable() is false for every control and separator character, and much cheaper
    # than the search for the common line that has none (a non-ASCII space costs a search).
    return text if text.isprintable() else CONTROL.sub(_escape, text)


def to_json(value: Any) -> str:
    """Any value as JSON (a missing field is null) on one line: every character CONTROL matches escaped."""
    data = orjson.dumps(value, default=_default)  # _default turns Undefined into null
    # orjson escapes C0 controls itself; the rest is looked for in the bytes, which is much
    # cheaper than isprintable() on the text, and lets a format made of `| json` skip one_line
    return data.decode() if _escape_free(data) else one_line(data.decode())


def _escape_free(data: bytes) -> bool:
    """Whether orjson's output holds nothing CONTROL matches (False when unsure: one_line decides)."""
    if b"\x7f" in data:
        return False
    if data.isascii():
        return True
    looks, at = 0, data.find(b"\xc2")  # C2 and E2 are lead bytes only: never inside another character
    while at >= 0:
        if data[at + 1] < 0xa0 or looks == _LOOKS:
            return False
        looks, at = looks + 1, data.find(b"\xc2", at + 2)
    at = data.find(b"\xe2")
    while at >= 0:
        if data[at + 1:at + 3] in _MARKS or looks == _LOOKS:
            return False
        looks, at = looks + 1, data.find(b"\xe2", at + 3)
    return True


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
