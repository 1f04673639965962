"""RFC 9535 JSONPath, compiled once at load (jsonpath-rfc9535 does the parsing).

Most paths in provider files are singular (`$.choices[0].message.content`); those are turned
into a plain chain of key and index lookups, a fraction of a microsecond per call. Any other
query (filters, wildcards, descendants) is evaluated by the library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jsonpath_rfc9535 as rfc9535


class PathSyntaxError(ValueError):
    pass


class JSONPath:
    """A compiled query. `first(data)` gives the first match or None; `all(data)` every match, in
    document order (a singular path gives at most one).

    A value nested deeper than a descendant query or a comparison can walk (Python's recursion
    limit) holds no match (the library's own limit is 100 levels): a hostile reply gives "nothing
    found", never a RecursionError. Both are functions chosen for the query when it is compiled."""

    __slots__ = ("expr", "first", "all", "singular", "_query", "_steps", "_prefix", "_head", "_names", "_select",
                 "_tail", "_rest")

    first: Callable[[Any], Any]
    all: Callable[[Any], list[Any]]

    def __init__(self, expr: str) -> None:
        self.expr = expr
        try:
            self._query = rfc9535.compile(expr)
        except rfc9535.JSONPathError as exc:
            raise PathSyntaxError(f"invalid JSONPath {expr!r}: {exc}") from None
        self._steps = _singular_steps(self._query)
        self.singular = self._steps is not None
        # Any other query: its singular head is walked by hand (usually it finds nothing: no tool calls,
        # no reasoning), and only what follows it goes to the library, unless it is one wildcard or
        # one list of names.
        self._prefix, rest = _split_head(self._query)
        self._head = lookups(self._prefix)
        self._names: tuple[str, ...] | None = None
        self._select: Callable[[Any], bool] | None = None
        self._tail: tuple[str | int, ...] = ()
        self._rest: Any = None  # the library's compiled query for what follows the head
        if self._steps is not None:
            self.first = self._head  # the whole path is its head
            self.all = self._one
            return
        self._plan(rest)
        self.first = self._first_match
        self.all = self._of_names if self._names is not None else self._selected if self._select is not None else self._library

    def _plan(self, rest: list[Any]) -> None:
        """How to evaluate what follows the head: a list of names; a wildcard or a filter of the
        common kind, then plain steps; or, for anything else, the library."""
        first = rest[0]
        selectors: tuple[Any, ...] = tuple(first.selectors) if type(first).__name__ == "JSONPathChildSegment" else ()
        tail = tuple(_plain_step(segment) for segment in rest[1:])
        if len(rest) == 1 and selectors and all(isinstance(getattr(s, "name", None), str) for s in selectors):
            self._names = tuple(s.name for s in selectors)
            return
        if len(selectors) == 1 and None not in tail:
            kind = type(selectors[0]).__name__
            select = _always if kind == "WildcardSelector" else _predicate(selectors[0].expression) if kind == "FilterSelector" else None
            if select is not None:
                self._select, self._tail = select, tuple(t for t in tail if t is not None)
                return
        self._rest = rfc9535.compile("$" + "".join(str(segment) for segment in rest))

    def _first_match(self, data: Any) -> Any:
        values = self.all(data)
        return values[0] if values else None

    def _one(self, data: Any) -> list[Any]:
        value = self._head(data)
        return [] if value is None else [value]

    def _of_names(self, data: Any) -> list[Any]:
        base = self._head(data)
        found: list[Any] = []
        if type(base) is dict:
            for name in self._names:  # type: ignore[union-attr]  # a loop: a comprehension is a call of its own
                if name in base:
                    found.append(base[name])
        return found

    def _selected(self, data: Any) -> list[Any]:
        base = self._head(data)
        if base is None:
            return []
        select, tail = self._select, self._tail
        assert select is not None
        items = base if type(base) is list else base.values() if type(base) is dict else ()
        try:
            found = [_lookup(item, tail) for item in items if select(item)]
        except RecursionError:  # a comparison of values nested too deep
            return []
        return [value for value in found if value is not _MISSING]

    def _library(self, data: Any) -> list[Any]:
        base = self._head(data)
        if base is None:
            return []
        assert self._rest is not None
        try:
            return [node.value for node in self._rest.finditer(base)]
        except (RecursionError, rfc9535.JSONPathRecursionError):
            return []

    def __repr__(self) -> str:
        return f"JSONPath({self.expr!r})"


def lookups(steps: tuple[str | int, ...]) -> Callable[[Any], Any]:
    """A function doing the key and index lookups of `steps` (None where a step finds nothing),
    written out for these steps: a generic loop costs twice as much, and a reply is read with a
    dozen paths (a stream, on every event). The code is made once per shape of steps (a key, an
    index from the start, an index from the end) and holds none of their values: they are
    arguments of its maker."""
    if not steps:
        return _itself
    shape = tuple("key" if isinstance(step, str) else "from_start" if step >= 0 else "from_end" for step in steps)
    make = _MAKERS.get(shape)
    if make is None:
        make = _MAKERS[shape] = _maker(shape)
    return make(*steps)


_MAKERS: dict[tuple[str, ...], Callable[..., Callable[[Any], Any]]] = {}
# for a step of each kind: the test that it finds nothing in the value {v}, and the lookup of step {s} in it
_TESTS = {"key": "type({v}) is not dict", "from_start": "type({v}) is not list or len({v}) <= {s}",
          "from_end": "type({v}) is not list or len({v}) < -{s}"}
_STEPS = {"key": "{v}.get({s})", "from_start": "{v}[{s}]", "from_end": "{v}[{s}]"}


def _maker(shape: tuple[str, ...]) -> Callable[..., Callable[[Any], Any]]:
    names = [f"s{i}" for i in range(len(shape))]
    lines = [f"def make({', '.join(names)}):", "    def lookup(data):"]
    for name, kind in zip(names, shape, strict=True):
        lines.append(f"        if {_TESTS[kind].format(v='data', s=name)}: return None\n"
                     f"        data = {_STEPS[kind].format(v='data', s=name)}")
    lines += ["        return data", "    return lookup"]
    namespace: dict[str, Any] = {"__builtins__": {"type": type, "dict": dict, "list": list, "len": len}}
    exec("\n".join(lines), namespace)  # the shape only: the steps' values are the maker's arguments
    make: Callable[..., Callable[[Any], Any]] = namespace["make"]
    return make


def _itself(data: Any) -> Any:
    return data


def common_head(paths: Sequence[JSONPath]) -> Callable[[Any], Any] | None:
    """The lookups every one of `paths` begins with, or None when they share none. Where these find
    nothing (None), none of the paths finds anything: each walks its own head first."""
    shared = common_prefix(paths)
    return lookups(shared) if shared else None


def common_prefix(paths: Sequence[JSONPath]) -> tuple[str | int, ...]:
    """The steps the heads of all `paths` begin with (none for no paths)."""
    if not paths:
        return ()
    shared = paths[0]._prefix
    for path in paths[1:]:
        steps = path._prefix
        n = 0
        while n < min(len(shared), len(steps)) and type(shared[n]) is type(steps[n]) and shared[n] == steps[n]:
            n += 1
        shared = shared[:n]
    return shared


def head_steps(path: JSONPath) -> tuple[str | int, ...]:
    """The steps of a path's head: all of a singular path; else those before its first wildcard,
    filter, list of names or descendant segment. Where they find nothing, the path finds nothing."""
    return path._prefix


def heads(prefixes: Sequence[tuple[str | int, ...] | None]) -> Callable[[Any], tuple[Any, ...]]:
    """One function giving, for each list of steps, what its lookups find (None for a None entry):
    given heads (`head_steps`), the whole match of a singular path, else the value the rest of the
    path starts from. The walk is shared where the steps begin alike (a stream event's delta,
    finish reason, tool calls and reasoning all start at `$.choices[0]`), and written out like
    `lookups`: once per shape, the steps being its maker's arguments."""
    root: _Node = ({}, [])
    for i, steps in enumerate(prefixes):
        if steps is None:
            continue
        node = root
        for step in steps:
            node = node[0].setdefault((_kind(step), step), ({}, []))
        node[1].append(i)
    args: list[str | int] = []

    def shape(node: _Node) -> tuple[Any, ...]:
        children = []
        for (kind, step), child in node[0].items():
            args.append(step)
            children.append((kind, shape(child)))
        return tuple(node[1]), tuple(children)

    key = (len(prefixes), shape(root))
    make = _HEAD_MAKERS.get(key)
    if make is None:
        make = _HEAD_MAKERS[key] = _heads_maker(*key)
    return make(*args)


_Node = tuple[dict[tuple[str, str | int], "_Node"], list[int]]  # children by (kind, step), and the paths ending here
_HEAD_MAKERS: dict[tuple[Any, ...], Callable[..., Callable[[Any], tuple[Any, ...]]]] = {}


def _kind(step: str | int) -> str:
    return "key" if isinstance(step, str) else "from_start" if step >= 0 else "from_end"


def _heads_maker(count: int, root: tuple[Any, ...]) -> Callable[..., Callable[[Any], tuple[Any, ...]]]:
    body: list[str] = []
    names = iter(range(1_000_000))  # the arguments (steps) and the variables (values) are numbered in one walk

    def emit(node: tuple[Any, ...], value: str, indent: str) -> None:
        ends, children = node
        body.extend(f"{indent}v{i} = {value}" for i in ends)
        for kind, child in children:
            n = next(names)
            body.append(f"{indent}if not ({_TESTS[kind].format(v=value, s=f'a{n}')}):")
            body.append(f"{indent}    n{n} = {_STEPS[kind].format(v=value, s=f'a{n}')}")
            emit(child, f"n{n}", indent + "    ")

    emit(root, "data", "        ")
    outputs = [f"v{i}" for i in range(count)]
    arguments = [f"a{i}" for i in range(next(names))]
    lines = [f"def make({', '.join(arguments)}):", "    def heads(data):",
             f"        {' = '.join(outputs)} = None" if outputs else "        pass", *body,
             f"        return ({', '.join(outputs)}{',' if len(outputs) == 1 else ''})", "    return heads"]
    namespace: dict[str, Any] = {"__builtins__": {"type": type, "dict": dict, "list": list, "len": len}}
    exec("\n".join(lines), namespace)  # the shape only: the steps' values are the maker's arguments
    make: Callable[..., Callable[[Any], tuple[Any, ...]]] = namespace["make"]
    return make


_MISSING: Any = object()


def _lookup(data: Any, steps: tuple[str | int, ...]) -> Any:
    """Like `lookups`, but a JSON null found is None and a step that finds nothing is _MISSING."""
    for step in steps:
        if isinstance(step, str):
            if type(data) is not dict or step not in data:
                return _MISSING
            data = data[step]
        else:
            if type(data) is not list or not -len(data) <= step < len(data):
                return _MISSING
            data = data[step]
    return data


def _always(item: Any) -> bool:
    return True


def _predicate(node: Any) -> Callable[[Any], bool] | None:
    """A plain function for the filters provider files use: existence tests and ==, != between
    singular relative queries and literals, joined by &&, || and !. The expression is the one the
    library parsed; None leaves any other filter to the library."""
    kind = type(node).__name__
    if kind == "FilterExpression":
        return _predicate(node.expression)
    if kind == "LogicalExpression" and node.operator in ("&&", "||"):
        left, right = _predicate(node.left), _predicate(node.right)
        if left is None or right is None:
            return None
        both, either = left, right  # bound for the closures, not None
        if node.operator == "&&":
            return lambda item: both(item) and either(item)
        return lambda item: both(item) or either(item)
    if kind == "PrefixExpression" and node.operator == "!":
        inner = _predicate(node.right)
        return None if inner is None else (lambda item: not inner(item))
    if kind == "RelativeFilterQuery":
        steps = _singular_steps(node.query)
        return None if steps is None else (lambda item: _lookup(item, steps) is not _MISSING)
    if kind == "ComparisonExpression" and node.operator in ("==", "!="):
        left, right = _operand(node.left), _operand(node.right)
        if left is None or right is None:
            return None
        if node.operator == "==":
            return lambda item: _json_equal(left(item), right(item))
        return lambda item: not _json_equal(left(item), right(item))
    return None


_LITERALS = frozenset({"StringLiteral", "IntegerLiteral", "FloatLiteral", "BooleanLiteral", "NullLiteral"})


def _operand(node: Any) -> Callable[[Any], Any] | None:
    kind = type(node).__name__
    if kind in _LITERALS:
        value = node.value
        return lambda item: value
    if kind == "RelativeFilterQuery":
        steps = _singular_steps(node.query)
        return None if steps is None else (lambda item: _lookup(item, steps))
    return None


def _json_equal(a: Any, b: Any) -> bool:
    """RFC 9535 equality: nothing equals only nothing; true is not 1; 1 equals 1.0."""
    if a is _MISSING or b is _MISSING:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _split_head(query: Any) -> tuple[tuple[str | int, ...], list[Any]]:
    """The longest run of single-name or single-index child segments at the start, and the rest."""
    steps: list[str | int] = []
    segments = list(query.segments)
    for i, segment in enumerate(segments):
        step = _plain_step(segment)
        if step is None:
            return tuple(steps), segments[i:]
        steps.append(step)
    return tuple(steps), []


def _plain_step(segment: Any) -> str | int | None:
    if type(segment).__name__ != "JSONPathChildSegment" or len(segment.selectors) != 1:
        return None
    (selector,) = segment.selectors
    name = getattr(selector, "name", None)
    index = getattr(selector, "index", None)
    return name if isinstance(name, str) else index if isinstance(index, int) else None


def _singular_steps(query: Any) -> tuple[str | int, ...] | None:
    """The lookups of a singular query made only of names and indexes, else None."""
    steps, rest = _split_head(query)
    return steps if not rest else None
