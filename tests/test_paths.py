"""JSONPath: the singular fast path answers exactly as the RFC 9535 library does; every other
query goes to the library; a bad path is a PathSyntaxError."""

from __future__ import annotations

import jsonpath_rfc9535 as rfc9535
import pytest

from llm_router.paths import JSONPath, PathSyntaxError

DOCS = [
    {"choices": [{"message": {"content": "hi", "n": None}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3}},
    {"choices": [], "usage": None},
    {"choices": [{"message": None}]},
    {"choices": {"0": {"message": {"content": "dict, not a list"}}}},
    {"choices": [{"message": {"content": 0}}, {"message": {"content": False}}]},
    {"choices": "a string", "usage": {"prompt_tokens": "3"}},
    {"a": {"b": [[1, 2], [3, {"c": "deep"}]]}, "0": "zero"},
    [{"x": 1}, {"x": 2}],
    None,
    "text",
    42,
    {},
]
SINGULAR = [
    "$",
    "$.choices[0].message.content",
    "$.choices[-1].message.content",
    "$.choices[-3].message.content",
    "$.choices[1].message.content",
    "$.choices[0].message.n",
    "$.choices[0].finish_reason",
    "$.usage.prompt_tokens",
    "$['choices'][0]['message']['content']",
    "$.a.b[1][1].c",
    "$.a.b[-1][0]",
    "$[0].x",
    "$[-1].x",
    "$['0']",
    "$.missing.deeper[0]",
]


def library_first(expr, doc):
    node = rfc9535.compile(expr).find_one(doc)
    return None if node is None else node.value


@pytest.mark.parametrize("expr", SINGULAR)
def test_singular_fast_path_equals_the_library(expr):
    path = JSONPath(expr)
    assert path._steps is not None, "a singular query should take the fast path"
    for doc in DOCS:
        got = path.first(doc)
        assert got == library_first(expr, doc) and type(got) is type(library_first(expr, doc)), (expr, doc)


@pytest.mark.parametrize(
    ("expr", "doc", "expected"),
    [
        ("$..text", {"candidates": [{"content": {"parts": [{"text": "a"}, {"text": "b"}]}}]}, "a"),
        ("$.a[*].b", {"a": [{"x": 1}, {"b": 2}, {"b": 3}]}, 2),
        ("$.items[?@.kind == 'image'].url", {"items": [{"kind": "text"}, {"kind": "image", "url": "u"}]}, "u"),
        ("$.items[1:].v", {"items": [{"v": 1}, {"v": 2}]}, 2),
        ("$..missing", {"a": {"b": 1}}, None),
    ],
)
def test_non_singular_queries_go_to_the_library(expr, doc, expected):
    path = JSONPath(expr)
    assert path._steps is None
    assert path.first(doc) == expected
    assert path.first(doc) == library_first(expr, doc)


@pytest.mark.parametrize("expr", ["choices[0]", "$.choices[", "$..", "$.a[?@.b ==]", ""])
def test_invalid_path_raises_path_syntax_error(expr):
    with pytest.raises(PathSyntaxError, match="invalid JSONPath"):
        JSONPath(expr)


def test_repr_shows_the_expression():
    assert repr(JSONPath("$.a")) == "JSONPath('$.a')"
