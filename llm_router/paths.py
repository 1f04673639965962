"""RFC 9535 JSONPath, compiled once at load.

Most paths in provider files are singular (`$.choices[0].message.content`); those are turned
into a plain chain of key and index lookups, a fraction of a microsecond per call. The other
common forms (a wildcard, a filter of the usual kind or a list of names after such a chain) are
evaluated here too. pathsyntax.py parses all of these; jsonpath-rfc9535 is imported only for a
query outside them (descendants, slices, functions), which it parses and evaluates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .pathsyntax import Filter, Parsed, parse


class PathSyntaxError(ValueError):
    pass


def _library() -> Any:
    """jsonpath_rfc9535, imported on first need (its import compiles its lexer: 40 ms)."""
    import jsonpath_rfc9535

    return jsonpath_rfc9535


class JSONPath:
    """A compiled query. `first(data)` gives the first match or None; `all(data)` every match, in
    document order (a singular path gives at most one).

    A value nested deeper than a descendant query or a comparison can walk (Python's recursion
    limit) holds no match (the library's own limit is 100 levels): a hostile reply gives "nothing
    found", never a RecursionError. Both are functions chosen for the query when it is compiled.

    `trusted`: the query is from a file the digest vouches for (config/digest.py), so known to be
    valid: one that needs the library is parsed by it when first evaluated, not at load."""

    __slots__ = ("expr", "first", "all", "all_at", "singular", "_steps", "_prefix", "_head", "_names", "_select",
                 "_tail", "_rest", "_rest_source")

    first: Callable[[Any], Any]
    all: Callable[[Any], list[Any]]
    all_at: Callable[[Any], list[Any]]  # every match, given what the path's head found (`heads` walks several heads at once)

    def __init__(self, expr: str, trusted: bool = False) -> None:
        self.expr = expr
        parsed = parse(expr)
        if parsed is not None and (parsed.complete or trusted):
            rest_source = "" if parsed.complete else "$" + expr[parsed.rest:]
        else:
            parsed, rest_source = _parsed_by_library(expr)
        singular = parsed.complete and parsed.names is None and parsed.select is None
        self._steps = parsed.head if singular else None
        self.singular = self._steps is not None
        # Any other query: its singular head is walked by hand (usually it finds nothing: no tool calls,
        # no reasoning), and only what follows it goes to the library, unless it is one wildcard, one
        # filter of the usual kind, or one list of names.
        self._prefix = parsed.head
        self._head = lookups(self._prefix)
        self._names = parsed.names
        self._select = _predicate(parsed.select) if parsed.select is not None else None
        self._tail = parsed.tail
        self._rest: Any = None  # the library's compiled query for what follows the head
        self._rest_source = rest_source
        if self._steps is not None:
            self.first = self._head  # the whole path is its head
            self.all = self._one
            self.all_at = _itself_listed
            return
        if not parsed.complete and not trusted:
            self._rest = _compile(self._rest_source)
        self.first = self._first_match
        self.all_at = self._of_names if self._names is not None else self._selected if self._select is not None else self._library
        self.all = self._all

    def first_at(self, base: Any) -> Any:
        """The first match, given what the path's head found."""
        if self._steps is not None:
            return base
        values = self.all_at(base)
        return values[0] if values else None

    def _first_match(self, data: Any) -> Any:
        values = self.all_at(self._head(data))
        return values[0] if values else None

    def _all(self, data: Any) -> list[Any]:
        return self.all_at(self._head(data))

    def _one(self, data: Any) -> list[Any]:
        value = self._head(data)
        return [] if value is None else [value]

    def _of_names(self, base: Any) -> list[Any]:
        found: list[Any] = []
        if type(base) is dict:
            for name in self._names:  # type: ignore[union-attr]  # a loop: a comprehension is a call of its own
                if name in base:
                    found.append(base[name])
        return found

    def _selected(self, base: Any) -> list[Any]:
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

    def _library(self, base: Any) -> list[Any]:
        if base is None:
            return []
        if self._rest is None:
            self._rest = _compile(self._rest_source)
        try:
            return [node.value for node in self._rest.finditer(base)]
        except (RecursionError, _library().JSONPathRecursionError):
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


def _itself_listed(value: Any) -> list[Any]:
    return [] if value is None else [value]


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


def _predicate(tree: Filter) -> Callable[[Any], bool]:
    """A plain function for a filter (pathsyntax.Filter): existence tests and ==, != between singular
    relative queries and literals, joined by &&, || and !; ("all",) for a wildcard."""
    kind = tree[0]
    if kind == "all":
        return _always
    if kind in ("and", "or"):
        both, either = _predicate(tree[1]), _predicate(tree[2])
        if kind == "and":
            return lambda item: both(item) and either(item)
        return lambda item: both(item) or either(item)
    if kind == "not":
        inner = _predicate(tree[1])
        return lambda item: not inner(item)
    if kind == "exists":
        steps = tree[1]
        return lambda item: _lookup(item, steps) is not _MISSING
    left, right = _operand(tree[1]), _operand(tree[2])
    if kind == "==":
        return lambda item: _json_equal(left(item), right(item))
    return lambda item: not _json_equal(left(item), right(item))


def _operand(operand: Filter) -> Callable[[Any], Any]:
    if operand[0] == "value":
        value = operand[1]
        return lambda item: value
    steps = operand[1]
    return lambda item: _lookup(item, steps)


def _json_equal(a: Any, b: Any) -> bool:
    """RFC 9535 equality: nothing equals only nothing; true is not 1; 1 equals 1.0."""
    if a is _MISSING or b is _MISSING:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


# --- what the library parsed, for a query outside pathsyntax's forms ---------------------------------

_LITERALS = frozenset({"StringLiteral", "IntegerLiteral", "FloatLiteral", "BooleanLiteral", "NullLiteral"})


def _compile(expr: str) -> Any:
    library = _library()
    try:
        return library.compile(expr)
    except library.JSONPathError as exc:
        raise PathSyntaxError(f"invalid JSONPath {expr!r}: {exc}") from None


def _parsed_by_library(expr: str) -> tuple[Parsed, str]:
    """The plan of a query as the library parses it (PathSyntaxError if it does not): the head, then a
    list of names, a wildcard or a filter of the usual kind followed by plain steps, or else the
    whole query for the library (its source is the second item)."""
    query = _compile(expr)
    head, rest = _split_head(query)
    if not rest:
        return Parsed(head, len(expr)), ""
    first = rest[0]
    selectors: tuple[Any, ...] = tuple(first.selectors) if type(first).__name__ == "JSONPathChildSegment" else ()
    tail = tuple(_plain_step(segment) for segment in rest[1:])
    if len(rest) == 1 and selectors and all(isinstance(getattr(s, "name", None), str) for s in selectors):
        return Parsed(head, 0, names=tuple(s.name for s in selectors)), ""
    if len(selectors) == 1 and None not in tail:
        kind = type(selectors[0]).__name__
        select = ("all",) if kind == "WildcardSelector" else _tree(selectors[0].expression) if kind == "FilterSelector" else None
        if select is not None:
            return Parsed(head, 0, select=select, tail=tuple(t for t in tail if t is not None)), ""
    # The whole query goes to the library, from the root: the library's str() of a segment is not always
    # the query it parsed (`[?!(@.a < @.a)]` prints as `[?!@['a'] < @['a']]`, which negates @.a alone).
    return Parsed((), 0, complete=False), expr


def _tree(node: Any) -> Filter | None:
    """The library's filter expression as a pathsyntax.Filter, when it is of a kind _predicate evaluates."""
    kind = type(node).__name__
    if kind == "FilterExpression":
        return _tree(node.expression)
    if kind == "LogicalExpression" and node.operator in ("&&", "||"):
        left, right = _tree(node.left), _tree(node.right)
        return None if left is None or right is None else ("and" if node.operator == "&&" else "or", left, right)
    if kind == "PrefixExpression" and node.operator == "!":
        inner = _tree(node.right)
        return None if inner is None else ("not", inner)
    if kind == "RelativeFilterQuery":
        steps = _singular_steps(node.query)
        return None if steps is None else ("exists", steps)
    if kind == "ComparisonExpression" and node.operator in ("==", "!="):
        left, right = _tree_operand(node.left), _tree_operand(node.right)
        return None if left is None or right is None else (node.operator, left, right)
    return None


def _tree_operand(node: Any) -> Filter | None:
    kind = type(node).__name__
    if kind in _LITERALS:
        return ("value", node.value)
    if kind == "RelativeFilterQuery":
        steps = _singular_steps(node.query)
        return None if steps is None else ("query", steps)
    return None


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
