"""The daemon's own log: JSON lines on stderr (python-json-logger), UTC times, journal priorities."""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import IO

from pythonjsonlogger.json import JsonFormatter

#: syslog severities of the logging levels (journald reads them from a "<N>" line prefix)
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class LogFormatter(JsonFormatter):
    """One JSON object a line; `time` in ISO 8601 UTC with milliseconds; a `<N>` prefix for journald."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s",
                         rename_fields={"asctime": "time", "levelname": "level"}, json_ensure_ascii=False)
        self.journal = journal

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """2026-12-01T06:10:51.410Z: sortable, unambiguous across zones and DST changes."""
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line, led by the syslog priority when journald reads it."""
        line = super().format(record)
        if not self.journal:
            return line
        return f"<{priority(record.levelno)}>{line}"


def priority(level: int) -> int:
    """The syslog severity of a logging level (a custom level takes the next standard one up)."""
    for threshold in sorted(PRIORITIES):
        if level <= threshold:
            return PRIORITIES[threshold]
    return PRIORITIES[logging.CRITICAL]


def is_journal(stream: IO[str], environ: dict[str, str] | None = None) -> bool:
    """Whether `stream` is systemd's journal stream: JOURNAL_STREAM names its device and inode."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):  # not set, malformed, or no file descriptor
        return False


def setup(level: str = "info") -> logging.Logger:
    """Send the `logship` logger to stderr as JSON lines; quiet pika's own chatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogFormatter(journal=is_journal(sys.stderr)))
    logger = logging.getLogger("logship")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    pika_logger = logging.getLogger("pika")
    pika_logger.handlers[:] = [handler]
    pika_logger.setLevel(logging.CRITICAL)  # its connection errors reach us as exceptions
    pika_logger.propagate = False
    return logger
