"""The immutable Jinja2 sandbox, bounded in memory and time.

Jinja's sandbox stops templates reaching Python internals and caps ``range``; it does
not stop ``'%300000000d' % 1``, ``'x'|center(10**9)`` or a loop that doubles a string.
Here every operator, call, filter, ``~`` and printed value is sized before it is built
and charged to the rendering's :mod:`~postroom.correspondence.limits` budget, and every
``for`` loop counts its steps and watches the clock.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from types import BuiltinMethodType, MethodType
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import TemplateAssertionError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment, safe_range
from markupsafe import Markup

from postroom.correspondence import checks, formatting
from postroom.correspondence.formats import (
    LimitedEscapeFormatter,
    LimitedFormatter,
    percent_size,
)
from postroom.correspondence.limits import (
    MAX_INT_BITS,
    MAX_ITEMS,
    MAX_VALUE_CHARS,
    LimitExceeded,
    Steps,
    built,
    charge,
    charge_now,
    charge_value,
    escaped_len,
    printed,
    require,
    size_of,
)
from postroom.correspondence.names import unknown_calls

_SEQUENCES = (str, bytes, list, tuple)


_SLOT = 8  # a pointer in a list
_BUFFERED_PART = 64  # a small string object and its pointer, kept until the buffer is joined
_OBJECT = 64
_INCLUDE = 1024  # a template started: its context, its frame, its output buffer


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, routing loops and ``~`` through the budget."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # Jinja allows no custom nodes: the iterable becomes a call of loop_steps.
        node.iter = nodes.Call(
            nodes.EnvironmentAttribute("loop_steps"),
            [node.iter],
            [],
            None,
            None,
            lineno=node.iter.lineno,
        )
        super().visit_For(node, frame)

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        # Template text is never finalized, and a buffer (a macro's or a block's output)
        # keeps every part as an object of its own until it is joined: each output charges
        # its text and its parts, so a loop printing empty strings is bounded too.
        part = _BUFFERED_PART if frame.buffer is not None else _SLOT
        cost = sum(
            _SLOT + len(child.data) if isinstance(child, nodes.TemplateData) else part
            for child in node.nodes
        )
        self.writeline(f"environment.charge_output({cost})")
        super().visit_Output(node, frame)

    def visit_Include(self, node: nodes.Include, frame: Frame) -> None:
        # An include prints nothing of its own: without a charge, includes that each
        # include a fragment twice would double the work per level and never meet a limit.
        self.writeline(f"environment.charge_step({_INCLUDE})")
        super().visit_Include(node, frame)

    def visit_Import(self, node: nodes.Import, frame: Frame) -> None:
        self.writeline(f"environment.charge_step({_INCLUDE})")
        super().visit_Import(node, frame)

    def visit_FromImport(self, node: nodes.FromImport, frame: Frame) -> None:
        self.writeline(f"environment.charge_step({_INCLUDE})")
        super().visit_FromImport(node, frame)

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._built(super().visit_List, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._built(super().visit_Dict, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # a target ({% for a, b in ... %}), not a value
            super().visit_Tuple(node, frame)
            return
        self._built(super().visit_Tuple, node, frame)

    def _built(self, visit: Callable[[Any, Frame], None], node: nodes.Expr, frame: Frame) -> None:
        # Literals a loop writes out are charged like any list: [ns.l, ns.l] makes a chain.
        self.write("environment.built(")
        visit(node, frame)
        self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # As Jinja writes it, with the parts sized and charged before they are joined.
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.concat_parts((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


def _guard_filter(func: Callable[..., Any], check: checks.Check) -> Callable[..., Any]:
    if getattr(func, "jinja_pass_arg", None) is None:

        @functools.wraps(func)
        def guarded(value: Any, *args: Any, **kwargs: Any) -> Any:
            rest = check(value, args, kwargs, False)
            result = func(*rest, **kwargs) if rest is not None else func(value, *args, **kwargs)
            # A value handed back as it was ('x'|string) was charged when it was built.
            return result if result is value else charge_value(result)

        return guarded

    @functools.wraps(func)
    def guarded_with(passed: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        # The context, eval context or environment comes first (pass_eval_context...).
        escaping = isinstance(passed, EvalContext) and passed.autoescape
        rest = check(value, args, kwargs, escaping)
        if rest is not None:
            result = func(passed, *rest, **kwargs)
        else:
            result = func(passed, value, *args, **kwargs)
        return result if result is value else charge_value(result)

    return guarded_with


def _repeat(left: Any, right: Any) -> None:
    if isinstance(left, _SEQUENCES) and isinstance(right, int):
        sequence, times = left, right
    elif isinstance(right, _SEQUENCES) and isinstance(left, int):
        sequence, times = right, left
    else:
        if isinstance(left, int) and isinstance(right, int):
            require(_bits(left) + _bits(right), what="a product", limit=MAX_INT_BITS, unit="bits")
        return
    if times <= 1:
        return
    if isinstance(sequence, list | tuple):
        require(len(sequence) * times, what="a repetition", limit=MAX_ITEMS, unit="items")
        require(size_of(sequence) * times, what="a repetition")
    else:
        require(len(sequence) * times, what="a repetition")


def _bits(value: int) -> int:
    return abs(value).bit_length()


def _power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        bits = math.log2(abs(base)) * exponent  # logs of huge ints are fine: no power is built
        require(int(bits) + 1, what="a power", limit=MAX_INT_BITS, unit="bits")


def _add(left: Any, right: Any) -> None:
    if isinstance(left, str | bytes) and isinstance(right, str | bytes):
        growth = 6 if isinstance(left, Markup) and not isinstance(right, Markup) else 1
        require(len(left) + len(right) * growth, what="a sum of strings")
    elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
        require(len(left) + len(right), what="a sum of lists", limit=MAX_ITEMS, unit="items")
        require(size_of(left) + size_of(right), what="a sum of lists")


_DICT_ATTRIBUTES = frozenset(dir(dict))


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, refusing any step past the rendering's size and time limits."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=printed, **options)
        self.globals["range"] = self.limited_range
        self.globals["lipsum"] = checks.lipsum
        # Filters that only pick or convert a value (default, first, length...) stay as
        # they are: wrapping them would cost every template for nothing.
        for name, check in checks.FILTER_CHECKS.items():
            self.filters[name] = _guard_filter(self.filters[name], check)
        # Dates and amounts in the rendering's language; their inputs are bounded there.
        self.filters.update(formatting.FILTERS)

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        # Jinja compiles a filter or test it does not have into a runtime failure where
        # the call may not be reached ({% if %}): every one is refused here instead, so a
        # template naming one never compiles, wherever it comes from.
        for unknown in unknown_calls(self, source):
            raise TemplateAssertionError(str(unknown), unknown.lineno, name, filename)
        for const in source.find_all(nodes.Const):
            # 1e999 is infinity, which Jinja's generated code would write as a bare name.
            if isinstance(const.value, float) and not math.isfinite(const.value):
                too_large = "a number too large to write (use one under 1e308)"
                raise TemplateAssertionError(too_large, const.lineno, name, filename)
        return super()._generate(source, name, filename, defer_init)

    @staticmethod
    def limited_range(*args: int) -> Steps:
        """``range`` for templates: refused over MAX_RANGE items, its steps counted."""
        try:
            return Steps(safe_range(*args))
        except OverflowError:
            raise LimitExceeded(f"a range would take over {MAX_RANGE} steps") from None

    def getattr(self, obj: Any, attribute: str) -> Any:
        # The context is plain dicts, so ``case.data.x`` is an item. Jinja tries the
        # attribute first and catches an AttributeError on every dot; a dict instance has
        # only its type's attributes, so any other name goes straight to the item.
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    charge_output = staticmethod(charge)  # called for every output: no extra frame
    charge_step = staticmethod(charge_now)
    built = staticmethod(built)

    @staticmethod
    def loop_steps(iterable: Any) -> Any:
        return iterable if isinstance(iterable, Steps) else Steps(iterable)

    def concat_parts(self, parts: tuple[Any, ...]) -> tuple[Any, ...]:
        total = 0
        for part in parts:
            total += len(part) if isinstance(part, str) else size_of(part)
        if self.autoescape and total * 6 > MAX_VALUE_CHARS:
            total = sum(
                len(p)
                if hasattr(p, "__html__")
                else escaped_len(str(p))
                if isinstance(p, str)
                else size_of(p) * 6
                for p in parts
            )
        require(total, what="a '~' join")
        charge(total)
        return parts

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _repeat(left, right)
        elif operator == "**":
            _power(left, right)
        elif operator == "%":
            if isinstance(left, bytes):  # b'%300000000d' % 1 is as big as its str twin
                left_text = left.decode("latin-1")
                require(percent_size(left_text, right), what="'%' formatting")
            elif isinstance(left, str):
                require(
                    percent_size(left, right, escaping=isinstance(left, Markup)),
                    what="'%' formatting",
                )
        else:
            _add(left, right)
        return charge_value(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(__obj, BuiltinMethodType | MethodType):
            owner = getattr(__obj, "__self__", None)
            args = _check_method(__obj, owner, args, kwargs)
            result = super().call(__context, __obj, *args, **kwargs)
            if isinstance(owner, str | bytes):  # a string method builds what it returns
                return charge_value(result)
            charge(_OBJECT)  # dict.get hands back what exists; items() builds a view
            return result
        if isinstance(__obj, LoopContext) and args:
            args = (Steps(args[0]), *args[1:])  # a recursive loop's next level
        result = super().call(__context, __obj, *args, **kwargs)
        # A macro's output (its parts were charged as printed), or what a global built:
        # namespace(p=ns) in a loop makes a chain, each link an object and its dict.
        charge(len(result) if isinstance(result, str) else 4 * _OBJECT)
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Jinja's own wrapper, with formatters that size each field before formatting it.
        if not isinstance(value, MethodType | BuiltinMethodType) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        owner: Any = value.__self__
        if not isinstance(owner, str):
            return None
        str_type: type[str] = type(owner)
        is_format_map = value.__name__ == "format_map"
        escaping = isinstance(owner, Markup)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            formatter: LimitedFormatter
            if escaping:
                formatter = LimitedEscapeFormatter(self, escape=owner.escape)  # type: ignore[attr-defined]
            else:
                formatter = LimitedFormatter(self)
            return str_type(formatter.vformat(owner, args, kwargs))

        return functools.update_wrapper(wrapper, value)


def _check_method(
    method: Any, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    name = method.__name__
    if isinstance(owner, str | bytes | bytearray):
        check = checks.METHOD_CHECKS.get(name)
        if check is not None:
            replaced = check(owner, args, kwargs)
            if replaced is not None:
                return replaced
    elif isinstance(owner, int) and name == "to_bytes":
        checks.check_to_bytes(args, kwargs)
    elif name == "fromkeys":
        return checks.check_fromkeys(args, kwargs)
    return args
