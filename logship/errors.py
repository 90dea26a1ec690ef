"""One root error class; library exceptions are translated to these at the boundary."""
from __future__ import annotations


class LogshipError(Exception):
    """Root of every error logship raises on purpose."""


class ConfigError(LogshipError):
    """The configuration is invalid: names the file and the key path."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file, self.key, self.problem = file, key, problem
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + problem)


class FormatError(LogshipError):
    """A format does not compile: names the file and the line."""

    def __init__(self, file: str, line: int | None, problem: str) -> None:
        self.file, self.line, self.problem = file, line, problem
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {problem}")


class MessageError(LogshipError):
    """A delivery body that can never be processed (not JSON, not a result message)."""


class RenderError(LogshipError):
    """A format raised while rendering a record."""

    def __init__(self, format_name: str, problem: str) -> None:
        self.format_name = format_name
        super().__init__(f"format {format_name!r}: {problem}")


class OutputError(LogshipError):
    """An output could not take or keep records (disk full, receiver gone)."""


class RecordRefused(LogshipError):
    """An output will never take this record (its path would leave the base folder)."""


class LimitExceeded(LogshipError):
    """A render or a message went past a configured limit; the text names the limit."""
