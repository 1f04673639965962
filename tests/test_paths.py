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


# --- every match: the fast forms agree with the library -------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.floats(-2, 2, allow_nan=False),
                    st.sampled_from(["text", "tool_use", "a", ""]))
ITEM = st.dictionaries(st.sampled_from(["type", "text", "thought", "n", "sub"]),
                       st.one_of(SCALARS, st.dictionaries(st.sampled_from(["k", "type"]), SCALARS, max_size=2)),
                       max_size=4)
DOC = st.fixed_dictionaries({"c": st.one_of(st.lists(ITEM, max_size=5), st.dictionaries(st.sampled_from("xyz"), ITEM),
                                            SCALARS)})
ALL_EXPRS = [
    "$.c[*]", "$.c[*].text", "$.c[*].sub.k", "$.c[?@.type == 'text'].text", "$.c[?@.type != 'text']",
    "$.c[?@.text && !@.thought].text", "$.c[?@.thought == true].text", "$.c[?@.n == 1]", "$.c[?@.n == 1.0].n",
    "$.c[?@.n == true]", "$.c[?@.text == null]", "$.c[?@.sub.k == @.n]", "$.c[?@.missing == @.other]",
    "$.c[?@.type == 'a' || @.n != 0]", "$.c[?@]", "$.c[?@.sub.type]", "$.c[?@.n > 0]", "$.c['text','type']",
    "$..text", "$.c[0]['type','text']",
]


@settings(max_examples=150, deadline=None)
@given(doc=DOC)
def test_all_matches_agree_with_the_library(doc):
    for expr in ALL_EXPRS:
        expected = [node.value for node in rfc9535.compile(expr).finditer(doc)]
        got = JSONPath(expr).all(doc)
        assert got == expected and [type(v) for v in got] == [type(v) for v in expected], expr


def test_common_filters_and_wildcards_skip_the_library():
    for expr in ("$.c[*].text", "$.c[?@.type == 'text'].text", "$.c[?@.text && !@.thought].text", "$.m['a','b']"):
        assert JSONPath(expr)._rest is None, expr
    assert JSONPath("$.c[?@.n > 0]")._rest is not None  # an ordering comparison: the library's
