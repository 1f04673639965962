"""The Jinja sandbox that config expressions run in, and the budget every render of one has.

Config is trusted less than code: an expression may read the call's data and build a request
from it, but nothing more. Besides Jinja's own sandbox (no private attributes, no mutation),

- a render has a budget of steps (a loop iteration costs the size of its body, so what the body
  does is counted; a call and an operator one) and of the characters or items its operators, methods,
  filters and text output may build: `MAX_RENDER_SIZE` plus four times the size of the data it
  was given. An operation that would build more is refused *before* it builds (repetition,
  padding, formatting widths, joining, replacing, exponentiation), or right after an operation
  whose result is at most the sum of what it was given (`+`, `~`).
- macros, call blocks, recursive loops, imports and includes are refused when a template is
  compiled, and so is `attr()` with a name built at render time; private names built at render
  time are refused by the sandbox.
- str methods outside a fixed list (and all methods of numbers and bytes) are refused.
- in a URL template (`URL_ENV`) every value an expression places in the URL is percent-encoded
  segment by segment ('/' separates segments); an empty or dot segment, a backslash and an encoded
  separator are refused.
"""

from __future__ import annotations

import functools
import operator
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import ChainableUndefined, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from .urlsafe import url_value

MAX_RENDER_STEPS = 100_000
MAX_RENDER_SIZE = 100_000  # characters or items, beyond 4x the size of the data the render was given
MAX_INT_BITS = 4_096  # the largest integer an operator may build
MAX_JSON_INDENT = 16
WIDEN_LIMIT = 10_000_000  # what a render's input may widen its budget by is walked this far at most

_STR_METHODS = frozenset({
    "capitalize", "casefold", "count", "endswith", "find", "index", "isalnum", "isalpha", "isascii", "isdecimal",
    "isdigit", "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "lower",
    "lstrip", "partition", "removeprefix", "removesuffix", "rfind", "rindex", "rpartition", "rsplit", "rstrip",
    "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper",
    # these build more than they are given: checked before each call
    "center", "ljust", "rjust", "zfill", "replace", "join", "format", "format_map",
})
_REFUSED_STATEMENTS = {nodes.Macro: "{% macro %}", nodes.CallBlock: "{% call %}", nodes.Include: "{% include %}",
                       nodes.Import: "{% import %}", nodes.FromImport: "{% from ... import %}",
                       nodes.Extends: "{% extends %}"}


# --- the budget -------------------------------------------------------------------------------------


class _Budget(threading.local):
    steps = 0
    built = 0
    allowance = MAX_RENDER_SIZE
    variables: Mapping[str, Any] | None = None


_BUDGET = _Budget()


@pass_context
def _start(context: Context) -> None:
    """Called first by every compiled template: a render starts with a full budget."""
    budget = _BUDGET
    budget.steps = budget.built = 0
    budget.allowance = MAX_RENDER_SIZE
    budget.variables = context.parent


def step(cost: int = 1) -> None:
    budget = _BUDGET
    budget.steps += cost
    if budget.steps > MAX_RENDER_STEPS:
        raise SecurityError(f"a config expression ran more than {MAX_RENDER_STEPS} steps (loops, calls): refused")


def charge(size: int) -> None:
    """Characters or items about to be built (or just built, by an operation that cannot grow its input)."""
    budget = _BUDGET
    budget.built += size
    if budget.built > budget.allowance and not _widen():
        raise SecurityError(f"a config expression tried to build a value too large (more than {budget.allowance} "
                            "characters or items in one render): refused")


def _widen() -> bool:
    """The first time a render runs out, what it was given widens its budget: True if it did."""
    budget = _BUDGET
    if budget.variables is None:
        return False
    budget.allowance += 4 * data_size(budget.variables.values(), WIDEN_LIMIT)
    budget.variables = None
    return budget.built <= budget.allowance


def charge_value(value: Any) -> int:
    """Charge what a value holds, walked deep: a list that holds one list a thousand times holds a
    thousand copies once it is written out. The walk stops as soon as the budget is spent."""
    if not isinstance(value, (Mapping, list, tuple)):
        return 0
    budget = _BUDGET
    size = data_size([value], budget.allowance - budget.built)
    if budget.built + size > budget.allowance and _widen():
        size = data_size([value], budget.allowance - budget.built)
    charge(size)
    return size


def data_size(values: Iterable[Any], limit: int | None = None) -> int:
    """Characters in strings and items in lists and dicts, walked without recursion; once past
    `limit` the walk stops (the total is then only known to be larger)."""
    total = 0
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, Mapping):
            total += len(value)
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            total += len(value)
            stack.extend(value)
        if limit is not None and total > limit:
            break
    return total


def _rough_size(value: Any) -> int:
    """An upper bound on the length of str(value) (a structure is charged as it is measured)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (Mapping, list, tuple)):
        return 16 + 4 * charge_value(value)
    return 32


def _widths(fmt: str, values: Iterable[Any], nested: bool) -> int:
    """The widest field a format string can ask for: its literal numbers, and, when a width comes
    from the arguments (`%*d`, `{:{}}`), every integer argument."""
    width = 0
    for digits in re.findall(r"\d+", fmt):
        if len(digits) > 9:
            return MAX_RENDER_SIZE * 1000
        width = max(width, int(digits))
    if nested:
        width += sum(v for v in values if type(v) is int and v > 0)
    return width


def _format_size(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], percent: bool) -> int:
    """An upper bound on what `fmt % args` or `fmt.format(*args, **kwargs)` builds."""
    values = [*args, *kwargs.values()]
    if percent and len(args) == 1 and isinstance(args[0], (tuple, Mapping)):
        values = list(args[0].values() if isinstance(args[0], Mapping) else args[0])
    fields = fmt.count("%") if percent else fmt.count("{")
    nested = "*" in fmt if percent else re.search(r"\{[^{}]*\{", fmt) is not None
    return len(fmt) + fields * (sum(_rough_size(v) for v in values) + _widths(fmt, values, nested))


def _check_str_call(text: str, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Charge what a str method will build; return its arguments (an iterable to join, made a list)."""
    if name in ("center", "ljust", "rjust", "zfill") and args and type(args[0]) is int:
        charge(max(len(text), args[0]))
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        found = len(text) + 1 if not args[0] else text.count(args[0])
        if len(args) > 2 and type(args[2]) is int and args[2] >= 0:
            found = min(found, args[2])
        charge(len(text) + found * len(args[1]))
    elif name == "join" and args:
        items = list(args[0])
        charge(sum(_rough_size(i) for i in items) + len(items) * len(text))
        return (items, *args[1:])
    return args


# --- the environment ---------------------------------------------------------------------------------


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "%", "+"])

    def __init__(self, **options: Any) -> None:
        super().__init__(undefined=ChainableUndefined, autoescape=False, keep_trailing_newline=True, **options)
        for name in ("lipsum", "cycler", "joiner"):  # helpers that build text or state no request needs
            del self.globals[name]
        self.budget_start = _start
        self.budget_iter = _budget_iter
        self.budget_concat = _budget_concat
        self.budget_value = _budget_value

    def compile(self, source: Any, name: str | None = None, filename: str | None = None, raw: bool = False,
                defer_init: bool = False) -> Any:
        """Every template is instrumented before Jinja generates its code: it starts a budget, its
        loops and `~` concatenations charge it."""
        if isinstance(source, str):
            source = self.parse(source, name, filename)
        source = _Instrument().visit(source)
        start = nodes.ExprStmt(nodes.Call(nodes.EnvironmentAttribute("budget_start"), [], [], None, None, lineno=1), lineno=1)
        source.body.insert(0, start)
        source.set_environment(self)
        return super().compile(source, name, filename, raw, defer_init)  # type: ignore[call-overload]

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str):
            return attr in _STR_METHODS
        if isinstance(obj, (int, float, complex, bytes, bytearray)):
            return False  # `(1).to_bytes(10**9, 'big')`: nothing a request needs
        return super().is_safe_attribute(obj, attr, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        """A private or refused name, even one built at render time, is an error, not a silent undefined."""
        raise SecurityError(f"the sandbox refuses {type(obj).__name__}.{attribute}")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if __obj is _start:
            return _start(__context)
        step()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            args = _check_str_call(owner, __obj.__name__, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if __obj is not _budget_value:
            charge_value(result)  # `dict(a=x, b=x)`: what a call builds, walked deep
        return result

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        step()
        if operator_name == "+":
            if isinstance(left, str) and isinstance(right, str):
                charge(len(left) + len(right))
            elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
                charge(_deep(left) + _deep(right))
            return left + right
        if operator_name == "**":
            if type(left) is int and type(right) is int and right > 0 and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
                raise SecurityError(f"a config expression tried to build an integer of more than {MAX_INT_BITS} bits: refused")
            return left**right
        if operator_name == "%":
            if isinstance(left, str):
                charge(_format_size(left, (right,), {}, percent=True))
            return left % right
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and type(count) is int:
                charge((len(seq) if isinstance(seq, str) else _deep(seq)) * max(count, 0))
        if type(left) is int and type(right) is int and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError(f"a config expression tried to build an integer of more than {MAX_INT_BITS} bits: refused")
        return operator.mul(left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt, is_map = value.__self__, value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            step()
            charge(_format_size(fmt, (), args[0], percent=False) if is_map and args and isinstance(args[0], Mapping)
                   else _format_size(fmt, args, kwargs, percent=False))
            return wrapped(*args, **kwargs)

        return checked


def _budget_iter(iterable: Any, cost: int, text: int) -> Iterator[Any]:
    """What a `{% for %}` loops over: each iteration charges the size of the loop's body, in steps,
    and the literal text it writes."""
    for item in iterable:
        step(cost)
        if text:
            charge(text)
        yield item


def _budget_value(value: Any) -> Any:
    """A list, tuple or dict literal: charged, deep (`[x, x, x]` holds x three times)."""
    charge_value(value)
    return value


def _deep(value: Any) -> int:
    """What a structure holds, walked deep, up to just past what the budget has left."""
    budget = _BUDGET
    return data_size([value], max(budget.allowance - budget.built, 0) + 1)


def _budget_concat(items: tuple[Any, ...]) -> str:
    """`a ~ b ~ c`: the text, charged (a structure before it is written out as text)."""
    for item in items:
        charge_value(item)
    texts = [str(item) for item in items]
    charge(sum(map(len, texts)))
    return "".join(texts)


class _Instrument(NodeTransformer):
    """Loops, `~` and literals call the budget: a loop's iterable is wrapped, a concatenation
    becomes a call, a list, tuple or dict literal is charged."""

    def _charged(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("budget_value"), [node], [], None, None, lineno=node.lineno)

    def visit_List(self, node: nodes.List) -> nodes.Node:
        return self._charged(node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        return self._charged(node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        if node.ctx != "load":  # `{% for a, b in ... %}`: a target, not a value
            self.generic_visit(node)
            return node
        return self._charged(node)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        body = [*node.body, *node.else_]
        cost = 1 + sum(1 + sum(1 for _ in n.find_all(nodes.Node)) for n in body)
        text = sum(len(n.data) for part in body for n in (part, *part.find_all(nodes.TemplateData))
                   if isinstance(n, nodes.TemplateData))
        node.iter = nodes.Call(nodes.EnvironmentAttribute("budget_iter"), [node.iter, nodes.Const(cost), nodes.Const(text)],
                               [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("budget_concat"), [nodes.Tuple(node.nodes, "load")], [], None, None,
                          lineno=node.lineno)


def refusals(ast: nodes.Template) -> list[str]:
    """What the sandbox refuses in a template at compile time, described: private names, a name
    that `attr()` would build at render time, macros, call blocks, recursive loops, imports."""
    found = [f"private attribute(s) {', '.join(sorted(names))}" for names in [_private_names(ast)] if names]
    found += [_REFUSED_STATEMENTS[type(statement)] for statement in ast.find_all(tuple(_REFUSED_STATEMENTS))]
    if any(loop.recursive for loop in ast.find_all(nodes.For)):
        found.append("recursive loops")
    if any(f.name == "attr" and not (len(f.args) == 1 and isinstance(f.args[0], nodes.Const)) for f in ast.find_all(nodes.Filter)):
        found.append("attr() with a name built at render time")
    return found


def _private_names(ast: nodes.Template) -> set[str]:
    """Private names reached as `x._a`, `x['_a']` or `x | attr('_a')`."""
    names = {n.attr for n in ast.find_all(nodes.Getattr) if n.attr.startswith("_")}
    for node in ast.find_all((nodes.Getitem, nodes.Filter)):
        keys: list[nodes.Expr] = []
        if isinstance(node, nodes.Getitem):
            keys = [node.arg]
        elif isinstance(node, nodes.Filter) and node.name == "attr":
            keys = list(node.args)
        names.update(k.value for k in keys if isinstance(k, nodes.Const) and isinstance(k.value, str) and k.value.startswith("_"))
    return names


# --- filters that build more than they are given: checked before they build -------------------------


def _capped(env: _Environment, name: str, check: Callable[..., None]) -> None:
    original = env.filters[name]
    skip = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0  # the environment or eval context

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        step()
        if len(args) > skip and isinstance(args[skip], Iterator):
            args = (*args[:skip], list(args[skip]), *args[skip + 1:])  # an iterator, once: measured, then filtered
        check(*args[skip:], **kwargs)
        return original(*args, **kwargs)

    env.filters[name] = wrapper


def _int(value: Any) -> int:
    return value if type(value) is int else len(value) if isinstance(value, str) else 0


def _count(value: Any) -> int:
    return len(value) if hasattr(value, "__len__") else 0


def _filter_checks() -> dict[str, Callable[..., None]]:
    def center(value: Any, width: Any = 80) -> None:
        charge(max(_rough_size(value), _int(width)))

    def indent(s: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
        text = str(s)
        charge(len(text) + (text.count("\n") + 1) * _int(width))

    def wordwrap(s: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None, *args: Any, **kwargs: Any) -> None:
        wrap = kwargs.get("wrapstring", wrapstring)
        charge(len(str(s)) * (1 + len(wrap if isinstance(wrap, str) else "\n")))

    def truncate(s: Any, length: Any = 255, killwords: Any = False, end: Any = "...", *args: Any, **kwargs: Any) -> None:
        charge(len(str(s)) + len(str(kwargs.get("end", end))))

    def format_(value: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(value, str):
            charge(_format_size(value, (kwargs,) if kwargs else args, {}, percent=True))

    def tojson(value: Any, indent: Any = None, **kwargs: Any) -> None:
        indent = kwargs.get("indent", indent)
        if _int(indent) > MAX_JSON_INDENT:
            raise SecurityError(f"tojson indent above {MAX_JSON_INDENT}: refused")

    def join(value: Any, d: Any = "", *args: Any, **kwargs: Any) -> None:
        separator = str(kwargs.get("d", d))
        items = value if hasattr(value, "__len__") else ()
        charge(sum(_rough_size(i) for i in items) + _count(items) * len(separator))

    def replace(s: Any, old: Any = "", new: Any = "", count: Any = None, **kwargs: Any) -> None:
        _check_str_call(str(s), "replace", (str(old), str(new), *([count] if count is not None else [])), {})

    def batch(value: Any, linecount: Any = 1, fill_with: Any = None, **kwargs: Any) -> None:
        charge(_count(value) + (_int(linecount) if kwargs.get("fill_with", fill_with) is not None else 0))

    def slice_(value: Any, slices: Any = 1, *args: Any, **kwargs: Any) -> None:
        charge(_count(value) + _int(slices))

    def sum_(iterable: Any, attribute: Any = None, start: Any = 0, **kwargs: Any) -> None:
        if not isinstance(kwargs.get("start", start), (int, float)):
            raise SecurityError("the sum filter adds numbers: refused with a start that is not a number")

    return {"center": center, "indent": indent, "wordwrap": wordwrap, "truncate": truncate, "format": format_,
            "tojson": tojson, "join": join, "replace": replace, "batch": batch, "slice": slice_, "sum": sum_}


# --- URL templates ---------------------------------------------------------------------------------------


def _url_text(value: Any) -> str:
    """A value a URL template writes out: encoded, then charged to the render's budget."""
    text = url_value(value)
    charge(len(text))
    return text


def _text_value(value: Any) -> Any:
    """A value a text template writes out, charged (a structure before it becomes text)."""
    if isinstance(value, str):
        charge(len(value))
    else:
        charge_value(value)
    return value


ENV = _Environment(finalize=_text_value)
for _name, _check in _filter_checks().items():
    _capped(ENV, _name, _check)
URL_ENV = _Environment(finalize=_url_text)
URL_ENV.filters = ENV.filters  # one set: the engine's filters are added to it once
URL_ENV.tests = ENV.tests
