"""Per-record output paths: Jinja2 expressions and strftime codes, kept inside a base folder."""
from __future__ import annotations

import os
import re
import time
from typing import Any, Callable

from ...render.budget import BUDGET, RenderTimeout
from ...errors import RecordRefused
from ...render.formats import CONTROL, describe

# `{{ expression }}` pieces of a path; everything else is literal text with strftime codes
_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)
_STRFTIME = re.compile(r"%[a-zA-Z]")
# Below what Linux allows (NAME_MAX 255, PATH_MAX 4096), so the OS never refuses a path that
# passed here for its size, and a recipient cannot bury a file a hundred folders deep.
MAX_SEGMENT = 200   # bytes in one file or folder name
MAX_LENGTH = 1024   # bytes in the part of the path below the base folder
MAX_DEPTH = 8       # folders (and the file) below the base folder


def is_template(path: str) -> bool:
    """Whether a configured path depends on the record (expressions or strftime codes)."""
    return "{{" in path or "{%" in path or bool(_STRFTIME.search(path))


def split_base(path: str) -> tuple[str, str]:
    """(base folder, templated rest): the base is every segment before the first templated one."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if is_template(part):
            return os.path.normpath("/".join(parts[:i]) or "/"), "/".join(parts[i:])
    raise ValueError(f"{path!r} is not a template")


class PathTemplate:
    """A templated path: `render(record)` gives a file path inside `base`, or raises RecordRefused."""

    def __init__(self, path: str) -> None:
        if "{%" in path:
            raise ValueError("path: only {{ expressions }} may be used, not {% statements %}")
        self.source = path
        self.base, rest = split_base(path)
        self._pieces = self._compile(rest)

    @staticmethod
    def _compile(rest: str) -> list[str | Callable[..., Any]]:
        """Literal strings and compiled expressions, in order."""
        from jinja2 import TemplateSyntaxError

        from ...render.formats import ENV
        pieces: list[str | Callable[..., Any]] = []
        position = 0
        for match in _EXPRESSION.finditer(rest):
            pieces.append(rest[position:match.start()])
            try:
                pieces.append(ENV.compile_expression(match.group(1), undefined_to_none=True))
            except TemplateSyntaxError as error:
                raise ValueError(f"path: invalid expression {match.group()!r}: {error.message}") from None
            position = match.end()
        pieces.append(rest[position:])
        return [p for p in pieces if p != ""]

    def render(self, record: dict[str, Any]) -> str:
        """The file path for `record`; values are checked, strftime applies to literal text only."""
        when = time.gmtime(float(record["record"].get("received_epoch") or 0))
        text = []
        for piece in self._pieces:
            if isinstance(piece, str):
                text.append(time.strftime(piece, when) if "%" in piece else piece)
            else:
                text.append(self._value(piece, record))
        return os.path.join(self.base, check_relative("".join(text)))

    def _value(self, expression: Callable[..., Any], record: dict[str, Any]) -> str:
        """One expression's value as text; a failing expression refuses the record."""
        try:
            value = BUDGET.run(expression, **record)
        except (Exception, RenderTimeout) as error:  # a user's expression may raise anything
            raise RecordRefused(f"path {self.source!r}: expression failed: {describe(error)}") from None
        text = "" if value is None else str(value)
        if not text:  # a missing field would name a hidden file (".log") or an empty segment
            raise RecordRefused(f"path {self.source!r} refused: an expression is empty")
        if "/" in text:  # a value names part of one file or folder, never folders of its own
            raise RecordRefused(f"path {self.source!r} refused: a value holds '/' ({text[:80]!r})")
        return text


def check_relative(path: str) -> str:
    """`path` when it is a safe relative path; RecordRefused naming the problem otherwise."""
    if path.startswith("/"):
        raise RecordRefused(f"path {path!r} refused: absolute")
    match = CONTROL.search(path)  # the characters a record's line escapes: never in a file name
    if match:
        raise RecordRefused(f"path {path!r} refused: control character U+{ord(match.group()):04X}")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_LENGTH:
        raise RecordRefused(f"path {path[:80]!r}... refused: longer than {MAX_LENGTH} bytes")
    segments = path.split("/")
    if len(segments) > MAX_DEPTH:
        raise RecordRefused(f"path {path[:80]!r}... refused: more than {MAX_DEPTH} levels deep")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise RecordRefused(f"path {path[:200]!r} refused: segment {segment!r}")
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT:
            raise RecordRefused(f"path {path[:80]!r}... refused: a segment is longer than {MAX_SEGMENT} bytes")
    return path
