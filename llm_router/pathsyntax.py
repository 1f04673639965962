"""The common forms of RFC 9535 JSONPath, parsed without the library (whose import compiles its lexer: 40 ms).

Provider files write a few forms: key and index chains (`$.choices[0].message.content`), then at
most one wildcard, filter or list of names (`$.content[?@.type == 'text'].text`). `parse` reads
those and gives what paths.JSONPath evaluates them with; for anything else (descendants, slices,
functions, escapes, ordering comparisons, non-ASCII names) it gives None, or for `head`, only
the chain of lookups the query begins with, and jsonpath_rfc9535 parses the query as before.

Everything accepted here is valid RFC 9535 and means what the library makes of it:
tests/test_path_syntax.py checks both on generated queries and documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

Steps = tuple[str | int, ...]
# a filter, as nested tuples: ("or" | "and", left, right), ("not", inner), ("exists", steps),
# ("==" | "!=", left, right) whose operands are ("value", literal) or ("query", steps) (relative, `@`)
Filter = tuple[Any, ...]


class Parsed(NamedTuple):
    head: Steps  # the key and index lookups the query begins with (all of it, for a singular query)
    rest: int  # where what follows the head starts in the text
    names: tuple[str, ...] | None = None  # what follows is one list of names: `['a','b']`
    select: Filter | None = None  # what follows is a wildcard (("all",)) or a filter, then `tail`
    tail: Steps = ()
    complete: bool = True  # False: what follows is none of these (the library evaluates it)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"-?(?:0|[1-9][0-9]{0,15})")
_STRING = re.compile(r"'([\x20-\x26\x28-\x5b\x5d-\x7e]*)'|\"([\x20\x21\x23-\x5b\x5d-\x7e]*)\"")  # no escapes
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,15})?")
_BLANK = re.compile(r"[ \t\n\r]*")
_MAX_INDEX = 2**53 - 1  # RFC 9535's I-JSON range
_ALL: Filter = ("all",)


def parse(expr: str) -> Parsed | None:
    """The query's plan when it begins with `$` (else None); `complete` when no library is needed."""
    if not expr.startswith("$"):
        return None
    head, at = _steps(expr, 1)
    if at == len(expr):
        return Parsed(head, at)
    names, after = _names(expr, at)
    if names is not None and after == len(expr):
        return Parsed(head, at, names=names)
    select, after = _selection(expr, at)
    if select is not None:
        tail, end = _steps(expr, after)
        if end == len(expr):
            return Parsed(head, at, select=select, tail=tail)
    return Parsed(head, at, complete=False)


def _steps(expr: str, at: int) -> tuple[Steps, int]:
    """Plain child segments from `at` on: `.name`, `[index]`, `['name']`; and where they stop."""
    steps: list[str | int] = []
    while True:
        step, after = _step(expr, at)
        if after == at:
            return tuple(steps), at
        steps.append(step)  # type: ignore[arg-type]  # found: a str or an int
        at = after


def _step(expr: str, at: int) -> tuple[str | int | None, int]:
    if expr.startswith(".", at):
        found = _NAME.match(expr, at + 1)
        return (found[0], found.end()) if found else (None, at)
    if expr.startswith("[", at):
        start = _BLANK.match(expr, at + 1).end()  # type: ignore[union-attr]  # always matches
        value, after = _index_or_name(expr, start)
        if value is not None:
            end = _BLANK.match(expr, after).end()  # type: ignore[union-attr]
            if expr.startswith("]", end):
                return value, end + 1
    return None, at


def _index_or_name(expr: str, at: int) -> tuple[str | int | None, int]:
    found = _STRING.match(expr, at)
    if found:
        return found[1] if found[1] is not None else found[2], found.end()
    found = _INDEX.match(expr, at)
    if found and found[0] != "-0" and abs(int(found[0])) <= _MAX_INDEX and not _continues_number(expr, found.end()):
        return int(found[0]), found.end()
    return None, at


def _continues_number(expr: str, at: int) -> bool:
    return at < len(expr) and (expr[at].isdigit() or expr[at] in ".eE")


def _names(expr: str, at: int) -> tuple[tuple[str, ...] | None, int]:
    """`['a', 'b']`: a bracket of two or more names (one is a plain step)."""
    if not expr.startswith("[", at):
        return None, at
    names = []
    pos = at + 1
    while True:
        pos = _BLANK.match(expr, pos).end()  # type: ignore[union-attr]
        found = _STRING.match(expr, pos)
        if not found:
            return None, at
        names.append(found[1] if found[1] is not None else found[2])
        pos = _BLANK.match(expr, found.end()).end()  # type: ignore[union-attr]
        if expr.startswith(",", pos):
            pos += 1
            continue
        if expr.startswith("]", pos) and len(names) > 1:
            return tuple(names), pos + 1
        return None, at


def _selection(expr: str, at: int) -> tuple[Filter | None, int]:
    """`[*]`, `.*` or `[?filter]`: one selector that may match many values."""
    if expr.startswith(".*", at):
        return _ALL, at + 2
    if not expr.startswith("[", at):
        return None, at
    pos = _BLANK.match(expr, at + 1).end()  # type: ignore[union-attr]
    if expr.startswith("*", pos):
        select: Filter | None = _ALL
        pos += 1
    elif expr.startswith("?", pos):
        select, pos = _Filter(expr).parse(_BLANK.match(expr, pos + 1).end())  # type: ignore[union-attr]
    else:
        return None, at
    if select is None:
        return None, at
    pos = _BLANK.match(expr, pos).end()  # type: ignore[union-attr]
    return (select, pos + 1) if expr.startswith("]", pos) else (None, at)


class _Filter:
    """`||`, `&&`, `!`, parentheses, existence tests of relative singular queries, and == / != between
    such queries and literals (strings without escapes, integers, decimals, true, false, null)."""

    def __init__(self, expr: str) -> None:
        self.expr = expr

    def blank(self, at: int) -> int:
        return _BLANK.match(self.expr, at).end()  # type: ignore[union-attr]

    def parse(self, at: int) -> tuple[Filter | None, int]:
        return self.either(at)

    def either(self, at: int) -> tuple[Filter | None, int]:
        return self.chain(at, "||", "or", self.both)

    def both(self, at: int) -> tuple[Filter | None, int]:
        return self.chain(at, "&&", "and", self.basic)

    def chain(self, at: int, token: str, tag: str,
              operand: Callable[[int], tuple[Filter | None, int]]) -> tuple[Filter | None, int]:
        """Operands joined by `token` (left to right), as (tag, left, right)."""
        left, at = operand(at)
        while left is not None:
            pos = self.blank(at)
            if not self.expr.startswith(token, pos):
                break
            right, at = operand(self.blank(pos + 2))
            left = None if right is None else (tag, left, right)
        return left, at

    def basic(self, at: int) -> tuple[Filter | None, int]:
        expr = self.expr
        if expr.startswith("!", at) and not expr.startswith("!=", at):
            inner, after = self.group_or_test(self.blank(at + 1))
            return (None if inner is None else ("not", inner)), after
        if expr.startswith("(", at):
            return self.group_or_test(at)
        left, after = self.operand(at)
        if left is None:
            return None, at
        pos = self.blank(after)
        op = expr[pos:pos + 2]
        if op in ("==", "!="):
            right, end = self.operand(self.blank(pos + 2))
            return (None if right is None else (op, left, right)), end
        if op[:1] in ("<", ">", "=", "!") or left[0] != "query":
            return None, at  # an ordering comparison (the library's), or a literal alone (not a test)
        return ("exists", left[1]), after

    def group_or_test(self, at: int) -> tuple[Filter | None, int]:
        """After `!`, or alone: `( ... )`, or an existence test (never a comparison)."""
        if self.expr.startswith("(", at):
            inner, after = self.either(self.blank(at + 1))
            end = self.blank(after)
            if inner is None or not self.expr.startswith(")", end):
                return None, at
            return inner, end + 1
        query, after = self.operand(at)
        if query is None or query[0] != "query":
            return None, at
        pos = self.blank(after)
        if self.expr[pos:pos + 1] in ("<", ">", "=") or self.expr.startswith("!=", pos):
            return None, at  # `!@.a == 1` is not RFC 9535: the library says so
        return ("exists", query[1]), after

    def operand(self, at: int) -> tuple[Filter | None, int]:
        expr = self.expr
        if expr.startswith("@", at):
            steps, after = _steps(expr, at + 1)
            if after < len(expr) and (expr[after] in ".[" or _NAME.match(expr, after)):
                return None, at  # more than plain steps follow (`@.a[*]`, `@..a`): the library's
            return ("query", steps), after
        found = _STRING.match(expr, at)
        if found:
            return ("value", found[1] if found[1] is not None else found[2]), found.end()
        for word, value in (("true", True), ("false", False), ("null", None)):
            if expr.startswith(word, at) and not _NAME.match(expr, at + len(word)):
                return ("value", value), at + len(word)
        found = _NUMBER.match(expr, at)
        if found and found[0] != "-0" and not _continues_number(expr, found.end()):
            text = found[0]
            return ("value", float(text) if "." in text else int(text)), found.end()
        return None, at
