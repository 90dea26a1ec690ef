"""Loading, checking and rendering formats: NAME.j2 files in a sandboxed Jinja2 environment."""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import FormatError, RenderError
from .filters import FILTERS

SUFFIX = ".j2"
# C0 and C1 controls, DEL and the Unicode line and paragraph separators: any of them could
# split a record or hide part of it on a terminal. Escapes are valid inside JSON strings too.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# `{#- header: a,b,c -#}` as a format's first line: written first in every file it starts
_HEADER = re.compile(r"\A\{#-?\s*header:\s*(.*?)\s*-?#\}")


def _escape(match: re.Match[str]) -> str:
    """The visible escape of one control character."""
    char = match.group()
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


def one_line(text: str) -> str:
    """`text` with every control character escaped, so a record is always one line."""
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text


def _finalize(value: Any) -> Any:
    """How `{{ value }}` prints: null as empty, booleans as JSON does."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


def environment() -> ImmutableSandboxedEnvironment:
    """The sandbox every format and route filter runs in: immutable, no autoescape."""
    env = ImmutableSandboxedEnvironment(autoescape=False, undefined=ChainableUndefined,
                                        finalize=_finalize, keep_trailing_newline=False)
    env.filters.update(FILTERS)
    return env


ENV = environment()


@dataclass(frozen=True)
class Format:
    """One compiled format and where it came from."""

    name: str
    path: str
    template: Template
    digest: str        # first 12 hex digits of the source's SHA-256
    loaded: float      # time.time() when it was compiled
    header: str | None = None  # a first line for new files (CSV column names)

    def render(self, record: dict[str, Any]) -> str:
        """The record as one line (no newline at the end)."""
        try:
            text = self.template.render(record)
        except Exception as error:  # a user's template may raise anything
            raise RenderError(self.name, f"{type(error).__name__}: {error}") from None
        return one_line(text)


def compile_format(path: Path) -> Format:
    """Compile one format file; FormatError names the file and line."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FormatError(str(path), None, f"cannot read: {error}") from None
    try:
        template = ENV.from_string(source)
    except TemplateSyntaxError as error:
        raise FormatError(str(path), error.lineno, error.message or "syntax error") from None
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    header = _HEADER.match(source)
    return Format(path.stem, str(path), template, digest, time.time(),
                  one_line(header.group(1)) if header else None)


def compile_expression(source: str) -> Callable[..., Any]:
    """Compile a route's `when` expression in the same sandbox."""
    return ENV.compile_expression(source, undefined_to_none=False)


class FormatSet:
    """The formats of one folder, by name, plus the files that failed to compile."""

    def __init__(self, folder: str, formats: dict[str, Format], errors: dict[str, FormatError]) -> None:
        self.folder, self.formats, self.errors = folder, formats, errors

    @classmethod
    def load(cls, folder: str | Path, previous: FormatSet | None = None) -> FormatSet:
        """Compile every NAME.j2; a broken file keeps its previous good version, if any."""
        formats: dict[str, Format] = {}
        errors: dict[str, FormatError] = {}
        for path in sorted(Path(folder).glob("*" + SUFFIX)):
            old = previous.formats.get(path.stem) if previous else None
            try:
                formats[path.stem] = compile_format(path)
            except FormatError as error:
                errors[path.stem] = error
                if old is not None:
                    formats[path.stem] = old
        return cls(str(folder), formats, errors)

    def __contains__(self, name: str) -> bool:
        return name in self.formats

    def __getitem__(self, name: str) -> Format:
        return self.formats[name]
