"""Loading, checking and rendering formats: NAME.j2 files in a sandboxed Jinja2 environment."""
from __future__ import annotations

import functools
import hashlib
import re
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.runtime import Context

from .budget import BUDGET, RenderTimeout
from ..errors import FormatError, LimitExceeded, RenderError
from .filters import CONTROL, FILTERS, one_line
from .sandbox import Sandbox, environment

SUFFIX = ".j2"
# rendered pieces taken at a time: a whole line of the shipped formats is one take
_TAKE = 64
_monotonic = time.monotonic
# `{#- header: a,b,c -#}` as a format's first line: written first in every file it starts
_HEADER = re.compile(r"\A\{#-?\s*header:\s*(.*?)\s*-?#\}")


def _finalize(value: Any) -> Any:
    """How `{{ value }}` prints: null as empty, booleans as JSON does."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


def configure(render_timeout: float, max_line_length: int) -> None:
    """Set the render limits every format, `when` and path expression runs under ([formats])."""
    BUDGET.seconds = render_timeout
    ENV.max_line = max_line_length


ENV: Sandbox = environment(FILTERS, _finalize)
# Formats are compiled without globals of their own, so every template's are ENV's.
_GLOBALS = dict(ENV.globals)
RECORD_NAMES = frozenset({"attempt", "message", "extracted", "record"})  # the keys of every record (render/record.py)


@dataclass(frozen=True)
class Format:
    """One compiled format and where it came from."""

    name: str
    path: str
    template: Template
    digest: str        # first 12 hex digits of the source's SHA-256
    loaded: float      # time.time() when it was compiled
    header: str | None = None  # a first line for new files (CSV column names)
    # no loop and no macro: it yields at most as many pieces as its source has, so they can be
    # joined in one go and measured after; a format with either is taken a few pieces at a time
    straight: bool = False
    # every piece it outputs is `| json` (which escapes) or text without a control: one_line
    # would change nothing, so it is skipped (a sixth of a render of the shipped json format)
    escaped: bool = False
    # every name it reads is one of a record's (attempt, message, extracted, record): the record
    # itself is its context, without a copy merged with the globals it never reads
    own_names: bool = False
    _context: Context = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_context", self._new_context())

    def _new_context(self) -> Context:
        """A render context of this template's; one is reused from record to record."""
        return Context(ENV, {}, self.name, self.template.blocks)

    def render(self, record: dict[str, Any]) -> str:
        """The record as one line (no newline at the end)."""
        # What Template.render does, minus copying the template's globals out of a ChainMap
        # and building a new Context for every record (together half of the dispatch cost).
        # Reusing the context is safe: names a template sets are cleared before each record,
        # and after an error (which may leave an autoescape block's state behind) it is replaced.
        context = self._context
        context.parent = record if self.own_names else {**_GLOBALS, **record}
        if context.vars:
            context.vars.clear()
            context.exported_vars.clear()
        budget, limit = BUDGET, ENV.max_line
        budget.started = _monotonic()  # BUDGET.begin(), inlined: this runs for every record
        try:
            pieces = self.template.root_render_func(context)
            if self.straight:
                text = "".join(pieces)
                if len(text) > limit:
                    raise _too_long(limit)
            else:
                text = _joined(list(islice(pieces, _TAKE)), pieces, limit)
        except (Exception, RenderTimeout) as error:  # a user's template may raise anything
            budget.started = 0.0
            object.__setattr__(self, "_context", self._new_context())
            raise RenderError(self.name, describe(error)) from None
        budget.started = 0.0
        return text if self.escaped else one_line(text)


def _joined(taken: list[str], pieces: Iterator[str], limit: int) -> str:
    """The rendered pieces as one text, refused as soon as they pass `limit` characters."""
    length = sum(map(len, taken))
    if len(taken) == _TAKE:  # a long render (a loop): go on a take at a time
        for more in iter(lambda: list(islice(pieces, _TAKE)), []):
            length += sum(map(len, more))
            if length > limit:
                break
            taken += more
    if length > limit:
        raise _too_long(limit)
    return "".join(taken)


def _too_long(limit: int) -> LimitExceeded:
    """The error of a line past formats.max_line_length."""
    return LimitExceeded(f"the line would pass formats.max_line_length ({limit:,} characters)")


def describe(error: BaseException) -> str:
    """A render failure in a few words: the limit it passed, or the exception's type and text."""
    if isinstance(error, (LimitExceeded, RenderTimeout)):
        return str(error)
    if isinstance(error, RecursionError):
        return "RecursionError: the format recurses too deeply (a macro calling itself?)"
    if isinstance(error, MemoryError):
        return "MemoryError: the render ran out of memory"
    return f"{type(error).__name__}: {error}"[:500]


def compile_format(path: Path, previous: Format | None = None) -> Format:
    """Compile one format file (or keep `previous` if the text is the same); FormatError names file and line."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FormatError(str(path), None, f"cannot read: {error}") from None
    if not source.strip():
        # an empty file is what a reader sees between an in-place save's truncate and its write
        raise FormatError(str(path), None, "the format is empty")
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    if previous is not None and previous.digest == digest and previous.path == str(path):
        return previous  # unchanged: keeps its load time, so the log shows when it really changed
    try:
        tree = ENV.parse(source)
        template = ENV.from_string(tree)
    except TemplateSyntaxError as error:
        raise FormatError(str(path), error.lineno, error.message or "syntax error") from None
    header = _HEADER.match(source)
    straight = not any(True for _ in tree.find_all((nodes.For, nodes.Macro, nodes.CallBlock)))
    return Format(path.stem, str(path), template, digest, time.time(),
                  one_line(header.group(1)) if header else None, straight, straight and _escaped(tree),
                  _reads_only_record_names(tree))


# what a piece of output passes through unless it is a plain {{ … }} in the template's body
_DETOURS = (nodes.FilterBlock, nodes.Block, nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)


def _escaped(tree: nodes.Template) -> bool:
    """Whether every piece the template outputs is text without a control or a `json` filter's result."""
    if any(True for _ in tree.find_all(_DETOURS)):
        return False
    for output in tree.find_all(nodes.Output):
        for piece in output.nodes:
            if isinstance(piece, nodes.TemplateData):
                if CONTROL.search(piece.data):
                    return False
            elif not (isinstance(piece, nodes.Filter) and piece.name in ("json", "tojson")):
                return False
    return True


def _reads_only_record_names(tree: nodes.Template) -> bool:
    """Whether a record alone can be the template's context: it reads no global, and includes nothing."""
    if any(True for _ in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport))):
        return False  # what it would pull in renders with a context made from this one
    loaded, stored = {ref.name for ref in tree.find_all(nodes.NSRef)}, {m.name for m in tree.find_all(nodes.Macro)}
    for name in tree.find_all(nodes.Name):
        (loaded if name.ctx == "load" else stored).add(name.name)
    # a name it sets is looked up in the context only where it is not set yet: missing both ways,
    # unless it is a global's name (or `loop`, `caller`...: not a record's, so the merged way)
    return loaded <= RECORD_NAMES | stored and not stored & _GLOBALS.keys()


def compile_expression(source: str) -> Callable[..., Any]:
    """Compile a route's `when` expression in the same sandbox; calling it is timed like a render."""
    return functools.partial(BUDGET.run, ENV.compile_expression(source, undefined_to_none=False))


def utc_iso(epoch: float) -> str:
    """A UTC time to the second, ISO 8601."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class FormatSet:
    """The formats of one folder, by name, plus the files that failed to compile."""

    def __init__(self, folder: str, formats: dict[str, Format], errors: dict[str, FormatError]) -> None:
        self.folder, self.formats, self.errors = folder, formats, errors

    @classmethod
    def load(cls, folder: str | Path, previous: FormatSet | None = None) -> FormatSet:
        """Compile every NAME.j2; a broken file keeps its previous good version, if any.

        Hidden files are skipped: editors' lock files (`.#x.j2`) and ConfigMap internals.
        A missing folder is an error that keeps every previous format, so a folder being
        replaced never stops them all.
        """
        if not Path(folder).is_dir():
            error = FormatError(str(folder), None, "the formats folder is missing")
            return cls(str(folder), dict(previous.formats) if previous else {}, {"": error})
        formats: dict[str, Format] = {}
        errors: dict[str, FormatError] = {}
        for path in sorted(Path(folder).glob("*" + SUFFIX)):
            if path.name.startswith("."):
                continue
            old = previous.formats.get(path.stem) if previous else None
            try:
                formats[path.stem] = compile_format(path, old)
            except FormatError as error:
                errors[path.stem] = error
                if old is not None:
                    formats[path.stem] = old
        return cls(str(folder), formats, errors)

    def versions(self) -> dict[str, str]:
        """Each live format's content hash and load time, for the log."""
        return {name: f"sha256 {f.digest} loaded {utc_iso(f.loaded)}" for name, f in sorted(self.formats.items())}

    def __contains__(self, name: str) -> bool:
        return name in self.formats

    def __getitem__(self, name: str) -> Format:
        return self.formats[name]
