"""What `logship render` prints: the records of whole messages through one format, no output touched."""
from __future__ import annotations

import sys
from typing import Iterable

from ..config.load import Config
from ..errors import MessageError
from .formats import FormatSet
from .record import Source, decode, records


def preview(config: Config, formats: FormatSet, name: str, source: Source,
            bodies: Iterable[tuple[str, bytes]], received: float) -> int:
    """Print each body's records rendered by the format `name`; how many bodies were no result message."""
    fmt, bad = formats[name], 0
    secrets = config.formats.exposes_secrets(name)
    for where, body in bodies:
        try:
            message = decode(body, max_size=config.messages.bytes, max_attempts=config.messages.max_attempts)
        except MessageError as error:
            print(f"{where}: {error}", file=sys.stderr)
            bad += 1
            continue
        for record in records(message, source, received):
            print(fmt.render({**record, "message": message} if secrets else record))
    return bad
