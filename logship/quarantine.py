"""Keeping what could not be written, with the reason: whole deliveries, or the routes that failed."""
from __future__ import annotations

import base64
import logging
import os
import time
from typing import Any

import orjson

from .render.record import Source, utc_iso_millis
from .sinks.file.sink import FileSink
from .sinks.file.logfile import Ownership, make_folders

log = logging.getLogger("logship")

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

    def reopen(self) -> None:
        """Let go of the file (SIGUSR1, SIGHUP) and start the one at `path` now, empty and 0600, if it is gone.

        An operator who moved the file away to replay it expects the new one at once, and a
        file that logrotate created with a wider mode is narrowed back: it may hold raw bodies.
        """
        self.sink.reopen()
        try:
            make_folders(os.path.dirname(self.path), Ownership(FILE_MODE, DIR_MODE))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            try:
                if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
                    os.fchmod(fd, FILE_MODE)
            finally:
                os.close(fd)
        except OSError as error:  # the next flush that has something to keep reports it as an output failure
            log.warning("cannot start the quarantine file", extra={"path": self.path, "error": error.strerror})
