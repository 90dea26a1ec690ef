"""The sandbox every format, `when` and path expression runs in: no user code at compile time, no giant values.

Jinja2's immutable sandbox stops escapes and mutation, but not exhaustion: it folds constant
expressions while compiling (so `{{ 'a' * 10**9 }}` ran in `check`), and one `*`, `**`, `%`,
`~`, `format` or `center` can build gigabytes in a single C call that no timer can interrupt.
Here folding is off, and every operation that can grow a value is checked *before* it runs
against the line limit (`formats.max_line_length`): a value longer than a line may be is never
built. Loops that merely take long are the time budget's business (budget.py).
"""
from __future__ import annotations

import functools
import re
import string
from typing import Any, Callable

from jinja2 import ChainableUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import LimitExceeded

DEFAULT_MAX_LINE = 1 << 20   # characters a rendered line (and any value built on the way) may have
MAX_INT_BITS = 1 << 16       # 65,536 bits (~20,000 digits): far past any count, well short of a stall
_SIZED = (str, bytes, list, tuple)
# a printf conversion: %[(key)][flags][width][.precision][length]type
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


class FoldlessCodeGenerator(CodeGenerator):
    """Jinja2's code generator, minus the compile-time evaluation of expressions."""

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        """Only literal text is output as a constant; every expression runs at render time."""
        if not isinstance(node, (nodes.TemplateData, nodes.Const)):
            raise nodes.Impossible()
        return super()._output_child_to_const(node, frame, finalize)

    def visit_EvalContextModifier(self, node: nodes.EvalContextModifier, frame: Frame) -> None:
        """`{% autoescape x %}` without evaluating `x` here (jinja2 folds it when it can)."""
        for keyword in node.options:
            self.writeline(f"context.eval_ctx.{keyword.key} = ")
            self.visit(keyword.value, frame)
            if isinstance(keyword.value, nodes.Const):
                setattr(frame.eval_ctx, keyword.key, keyword.value.value)
            else:
                frame.eval_ctx.volatile = True

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        """`a ~ b` through the environment, so its length is checked before it is built."""
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


# A plain dict has no attributes but dict's own (no __dict__, no slots), so for any other
# name the sandbox's getattr() would fail, catch AttributeError and fall back to obj[name].
_DICT_ATTRIBUTES = frozenset(dir(dict))


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox without constant folding, with size checks on growing operations."""

    code_generator_class = FoldlessCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    max_line = DEFAULT_MAX_LINE

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`obj.attribute`: a plain dict's key directly (the hot path); everything else the checked way."""
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """`left operator right`, refused when the result would be too big to build."""
        _BINOP_CHECKS[operator](left, right, self.max_line)
        return self.binop_table[operator](left, right)

    def concat(self, values: Any) -> str:  # type: ignore[override]
        """`a ~ b ~ …` as text, refused past the line limit.

        jinja2's Template.render joins a whole render with this too (Environment.concat), so
        the syslog header templates get the same limit as a line.
        """
        parts = [str(v) for v in values]
        _check_length(sum(map(len, parts)), self.max_line, "`~`")
        return "".join(parts)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """A call from a template; str methods that can grow text are checked first."""
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, (str, bytes)):
            check = _METHOD_CHECKS.get(getattr(__obj, "__name__", ""))
            if check is not None:
                args = _listed(args, 0)
                check(owner, args, kwargs, __self.max_line)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`'…'.format(…)` and `format_map`, with their field widths checked first."""
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        limit = self.max_line

        @functools.wraps(wrapper)
        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format_spec(value.__self__, [*args, *kwargs.values()], limit)
            return wrapper(*args, **kwargs)
        return checked


def _check_length(length: int, limit: int, what: str) -> None:
    """Raise LimitExceeded when `length` passes `limit`."""
    if length > limit:
        raise LimitExceeded(f"{what} would make {length:,} characters, over formats.max_line_length ({limit:,})")


def _int(value: Any) -> int:
    """A count argument as an int (0 when it is not one: the call itself will complain)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _check_multiply(left: Any, right: Any, limit: int) -> None:
    if isinstance(left, int) and isinstance(right, _SIZED):
        left, right = right, left
    if isinstance(left, _SIZED) and isinstance(right, int):
        _check_length(len(left) * max(_int(right), 0), limit, "`*`")
    elif _int(left) and _int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise LimitExceeded(f"`*` would make a number of over {MAX_INT_BITS:,} bits")


def _check_power(left: Any, right: Any, limit: int) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 \
            and right * max(abs(left).bit_length() - 1, 1) > MAX_INT_BITS and abs(left) > 1:
        raise LimitExceeded(f"`**` would make a number of over {MAX_INT_BITS:,} bits")


def _check_modulo(left: Any, right: Any, limit: int) -> None:
    if isinstance(left, str):
        widest = _printf_width(left, right if isinstance(right, tuple) else (right,))
        _check_length(widest, limit, "a `%` width or precision")


def _check_add(left: Any, right: Any, limit: int) -> None:
    if isinstance(left, _SIZED) and isinstance(right, _SIZED):
        _check_length(len(left) + len(right), limit, "`+`")


_BINOP_CHECKS: dict[str, Callable[[Any, Any, int], None]] = {
    "*": _check_multiply, "**": _check_power, "%": _check_modulo, "+": _check_add}


def _printf_width(template: str, args: tuple[Any, ...]) -> int:
    """The widest width or precision of a printf template (a `*` one taken from the arguments)."""
    widest = 0
    for match in _PRINTF.finditer(template):
        for number in match.groups():
            if number == "*":
                widest = max([widest, *(_int(a) for a in args)])
            elif number:
                widest = max(widest, int(number))
    return widest


def _check_format_spec(template: str, args: list[Any], limit: int) -> None:
    """A str.format template's widths and precisions (nested `{}` ones taken from the arguments)."""
    for _text, field, spec, _conversion in string.Formatter().parse(template):
        if field is None or not spec:
            continue
        if "{" in spec:
            _check_length(max([_int(a) for a in args] or [0]), limit, "a nested `{}` width")
            _check_format_spec(spec, args, limit)
        for number in re.findall(r"\d+", spec):
            _check_length(int(number), limit, "a `format` width or precision")


def _width(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    """center, ljust, rjust, zfill: the result is as long as the width asked for."""
    _check_length(max(len(owner), _int(args[0] if args else kwargs.get("width"))), limit, "a padding width")


def _expandtabs(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    tabsize = _int(args[0] if args else kwargs.get("tabsize", 8))
    _check_length(len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * tabsize, limit,
                  "expandtabs")


def _join(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    items = args[0] if args else ()
    if isinstance(items, (list, tuple)):
        length = sum(len(i) for i in items if isinstance(i, _SIZED)) + len(owner) * max(len(items) - 1, 0)
        _check_length(length, limit, "join")


def _replace(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    if len(args) >= 2 and isinstance(args[0], type(owner)) and isinstance(args[1], type(owner)):
        old, new = args[0], args[1]
        count = owner.count(old) if old else len(owner) + 1
        if len(args) > 2 and _int(args[2]) >= 0:
            count = min(count, _int(args[2]))
        _check_length(len(owner) + count * max(len(new) - len(old), 0), limit, "replace")


def _translate(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    table = args[0] if args else None
    if isinstance(table, dict):
        longest = max([len(v) for v in table.values() if isinstance(v, str)] or [1])
        _check_length(len(owner) * longest, limit, "translate")


_METHOD_CHECKS: dict[str, Callable[[Any, tuple[Any, ...], dict[str, Any], int], None]] = {
    "center": _width, "ljust": _width, "rjust": _width, "zfill": _width,
    "expandtabs": _expandtabs, "join": _join, "replace": _replace, "translate": _translate}


def _listed(args: tuple[Any, ...], index: int) -> tuple[Any, ...]:
    """`args` with the one at `index` made a list if it is a one-pass iterable (a generator, a range)."""
    if len(args) <= index or isinstance(args[index], (str, bytes, list, tuple, dict)):
        return args
    try:
        return (*args[:index], list(args[index]), *args[index + 1:])
    except TypeError:
        return args  # not iterable: the call itself will say so


def _text_length(value: Any) -> int:
    """How long `value` is as text, without building the text of a big list twice."""
    return len(value) if isinstance(value, str) else len(str(value))


def _filter_center(value: Any, width: Any = 80, *_: Any, **__: Any) -> int:
    return max(_text_length(value), _int(width))


def _filter_indent(value: Any, width: Any = 4, *_: Any, **__: Any) -> int:
    step = len(width) if isinstance(width, str) else _int(width)
    text = str(value)
    return len(text) + (text.count("\n") + 1) * step


def _filter_wordwrap(value: Any, width: Any = 79, break_long_words: Any = True,
                     wrapstring: Any = None, *_: Any, **__: Any) -> int:
    text, wrap = str(value), wrapstring if isinstance(wrapstring, str) else "\n"
    return len(text) * (1 + len(wrap))  # at worst a break after every character


def _filter_join(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> int:
    items = value if isinstance(value, (list, tuple)) else ()
    return sum(_text_length(i) for i in items) + len(str(d)) * max(len(items) - 1, 0)


def _filter_replace(eval_ctx: Any, value: Any, old: Any = "", new: Any = "", count: Any = None) -> int:
    text, old, new = str(value), str(old), str(new)
    times = text.count(old) if old else len(text) + 1
    if _int(count) > 0:
        times = min(times, _int(count))
    return len(text) + times * max(len(new) - len(old), 0)


def _filter_format(value: Any, *args: Any, **kwargs: Any) -> int:
    return _printf_width(str(value), args or tuple(kwargs.values()))


_FILTER_CHECKS: dict[str, Callable[..., int]] = {
    "center": _filter_center, "indent": _filter_indent, "wordwrap": _filter_wordwrap,
    "join": _filter_join, "replace": _filter_replace, "format": _filter_format}


def checked_filter(name: str, func: Callable[..., Any], env: Sandbox) -> Callable[..., Any]:
    """`func` (a built-in filter) refusing, before it runs, a result longer than a line may be."""
    estimate = _FILTER_CHECKS[name]

    @functools.wraps(func)  # keeps jinja2's pass_eval_context marker
    def checked(*args: Any, **kwargs: Any) -> Any:
        if name == "join":  # join(eval_ctx, items, …): measure the items, then join the same ones
            args = _listed(args, 1)
        try:
            length = estimate(*args, **kwargs)
        except TypeError:
            length = 0  # unexpected arguments: the filter itself will say what is wrong
        _check_length(length, env.max_line, f"the `{name}` filter")
        return func(*args, **kwargs)
    return checked


def environment(filters: dict[str, Callable[..., Any]], finalize: Callable[[Any], Any]) -> Sandbox:
    """The sandbox: immutable, no autoescape, no folding, growing operations checked."""
    env = Sandbox(autoescape=False, undefined=ChainableUndefined, finalize=finalize,
                  keep_trailing_newline=False, optimized=False)
    for name in _FILTER_CHECKS:
        env.filters[name] = checked_filter(name, env.filters[name], env)
    env.filters.update(filters)
    # lipsum(n, …) writes n paragraphs of up to `max` words: a loop nothing outside could bound
    env.globals.pop("lipsum", None)
    return env
