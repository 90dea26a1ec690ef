"""Keeping what could not be written, with the reason: whole deliveries, or the routes that failed."""
from __future__ import annotations

import base64
import time
from typing import Any

import orjson

from .render.record import Source, utc_iso_millis
from .sinks.file.sink import FileSink

# Only logship reads it: it may hold whole bodies (secrets too, for a body that does not
# decode or when a format opted in to see them), so it is no log shipper's to read.
FILE_MODE, DIR_MODE = 0o600, 0o700


class Quarantine:
    """A JSON-lines file of kept deliveries; flushed with the outputs, before the ack or reject."""

    def __init__(self, path: str) -> None:
        self.sink = FileSink("quarantine", path, mode=FILE_MODE, dir_mode=DIR_MODE)
        self.path = path

    def keep(self, body: bytes, source: Source, reason: str, content_encoding: str | None = None,
             routes: list[dict[str, Any]] | None = None) -> None:
        """Buffer one entry: the body (text when UTF-8, else base64), why, and the failed routes if only some failed."""
        entry: dict[str, Any] = {
            "quarantined": utc_iso_millis(time.time()), "reason": reason, "queue": source.queue,
            "routing_key": source.routing_key, "redelivered": source.redelivered,
            "content_encoding": content_encoding}
        if routes is not None:
            entry["routes"] = routes  # a replay renders just these (format, output, attempt)
        try:
            entry["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            entry["body_base64"] = base64.b64encode(body).decode()
        self.sink.write(entry, orjson.dumps(entry).decode())
