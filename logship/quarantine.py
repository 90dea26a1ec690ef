"""Keeping the raw bytes of messages that cannot be processed, with the reason."""
from __future__ import annotations

import base64
import time

import orjson

from .record import Source, utc_iso_millis
from .sinks.file import FileSink


class Quarantine:
    """A JSON-lines file of rejected deliveries; flushed with the outputs, before the reject."""

    def __init__(self, path: str) -> None:
        self.sink = FileSink("quarantine", path)
        self.path = path

    def keep(self, body: bytes, source: Source, reason: str, content_encoding: str | None = None) -> None:
        """Buffer one rejected delivery: raw body (text when UTF-8, else base64) and why."""
        entry = {"quarantined": utc_iso_millis(time.time()), "reason": reason, "queue": source.queue,
                 "routing_key": source.routing_key, "redelivered": source.redelivered,
                 "content_encoding": content_encoding}
        try:
            entry["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            entry["body_base64"] = base64.b64encode(body).decode()
        self.sink.write(entry, orjson.dumps(entry).decode())
