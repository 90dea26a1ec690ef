"""What an operation in a format would build, measured before it runs: refused past the line limit.

One `*`, `**`, `%`, `format` or `center` can build gigabytes in a single C call that no timer
can interrupt, so the sandbox asks here first. Each check is cheap and errs on the generous
side; what it cannot size (an unexpected argument) it lets through for the call to judge.
"""
from __future__ import annotations

import functools
import re
import string
from typing import Any, Callable

from ..errors import LimitExceeded

MAX_INT_BITS = 1 << 16       # 65,536 bits (~20,000 digits): far past any count, well short of a stall
_SIZED = (str, bytes, list, tuple)
# a printf conversion: %[(key)][flags][width][.precision][length]type
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def check_length(length: int, limit: int, what: str) -> None:
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
        check_length(len(left) * max(_int(right), 0), limit, "`*`")
    elif _int(left) and _int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise LimitExceeded(f"`*` would make a number of over {MAX_INT_BITS:,} bits")


def _check_power(left: Any, right: Any, limit: int) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 \
            and right * max(abs(left).bit_length() - 1, 1) > MAX_INT_BITS and abs(left) > 1:
        raise LimitExceeded(f"`**` would make a number of over {MAX_INT_BITS:,} bits")


def _check_modulo(left: Any, right: Any, limit: int) -> None:
    if isinstance(left, str):
        widest = _printf_width(left, right if isinstance(right, tuple) else (right,))
        check_length(widest, limit, "a `%` width or precision")


def _check_add(left: Any, right: Any, limit: int) -> None:
    if isinstance(left, _SIZED) and isinstance(right, _SIZED):
        check_length(len(left) + len(right), limit, "`+`")


BINOP_CHECKS: dict[str, Callable[[Any, Any, int], None]] = {
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


def check_format_spec(template: str, args: list[Any], limit: int) -> None:
    """A str.format template's widths and precisions (nested `{}` ones taken from the arguments)."""
    for _text, field, spec, _conversion in string.Formatter().parse(template):
        if field is None or not spec:
            continue
        if "{" in spec:
            check_length(max([_int(a) for a in args] or [0]), limit, "a nested `{}` width")
            check_format_spec(spec, args, limit)
        for number in re.findall(r"\d+", spec):
            check_length(int(number), limit, "a `format` width or precision")


def _width(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    """center, ljust, rjust, zfill: the result is as long as the width asked for."""
    check_length(max(len(owner), _int(args[0] if args else kwargs.get("width"))), limit, "a padding width")


def _expandtabs(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    tabsize = _int(args[0] if args else kwargs.get("tabsize", 8))
    check_length(len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * tabsize, limit,
                  "expandtabs")


def _joined_length(total: int, items: int, separator: int) -> int:
    """How long a join is: the items' `total` length and a separator between each two of them."""
    return total + separator * max(items - 1, 0)


def _replaced_length(text: Any, old: Any, new: Any, count: int) -> int:
    """How long `text.replace(old, new, count)` is (count < 0: every occurrence)."""
    times = text.count(old) if old else len(text) + 1
    if count >= 0:
        times = min(times, count)
    return len(text) + times * max(len(new) - len(old), 0)


def _join(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    items = args[0] if args else ()
    if isinstance(items, (list, tuple)):
        total = sum(len(i) for i in items if isinstance(i, _SIZED))
        check_length(_joined_length(total, len(items), len(owner)), limit, "join")


def _replace(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    if len(args) >= 2 and isinstance(args[0], type(owner)) and isinstance(args[1], type(owner)):
        count = _int(args[2]) if len(args) > 2 and _int(args[2]) >= 0 else -1
        check_length(_replaced_length(owner, args[0], args[1], count), limit, "replace")


def _translate(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> None:
    table = args[0] if args else None
    if isinstance(table, dict):
        longest = max([len(v) for v in table.values() if isinstance(v, str)] or [1])
        check_length(len(owner) * longest, limit, "translate")


METHOD_CHECKS: dict[str, Callable[[Any, tuple[Any, ...], dict[str, Any], int], None]] = {
    "center": _width, "ljust": _width, "rjust": _width, "zfill": _width,
    "expandtabs": _expandtabs, "join": _join, "replace": _replace, "translate": _translate}


def listed(args: tuple[Any, ...], index: int) -> tuple[Any, ...]:
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
    return _joined_length(sum(_text_length(i) for i in items), len(items), len(str(d)))


def _filter_replace(eval_ctx: Any, value: Any, old: Any = "", new: Any = "", count: Any = None) -> int:
    return _replaced_length(str(value), str(old), str(new), _int(count) if _int(count) > 0 else -1)


def _filter_format(value: Any, *args: Any, **kwargs: Any) -> int:
    return _printf_width(str(value), args or tuple(kwargs.values()))


FILTER_CHECKS: dict[str, Callable[..., int]] = {
    "center": _filter_center, "indent": _filter_indent, "wordwrap": _filter_wordwrap,
    "join": _filter_join, "replace": _filter_replace, "format": _filter_format}


def checked_filter(name: str, func: Callable[..., Any], env: Any) -> Callable[..., Any]:
    """`func` (a built-in filter) refusing, before it runs, a result longer than a line may be."""
    estimate = FILTER_CHECKS[name]

    @functools.wraps(func)  # keeps jinja2's pass_eval_context marker
    def checked(*args: Any, **kwargs: Any) -> Any:
        if name == "join":  # join(eval_ctx, items, …): measure the items, then join the same ones
            args = listed(args, 1)
        try:
            length = estimate(*args, **kwargs)
        except TypeError:
            length = 0  # unexpected arguments: the filter itself will say what is wrong
        check_length(length, env.max_line, f"the `{name}` filter")
        return func(*args, **kwargs)
    return checked
