"""pathsyntax: every query it parses is valid RFC 9535 and finds what jsonpath-rfc9535 finds; the rest
goes to the library as before, and a query the library refuses is still a PathSyntaxError."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jsonpath_rfc9535 as rfc9535
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from llm_router.paths import JSONPath, PathSyntaxError
from llm_router.pathsyntax import parse

ROOT = Path(__file__).resolve().parent.parent

NAMES = ["a", "b", "n", "type", "text"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from([0.0, 1.0, -0.5, 1.5]),
                    st.sampled_from(["text", "a", "", "1"]))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.sampled_from(NAMES), inner, max_size=4)),
                    max_leaves=14)

# pieces of queries: valid ones, and near misses the RFC refuses (leading zeros, -0, escapes, blanks
# between segments, unknown literals, an ordering comparison, a bare literal as a test, ...)
PLAIN = [".a", ".b", ".n", ".type", ".text", "[0]", "[1]", "[-1]", "[ 0 ]", "[2 ]", "['a']", '["b"]', "[ 'n' ]",
         "[01]", "[-0]", "[1.0]", "[9007199254740992]", "[9007199254740991]", ".0", ". a", "['a\\'b']", "['\\u0061']",
         ".é", "['é']", "[a]", " .a", ".a "]
MANY = ["[*]", ".*", "[ * ]", "['a','b']", "['a' , \"n\"]", "['a']['b']", "['a',]", "[*,0]", "..a", "..[0]", "[1:]",
        "[?@]", "['a','b'].n"]
OPERANDS = ["@", "@.a", "@.n", "@['type']", "@[0]", "@.a.b", "@ .a", "@.a[*]", "@..a", "$.a", "'text'", '"a"', "'1'",
            "1", "-1", "1.0", "0", "-0", "-0.5", "1e2", "01", "true", "false", "null", "trueish", "length(@.a)",
            "'a\\\\b'"]
COMPARE = [" == ", "==", " != ", "!=", " < ", ">=", " = ", "==="]
# drawn as often as all of the above: the forms pathsyntax takes
VALID_OPERANDS = st.sampled_from(["@.a", "@.n", "@['type']", "@", "'text'", "1", "1.0", "true", "null", "-0.5"])
OPERAND = st.one_of(VALID_OPERANDS, st.sampled_from(OPERANDS))
COMPARISON = st.one_of(st.sampled_from([" == ", " != "]), st.sampled_from(COMPARE))


@st.composite
def filters(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.integers(0, 6 if depth < 2 else 1))
    if kind == 0:
        return draw(OPERAND)
    if kind == 1:
        return draw(OPERAND) + draw(COMPARISON) + draw(OPERAND)
    if kind == 2:
        return draw(st.sampled_from(["!", "! ", "!!"])) + draw(filters(depth + 1))
    if kind == 3:
        return draw(st.sampled_from(["(", "( "])) + draw(filters(depth + 1)) + draw(st.sampled_from([")", " )", ""]))
    joiner = draw(st.sampled_from([" && ", "&&", " || ", "||", " & ", " "]))
    return draw(filters(depth + 1)) + joiner + draw(filters(depth + 1))


@st.composite
def queries(draw: st.DrawFn) -> str:
    head = draw(st.lists(st.sampled_from(PLAIN), max_size=3))
    middle = draw(st.one_of(st.just(""), st.sampled_from(MANY),
                            filters().map(lambda f: "[?" + f + "]"), filters().map(lambda f: "[? " + f + " ]")))
    tail = draw(st.lists(st.sampled_from(PLAIN), max_size=2))
    return draw(st.sampled_from(["$", "$", "$", "", "@", "$ "])) + "".join([*head, middle, *tail])


def library(expr: str, doc: object) -> list[object] | None:
    """What the library finds (None: it refuses the query)."""
    try:
        compiled = rfc9535.compile(expr)
    except rfc9535.JSONPathError:
        return None
    return [node.value for node in compiled.finditer(doc)]


def has_bare_current_node(tree: object) -> bool:
    """`[?@]`: RFC 9535 says `@` always exists, but the library drops a current node that is false, 0
    or "" (jsonpath-rfc9535 1.0.1); ours follows the RFC, as it did before pathsyntax."""
    return tree == ("exists", ()) or (isinstance(tree, tuple) and any(has_bare_current_node(t) for t in tree[1:]))


# `@` tested for existence on its own (`[?@]`, `[?!@]`, `[?(@) && ...]`), wherever the query is parsed
BARE_CURRENT_NODE = re.compile(r"@\s*(?:\]|\)|&&|\|\|)")


def same(got: list[object], expected: list[object]) -> bool:
    return got == expected and [type(v) for v in got] == [type(v) for v in expected]


@settings(max_examples=1500, deadline=None)
@given(expr=queries(), docs=st.lists(JSON, min_size=1, max_size=4))
@example(expr="$.a[?@.n == 1.0].n", docs=[{"a": [{"n": 1}, {"n": True}, {"n": 1.0}]}])
@example(expr="$..a.n", docs=[{"a": {"n": 1}, "b": [{"a": {"n": 2}}]}])
@example(expr="$ [?@]", docs=[[False]]).via("CI: the library's deviation on a query pathsyntax leaves to it")
@example(expr="$[?!(@.a < @.a)]", docs=[[None]]).via("a full run: the library's str() of this filter drops its parentheses")
def test_what_pathsyntax_parses_the_library_finds_alike(expr, docs):
    parsed = parse(expr)
    expected = [library(expr, doc) for doc in docs]
    if parsed is not None and parsed.complete:
        assert expected[0] is not None, f"pathsyntax took {expr!r}, which RFC 9535 refuses"
    if expected[0] is None:  # refused: a PathSyntaxError when it comes from a user's file
        with pytest.raises(PathSyntaxError):
            JSONPath(expr)
        return
    if (parsed is not None and has_bare_current_node(parsed.select)) or BARE_CURRENT_NODE.search(expr):
        return  # the library's deviation (above), also where pathsyntax leaves the query to it ("$ [?@]")
    for trusted in (False, True):  # trusted: a query that needs the library has it parse only what follows the head
        path = JSONPath(expr, trusted=trusted)
        for doc, found in zip(docs, expected, strict=True):
            assert found is not None
            if path.singular:  # a singular path's lookups find None for a JSON null as for nothing (paths.lookups)
                found = [v for v in found if v is not None]
            assert same(path.all(doc), found), (expr, trusted, doc)
            assert path.first(doc) == (found[0] if found else None)


@pytest.mark.parametrize("expr", ["$.choices[0].message.content", "$['choices'][-1]['text']", "$.content[*].text",
                                  "$.c[?@.type == 'text' && !@.thought].text", "$.m['a', 'b']", "$.c[?(@.n != null || @.a)]"])
def test_the_forms_provider_files_use_need_no_library(expr):
    parsed = parse(expr)
    assert parsed is not None and parsed.complete


@pytest.mark.parametrize("expr", ["$..usage.total", "$.a[1:]", "$.a[?length(@.b) > 1]", "$.a[?@.n > 1]", "$['\\u0061']",
                                  "$[?@.a[*]]", "$.é"])
def test_other_queries_are_the_librarys(expr):
    parsed = parse(expr)
    assert parsed is None or not parsed.complete


def test_a_user_files_query_is_checked_by_the_library_at_load_a_trusted_one_on_first_use():
    with pytest.raises(PathSyntaxError):
        JSONPath("$.a..")
    path = JSONPath("$.usage..prompt_tokens", trusted=True)
    assert path._rest is None
    assert path.all({"usage": {"x": {"prompt_tokens": 3}}}) == [3] and path._rest is not None


def test_the_bundled_catalog_loads_without_the_library():
    code = ("import sys; from llm_router import Router; r = Router.from_dir(env={}); "
            "print(len(r.models), 'jsonpath_rfc9535' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT, timeout=120)
    count, loaded = run.stdout.split()
    assert int(count) > 20 and loaded == "False"
