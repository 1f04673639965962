"""The hot path's precomputed shortcuts answer exactly as the plain code they stand for: JSONPath
lookups written out per path, the shared head that skips a reply's usage paths, the SSE decoder's
`data:` line, and the template lookup that knows at compile time no name is a mapping method."""

from __future__ import annotations

from itertools import pairwise
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llm_router.config.model import UsagePaths
from llm_router.engine.extract import _sum, counts_of, usage_of
from llm_router.engine.sse import SSEDecoder
from llm_router.paths import JSONPath, common_head, lookups
from llm_router.templating import _lookup, _lookup_plain, _plain_chain
from llm_router.types import Usage

KEYS = ["a", "b", "usage", "n", "0", "items"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2, allow_nan=False), st.sampled_from(["x", ""]))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
                    max_leaves=12)
STEPS = st.lists(st.one_of(st.sampled_from(KEYS), st.integers(-3, 3)), max_size=4).map(tuple)


def walk(data: Any, steps: tuple[str | int, ...]) -> Any:
    """The plain loop `lookups` writes out."""
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


@settings(max_examples=300, deadline=None)
@given(doc=JSON, steps=STEPS)
def test_written_out_lookups_equal_the_plain_loop(doc: Any, steps: tuple[str | int, ...]) -> None:
    got, expected = lookups(steps)(doc), walk(doc, steps)
    assert got is expected or (got == expected and type(got) is type(expected))


def _expr(steps: tuple[str | int, ...], tail: str) -> str:
    return "$" + "".join(f"[{s}]" if isinstance(s, int) else f"['{s}']" for s in steps) + tail


PATHS = st.lists(st.tuples(STEPS, st.sampled_from(["", "[*]", "['a','n']", "..n", "[?@.n == 1].a"])), min_size=1,
                 max_size=4).map(lambda items: [JSONPath(_expr(steps, tail)) for steps, tail in items])


@settings(max_examples=300, deadline=None)
@given(doc=JSON, paths=PATHS)
def test_where_the_shared_head_finds_nothing_no_path_finds_anything(doc: Any, paths: list[JSONPath]) -> None:
    head = common_head(paths)
    if head is not None and head(doc) is None:
        assert all(p.all(doc) == [] and p.first(doc) is None for p in paths)


COUNT = st.sampled_from(["$.usage.a", "$.usage.b", "$.usage.n[0]", "$.usage", "$.n", "$.usage.items[*].n"])


@settings(max_examples=300, deadline=None)
@given(doc=JSON, fields=st.lists(st.lists(COUNT, max_size=2), min_size=5, max_size=5))
def test_usage_read_through_the_shared_head_equals_every_path_read(doc: Any, fields: list[list[str]]) -> None:
    counts = [tuple(JSONPath(e) for e in exprs) for exprs in fields]
    paths = UsagePaths(*counts, head=common_head([p for c in counts for p in c]))
    expected = Usage(*(_sum(c, doc) for c in counts))
    assert usage_of(paths, doc) == expected
    reported = any(getattr(expected, name) is not None for name in Usage.__slots__)
    assert counts_of(paths, doc) == (expected if reported else None)


# --- SSE: any split of the bytes gives the events the spec's plain line-by-line reading gives -------

LINES = st.sampled_from([b"data: x", b"data:y", b"data", b"data: ", b"data:  two spaces", b"event: e", b"event:e",
                         b"event", b": keep-alive", b":", b"", b"", b"id: 1", b"retry: 5", b"data: \xc3\xa9",
                         b"data: \xff", b"datum: no", b"Data: no", b"data: [DONE]", b"data: a:b"])
ENDINGS = st.sampled_from([b"\n", b"\r\n", b"\r"])


def reference_events(body: bytes) -> list[tuple[str, str]]:
    """WHATWG event-stream parsing of a whole body: every field line through the generic rule."""
    lines = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    lines.pop()  # an unterminated last line is not a line yet
    events, name, data, pending = [], "", [], False
    for line in lines:
        if not line:
            if pending:
                events.append((name or "message", "\n".join(data)))
                name, data, pending = "", [], False
            continue
        if line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if field == b"data":
            data.append(value.decode("utf-8", "replace"))
            pending = True
        elif field == b"event":
            name = value.decode("utf-8", "replace")
            pending = True
    return events


@settings(max_examples=400, deadline=None)
@given(lines=st.lists(st.tuples(LINES, ENDINGS), max_size=12), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_the_sse_decoder_reads_any_split_as_the_whole(lines: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
    body = b"".join(line + end for line, end in lines)
    if body.endswith(b"\r"):  # a final CR may be the first half of a CRLF: the decoder waits for the next byte
        body += b"\n"
    points = sorted({min(c, len(body)) for c in cuts} | {0, len(body)})
    decoder, events = SSEDecoder(), []
    for start, end in pairwise(points):
        events += decoder.feed(body[start:end])
    assert events == reference_events(body)


# --- templates: a chain known at compile time to hold no mapping method --------------------------

NAMES = st.sampled_from(["model", "upstream", "name", "items", "get", "keys", "a", "__class__"])
CTX = st.recursive(st.one_of(st.none(), st.integers(0, 3), st.just("s")),
                   lambda inner: st.one_of(st.dictionaries(NAMES, inner, max_size=3),
                                           st.dictionaries(NAMES, inner, max_size=3).map(MappingProxyType),
                                           st.lists(inner, max_size=2)),
                   max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(ctx=st.dictionaries(NAMES, CTX, max_size=4), chain=st.lists(NAMES, min_size=1, max_size=3).map(tuple))
def test_the_plain_template_lookup_equals_the_checked_one(ctx: dict[str, Any], chain: tuple[str, ...]) -> None:
    if _plain_chain(chain):
        assert _lookup_plain(ctx, chain) is _lookup(ctx, chain)
    else:
        assert any(name in ("items", "get", "keys", "__class__") for name in chain)
