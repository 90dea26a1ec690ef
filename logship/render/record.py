"""Decoding a delivery into the records of its new attempts, with derived fields."""
from __future__ import annotations

import functools
import time
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import MessageError
from .filters import domain, redact

Record = dict[str, Any]
"""What a format sees: `attempt`, `message`, `extracted` and `record` (derived fields)."""

#: states where MailerQ itself failed, not the receiving server
LOCAL_STATES = frozenset({"process", "storage", "bind", "responsive"})


MAX_SIZE = 64 << 20          # the default of messages.max_size
MAX_ATTEMPTS = 10_000        # the default of messages.max_attempts
GZIP, ZLIB, RAW_DEFLATE = 16 + zlib.MAX_WBITS, zlib.MAX_WBITS, -zlib.MAX_WBITS


@dataclass(frozen=True, slots=True)
class Source:
    """Where a delivery came from and how to read its `results` array."""

    queue: str
    scope: str = "all"          # all | latest | message
    final: bool = True          # the queue carries final results
    routing_key: str = ""
    redelivered: bool = False
    delivery_count: int | None = None  # quorum queues: deliveries before this one (x-delivery-count)


def decode(body: bytes, content_encoding: str | None = None, max_size: int = MAX_SIZE,
           max_attempts: int = MAX_ATTEMPTS) -> dict[str, Any]:
    """Parse a result message; raise MessageError for anything that is not one, or is too big."""
    if len(body) > max_size:
        raise MessageError(f"the body is {len(body):,} bytes, over messages.max_size ({max_size:,})")
    if content_encoding:
        body = _decompressed(body, content_encoding, max_size)
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MessageError(f"not JSON: {error}") from None
    if not isinstance(message, dict):
        raise MessageError(f"not a result message: the body is a JSON {type(message).__name__}, not an object")
    results = message.get("results")
    if not isinstance(results, list) or not results:
        raise MessageError("not a result message: `results` is not a non-empty array")
    if len(results) > max_attempts:
        raise MessageError(f"{len(results):,} attempts, over messages.max_attempts ({max_attempts:,})")
    for i, attempt in enumerate(results):
        if not isinstance(attempt, dict):
            raise MessageError(f"not a result message: results[{i}] is not an object")
    return message


def _decompressed(body: bytes, content_encoding: str, max_size: int) -> bytes:
    """The body under its AMQP content-encoding: gzip, deflate or identity; any other is refused."""
    encoding = content_encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return inflate(body, GZIP, max_size, encoding)
    if encoding == "deflate":  # HTTP's deflate is zlib-wrapped; some senders send it raw
        return inflate(body, ZLIB if body[:1] == b"\x78" else RAW_DEFLATE, max_size, encoding)
    if encoding == "identity":
        return body
    raise MessageError(f"content-encoding {content_encoding!r} is not supported (gzip, deflate or none)")


def inflate(body: bytes, wbits: int, max_size: int, encoding: str) -> bytes:
    """Decompress `body`, never past `max_size` bytes (a bomb stops there); gzip members in a row are joined."""
    out: list[bytes] = []
    room, data = max_size, body
    try:
        while data:
            stream = zlib.decompressobj(wbits)
            piece = stream.decompress(data, room + 1)
            if len(piece) > room or stream.unconsumed_tail:
                raise MessageError(f"content-encoding {encoding}: the body inflates past messages.max_size "
                                   f"({max_size:,} bytes)")
            if not stream.eof:
                raise MessageError(f"content-encoding {encoding}, but the body is cut short")
            out.append(piece)
            room -= len(piece)
            data = stream.unused_data if wbits == GZIP else b""
    except zlib.error as error:
        raise MessageError(f"content-encoding {encoding}, but the body does not decompress: {error}") from None
    return b"".join(out)


def records(message: dict[str, Any], source: Source, received: float,
            noted: list[tuple[Any, ...]] | None = None) -> list[Record]:
    """One record per attempt that is new on this queue (docs/configuration.md, "Queues and scopes").

    `noted` (the deliverability counters', stats.Attempts.pending) gets each attempt's outcome,
    recipient domain, from, status and time: taken here, where they are at hand, they cost
    the hot path a fraction of reading them back from the records.
    """
    results = message["results"]
    count = len(results)
    extracted = _extracted(message)
    # secrets are replaced unless a format opts in (the pipeline hands those the message as is);
    # the keys are the first steps of filters.SECRET_PATHS (a test holds the two together)
    hidden = "dkim" in message or "smarthost" in message or "mime" in message or "data" in message
    visible = redact(message) if hidden else message  # four lookups rather than a call: per message
    stamp = utc_iso_millis(received)
    recipient_domain, envelope_domain = domain(message.get("recipient")), domain(message.get("envelope"))
    headers = extracted["headers"]  # as sent, or any case (Headers): the dict's own lookup first, in C
    message_id = dict.get(headers, "message-id") or headers.get("message-id", "")
    out = []
    for index in range(0 if source.scope == "all" else count - 1, count):
        attempt = results[index]
        final = source.final and index == count - 1
        kind = outcome(attempt, final)
        if noted is not None:
            noted.append((kind, recipient_domain, attempt.get("from"), attempt.get("status"), attempt.get("time")))
        derived = {"attempt_number": index + 1, "attempts": count, "final": final,
                   "outcome": kind, "queue": source.queue,
                   "routing_key": source.routing_key, "redelivered": source.redelivered,
                   "delivery_count": source.delivery_count,
                   "received": stamp, "received_epoch": received, "recipient_domain": recipient_domain,
                   "envelope_domain": envelope_domain, "message_id": message_id}
        out.append({"attempt": attempt, "message": visible, "extracted": extracted, "record": derived})
    return out


def outcome(attempt: dict[str, Any], final: bool) -> str:
    """delivered, deferred, bounced, expired or failed; the table is in docs/formats.md, "Outcome"."""
    state, result = attempt.get("state"), attempt.get("result")
    if result == "accepted":
        return "delivered"
    if state == "process" and result == "timeout":
        return "expired"
    if isinstance(state, str) and state in LOCAL_STATES:  # any JSON value may come: a list is unhashable
        return "failed"
    fatal = attempt.get("fatal")
    if fatal is True or (fatal is None and _reply_class(attempt) == "5"):
        return "bounced"
    return "failed" if final else "deferred"


def _reply_class(attempt: dict[str, Any]) -> str:
    """The first digit of the SMTP code, or of the enhanced status when there is no code."""
    code = attempt.get("code")
    if isinstance(code, int):
        return str(code)[:1]
    if isinstance(code, str) and code[:1].isdigit():
        return code[:1]
    status = attempt.get("status")
    return status[:1] if isinstance(status, str) else ""


class Headers(dict):
    """Message headers as sent, whose lookups ignore case (`extracted.headers['Message-ID']`)."""

    def __missing__(self, name: Any) -> Any:
        # only a lookup that misses pays for the case-insensitive scan
        if isinstance(name, str):
            lowered = name.lower()
            for key, value in self.items():
                if isinstance(key, str) and key.lower() == lowered:
                    return value
        raise KeyError(name)

    def get(self, name: Any, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __contains__(self, name: object) -> bool:
        return self.get(name, _ABSENT) is not _ABSENT


_ABSENT = object()


def _extracted(message: dict[str, Any]) -> dict[str, Any]:
    """`extracted` with case-insensitive headers (set in place: each message is decoded afresh)."""
    extracted = message.get("extracted")
    if not isinstance(extracted, dict):
        return {"headers": Headers()}
    headers = extracted.get("headers")
    extracted["headers"] = Headers(headers if isinstance(headers, dict) else {})
    return extracted


def utc_iso_millis(epoch: float) -> str:
    """UTC ISO 8601 with milliseconds and a Z."""
    return _iso_millis(int(epoch * 1000))


# Cached, as a busy queue delivers dozens of messages in the same millisecond.
@functools.lru_cache(maxsize=2)
def _iso_millis(millis: int) -> str:
    """UTC ISO 8601 of a time in whole milliseconds."""
    seconds, millis = divmod(millis, 1000)
    return f"{_iso_seconds(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4)
def _iso_seconds(seconds: int) -> str:
    """UTC ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
