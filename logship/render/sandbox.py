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
from typing import Any, Callable

from jinja2 import ChainableUndefined, nodes
from jinja2.utils import missing
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .growth import (BINOP_CHECKS, FILTER_CHECKS, METHOD_CHECKS, check_format_spec, check_length, checked_filter,
                     listed)

DEFAULT_MAX_LINE = 1 << 20   # characters a rendered line (and any value built on the way) may have


# A plain dict has no attributes but dict's own (no __dict__, no slots), so for any other
# name the sandbox's getattr() would fail, catch AttributeError and fall back to obj[name].
_DICT_ATTRIBUTES = frozenset(dir(dict))


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

    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:
        """`x.name`: a plain dict's key read in place when it is there, anything else the checked way."""
        if self.environment.is_async or node.attr in _DICT_ATTRIBUTES:
            super().visit_Getattr(node, frame)  # `x.items` and the like: the sandbox decides
        else:
            self._dict_key(node.node, node.attr, "getattr", frame)

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        """`x['name']`: as `x.name`, for a constant text key (what obj[key] would give the sandbox too)."""
        if self.environment.is_async or not (isinstance(node.arg, nodes.Const) and type(node.arg.value) is str):
            super().visit_Getitem(node, frame)
        else:
            self._dict_key(node.node, node.arg.value, "getitem", frame)

    def _dict_key(self, obj: nodes.Expr, name: str, checked: str, frame: Frame) -> None:
        """A key of a plain dict without a call (12 a record in the shipped formats: a fifth of a render).

        The name is resolved at compile time, so only its presence is checked at render time;
        a missing key is the sandbox's undefined, made in place; a Headers (a dict subclass) or any
        other object takes the sandbox's way.
        """
        held, key = self.temporary_identifier(), repr(name)  # unique in the module, so a nested one cannot clash
        named = isinstance(obj, nodes.Name) and obj.ctx == "load"
        if named:  # `attempt.x`: the name's own variable first, without the walrus and the missing check
            ref = frame.symbols.ref(obj.name)
            self.write(f"({ref}[{key}] if type({ref}) is dict and {key} in {ref} else ")
        self.write(f"({held}[{key}] if type({held} := ")
        self.visit(obj, frame)
        self.write(f") is dict and {key} in {held} else ")
        if name not in _DICT_ATTRIBUTES:  # missing from a plain dict: what the sandbox's getattr gives, in place
            self.write(f"environment.undefined(obj={held}, name={key}) if type({held}) is dict else ")
        self.write(f"environment.{checked}({held}, {key}))")
        if named:
            self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        """`a ~ b` through the environment, so its length is checked before it is built."""
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox without constant folding, with size checks on growing operations."""

    code_generator_class = FoldlessCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    max_line = DEFAULT_MAX_LINE

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`obj.attribute`: a plain dict's key directly (the hot path); everything else the checked way."""
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            return self._plain_key(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """`obj[argument]`: a plain dict's text key directly; jinja2's way (two exceptions when missing) otherwise."""
        if type(obj) is dict and type(argument) is str and argument not in _DICT_ATTRIBUTES:
            return self._plain_key(obj, argument)
        return super().getitem(obj, argument)

    def _plain_key(self, obj: dict[str, Any], name: str) -> Any:
        """A plain dict's key, or undefined when it is missing (no KeyError raised and caught: that is common)."""
        value = obj.get(name, missing)
        return self.undefined(obj=obj, name=name) if value is missing else value

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """`left operator right`, refused when the result would be too big to build."""
        BINOP_CHECKS[operator](left, right, self.max_line)
        return self.binop_table[operator](left, right)

    def concat(self, values: Any) -> str:  # type: ignore[override]
        """`a ~ b ~ …` as text, refused past the line limit.

        jinja2's Template.render joins a whole render with this too (Environment.concat), so
        the syslog header templates get the same limit as a line.
        """
        parts = [str(v) for v in values]
        check_length(sum(map(len, parts)), self.max_line, "`~`")
        return "".join(parts)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """A call from a template; str methods that can grow text are checked first."""
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, (str, bytes)):
            check = METHOD_CHECKS.get(getattr(__obj, "__name__", ""))
            if check is not None:
                args = listed(args, 0)
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
            check_format_spec(value.__self__, [*args, *kwargs.values()], limit)
            return wrapper(*args, **kwargs)
        return checked


def environment(filters: dict[str, Callable[..., Any]], finalize: Callable[[Any], Any]) -> Sandbox:
    """The sandbox: immutable, no autoescape, no folding, growing operations checked."""
    env = Sandbox(autoescape=False, undefined=ChainableUndefined, finalize=finalize,
                  keep_trailing_newline=False, optimized=False)
    for name in FILTER_CHECKS:
        env.filters[name] = checked_filter(name, env.filters[name], env)
    env.filters.update(filters)
    # lipsum(n, …) writes n paragraphs of up to `max` words: a loop nothing outside could bound
    env.globals.pop("lipsum", None)
    return env
