"""RFC 9535 JSONPath, compiled once at load (jsonpath-rfc9535 does the parsing).

Most paths in provider files are singular (`$.choices[0].message.content`); those are turned
into a plain chain of key and index lookups, a fraction of a microsecond per call. Any other
query (filters, wildcards, descendants) is evaluated by the library.
"""

from __future__ import annotations

from typing import Any

import jsonpath_rfc9535 as rfc9535


class PathSyntaxError(ValueError):
    pass


class JSONPath:
    """A compiled query. `first(data)` gives the first match or None."""

    __slots__ = ("expr", "_query", "_steps")

    def __init__(self, expr: str) -> None:
        self.expr = expr
        try:
            self._query = rfc9535.compile(expr)
        except rfc9535.JSONPathError as exc:
            raise PathSyntaxError(f"invalid JSONPath {expr!r}: {exc}") from None
        self._steps = _singular_steps(self._query)

    def first(self, data: Any) -> Any:
        steps = self._steps
        if steps is None:
            node = self._query.find_one(data)
            return None if node is None else node.value
        for step in steps:
            if isinstance(step, str):
                if type(data) is not dict:
                    return None
                data = data.get(step)
                if data is None:
                    return None
            else:
                if type(data) is not list or not -len(data) <= step < len(data):
                    return None
                data = data[step]
        return data

    def all(self, data: Any) -> list[Any]:
        """Every match, in document order (a singular path gives at most one)."""
        if self._steps is not None:
            value = self.first(data)
            return [] if value is None else [value]
        return [node.value for node in self._query.finditer(data)]

    def __repr__(self) -> str:
        return f"JSONPath({self.expr!r})"


def _singular_steps(query: Any) -> tuple[str | int, ...] | None:
    if not query.singular_query():
        return None
    steps: list[str | int] = []
    for segment in query.segments:
        (selector,) = segment.selectors
        name = getattr(selector, "name", None)
        index = getattr(selector, "index", None)
        if isinstance(name, str):
            steps.append(name)
        elif isinstance(index, int):
            steps.append(index)
        else:
            return None
    return tuple(steps)
