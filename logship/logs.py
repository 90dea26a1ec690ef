"""The daemon's own log: JSON lines on stderr (python-json-logger)."""
from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def setup(level: str = "info") -> logging.Logger:
    """Send the `logship` logger to stderr as JSON lines; quiet pika's own chatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                       rename_fields={"asctime": "time", "levelname": "level"},
                                       json_ensure_ascii=False))
    logger = logging.getLogger("logship")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    pika_logger = logging.getLogger("pika")
    pika_logger.handlers[:] = [handler]
    pika_logger.setLevel(logging.CRITICAL)  # its connection errors reach us as exceptions
    pika_logger.propagate = False
    return logger
