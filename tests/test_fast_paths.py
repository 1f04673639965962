"""The hot path's precomputed shortcuts answer exactly as the plain code they stand for: JSONPath
lookups written out per path, the shared head that skips a reply's usage paths, the SSE decoder's
`data:` line, the template lookup that knows at compile time no name is a mapping method, a
stream handler's heads and a whole chat reply's read in one walk, the JSON decode that calls
the scanner directly, and the call with plain text messages and no options, which checks none."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from itertools import pairwise
from types import MappingProxyType
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from llm_router._resources import catalog_dir
from llm_router.config import load_catalog
from llm_router.config.build import FRACTIONAL_COUNTS, USAGE_COUNTS
from llm_router.config.model import Operation, StreamHandler, UsagePaths
from llm_router.engine.conversation import NO_OPTIONS
from llm_router.engine.errors import NotJSON, decode_json
from llm_router.engine.extract import _sum, counts_of, text_or_none, usage_found, usage_of
from llm_router.engine.reply import StreamAssembler, Turn, extras_of, finish_turn, joined, read_reply, tool_calls_of
from llm_router.engine.sse import SSEDecoder
from llm_router.engine.stream import _Gathered, _take
from llm_router.inputs import NO_NEEDS, ROLES, check_options, needed_capabilities, plain_text
from llm_router.paths import JSONPath, common_head, head_steps, heads, lookups
from llm_router.templating import DROP, _lookup, _lookup_plain, _plain_chain, compile_structure
from llm_router.types import ToolCallDelta, Usage

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


@st.composite
def doc_and_steps(draw: st.DrawFn) -> tuple[Any, tuple[str | int, ...]]:
    """A document and steps that mostly follow it, so that the edges (the last index, one past it,
    the first from the end, one before it) are walked, and sometimes leave it."""
    doc = draw(JSON)
    steps: list[str | int] = []
    at = doc
    for _ in range(draw(st.integers(0, 4))):
        if type(at) is dict and at and draw(st.booleans()):
            step: str | int = draw(st.sampled_from(sorted(at)))
        elif type(at) is list and draw(st.booleans()):
            n = len(at)
            step = draw(st.sampled_from(sorted({0, n - 1, n, -1, -n, -n - 1})))
        else:
            step = draw(st.one_of(st.sampled_from(KEYS), st.integers(-3, 3)))
        steps.append(step)
        at = walk(at, (step,))
    return doc, tuple(steps)


@settings(max_examples=500, deadline=None)
@given(case=doc_and_steps())
@example(case=([5], (-1,))).via("the first from the end")
@example(case=([5], (-2,))).via("one before it")
@example(case=([5], (0,))).via("the first")
@example(case=([5], (1,))).via("one past the last")
@example(case=({"a": [1, {"b": None}]}, ("a", -1, "b"))).via("a null found")
def test_written_out_lookups_equal_the_plain_loop(case: tuple[Any, tuple[str | int, ...]]) -> None:
    doc, steps = case
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


@settings(max_examples=300, deadline=None)
@given(doc=JSON, fields=st.lists(st.lists(COUNT, max_size=2), min_size=len(USAGE_COUNTS), max_size=len(USAGE_COUNTS)))
@example(doc={"usage": {"a": -1, "b": 1.5, "n": [2**80]}}, fields=[["$.usage.a"], ["$.usage.b"], ["$.usage.n[0]"], [], [], [],
                                                               [], ["$.usage.b", "$.usage.a"], []]).via("counts not sane")
def test_usage_read_from_heads_found_in_one_walk_equals_every_path_read(doc: Any, fields: list[list[str]]) -> None:
    """A whole reply's usage, from what each path's head found (`usage_found`), as each path reads it."""
    counts = [tuple(JSONPath(e) for e in exprs) for exprs in fields]
    every = [p for c in counts for p in c]
    counted = tuple((i, c, name not in FRACTIONAL_COUNTS) for i, (name, c) in enumerate(zip(USAGE_COUNTS, counts, strict=True))
                    if c)
    paths = UsagePaths(*counts, head=common_head(every), counted=counted)
    found = heads([head_steps(p) for p in every])(doc)
    assert usage_found(paths, found) == Usage(*(_sum(c, doc, name not in FRACTIONAL_COUNTS)
                                                for name, c in zip(USAGE_COUNTS, counts, strict=True)))


CONTENT = st.one_of(st.none(), st.just("hi"), st.lists(st.one_of(
    st.just({"type": "text", "text": "hi"}), st.just({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}})),
    max_size=2))
TOOL_CALLS = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
MESSAGES = st.lists(st.builds(lambda role, content, calls: {"role": role, "content": content} | (
    {"tool_calls": TOOL_CALLS} if calls else {}) | ({"tool_call_id": "c1"} if role == "tool" else {}),
    st.sampled_from(sorted(ROLES)), CONTENT, st.booleans()), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(messages=st.one_of(st.none(), MESSAGES))
def test_plain_text_messages_need_no_options_and_no_capability(messages: list[dict[str, Any]] | None) -> None:
    """Where `plain_text` lets a call skip check_options and needed_capabilities, they would find nothing."""
    if plain_text(messages):
        assert check_options(messages, None, None, None, None) is NO_OPTIONS
        assert needed_capabilities(messages, NO_OPTIONS) is NO_NEEDS
        assert check_options(messages, None, None, None, None, False) is NO_OPTIONS


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


LEAVES = st.sampled_from(["{{ model }}", "{{ a }}", "{{ items }}", "{{ a.name }}", "{{ a or 1 }}", "x", None, 0, {"n": "{{ a }}"},
                          ["{{ a }}"]])


@settings(max_examples=300, deadline=None)
@given(template=st.dictionaries(st.sampled_from(["k1", "k2", "k3", "k4"]), LEAVES, min_size=1, max_size=4),
       ctx=st.dictionaries(NAMES, CTX, max_size=4), as_proxy=st.booleans())
def test_a_dict_template_renders_as_its_leaves_rendered_one_by_one(template: dict[str, Any], ctx: dict[str, Any],
                                                                   as_proxy: bool) -> None:
    """A dict template looks its `{{ name }}` leaves up itself (a constant null stays in it)."""
    names = frozenset(["model", "a", "items", "name", "upstream", "get", "keys", "__class__"])
    given_ctx: Any = MappingProxyType(ctx) if as_proxy else ctx
    leaves = {k: compile_structure(v, names).render(given_ctx) for k, v in template.items()}
    expected = {k: v for k, v in leaves.items() if v is not DROP}
    assert compile_structure(template, names).render(given_ctx) == (expected or DROP)


# --- a stream handler's heads, read in one walk ---------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(doc=JSON, paths=st.lists(st.one_of(st.none(), PATHS.map(lambda ps: ps[0])), max_size=6))
def test_heads_read_in_one_walk_equal_each_head_read_alone(doc: Any, paths: list[JSONPath | None]) -> None:
    got = heads([head_steps(p) if p is not None else None for p in paths])(doc)
    assert len(got) == len(paths)
    for value, path in zip(got, paths, strict=True):
        if path is None:
            assert value is None
            continue
        expected = lookups(head_steps(path))(doc)
        assert value is expected or (value == expected and type(value) is type(expected))
        if value is None:
            assert path.all(doc) == []
        if path.singular:
            assert value is path.first(doc) or value == path.first(doc)


def _handlers() -> list[StreamHandler]:
    catalog, _ = load_catalog([catalog_dir()], {})
    found = []
    for provider in catalog.providers.values():
        for operation in provider.operations.values():
            spec = operation.stream
            if spec is not None:
                found += [h for h in (spec.handler, *spec.on.values()) if h is not None]
    return found


HANDLERS = _handlers()
TEXT = st.one_of(st.none(), st.sampled_from(["", "a", "tok "]), st.integers(0, 2), st.lists(st.just("x"), max_size=1))
CALL = st.fixed_dictionaries({}, optional={"index": st.integers(0, 1), "id": TEXT, "type": st.just("function"),
                                           "function": st.fixed_dictionaries({}, optional={"name": TEXT, "arguments": TEXT})})
COUNTS = st.one_of(st.none(), st.fixed_dictionaries({}, optional={k: st.integers(0, 9) for k in (
    "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "promptTokenCount", "candidatesTokenCount")}))
OPENAI = st.fixed_dictionaries({}, optional={
    "choices": st.lists(st.fixed_dictionaries({}, optional={
        "delta": st.fixed_dictionaries({}, optional={"content": TEXT, "reasoning_content": TEXT, "reasoning": TEXT,
                                                     "tool_calls": st.lists(CALL, max_size=2)}),
        "finish_reason": TEXT}), max_size=2),
    "usage": COUNTS})
ANTHROPIC = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["content_block_delta", "message_delta", "content_block_start"]), "index": st.integers(0, 1),
    "delta": st.fixed_dictionaries({}, optional={"type": st.sampled_from(["text_delta", "input_json_delta", "thinking_delta"]),
                                                 "text": TEXT, "partial_json": TEXT, "thinking": TEXT, "stop_reason": TEXT}),
    "content_block": st.fixed_dictionaries({}, optional={"type": st.just("tool_use"), "id": TEXT, "name": TEXT}),
    "message": st.fixed_dictionaries({}, optional={"usage": COUNTS}), "usage": COUNTS})
GEMINI = st.fixed_dictionaries({}, optional={
    "candidates": st.lists(st.fixed_dictionaries({}, optional={
        "content": st.fixed_dictionaries({}, optional={"parts": st.lists(st.fixed_dictionaries({}, optional={
            "text": TEXT, "thought": st.booleans(), "functionCall": st.fixed_dictionaries({}, optional={"name": TEXT})}),
            max_size=2)}),
        "finishReason": TEXT}), max_size=1),
    "usageMetadata": COUNTS})
EVENT = st.one_of(OPENAI, ANTHROPIC, GEMINI, JSON)


def _event_read_path_by_path(handler: StreamHandler, data: Any) -> tuple[Any, ...]:
    """The event as read before the heads: every part through its own path."""
    assembler = StreamAssembler()
    deltas = assembler.tool_fragments(handler.tool_calls, data) if handler.tool_calls is not None else []
    return (joined(handler.delta, data), text_or_none(handler.finish_reason, data),
            counts_of(handler.usage, data) if handler.usage is not None else None, deltas,
            joined(handler.reasoning, data) if handler.reasoning is not None else None)


@settings(max_examples=1000, deadline=None)
@given(data=EVENT, which=st.integers(0, len(HANDLERS) - 1))
def test_a_bundled_handler_reads_an_event_as_path_by_path(data: Any, which: int) -> None:
    handler = HANDLERS[which]
    assembler, gathered = StreamAssembler(), _Gathered(1, None)
    _take(handler, data, assembler, gathered)
    got = ("".join(gathered.texts) or None, assembler.native_finish_reason, gathered.usage, _named(gathered.tools),
           "".join(gathered.thoughts) or None)
    delta, finish_reason, usage, deltas, reasoning = _event_read_path_by_path(handler, data)
    assert got == (delta or None, finish_reason or None, usage, _named(deltas), reasoning or None)


def _named(deltas: list[ToolCallDelta]) -> list[ToolCallDelta]:
    """The deltas with the ids the assembler makes up (for a call that came without one) made alike."""
    return [replace(d, id="call_made_up") if d.id and re.fullmatch(r"call_[0-9a-f]{24}", d.id) else d for d in deltas]


def _chat_operations() -> list[Operation]:
    catalog, _ = load_catalog([catalog_dir()], {})
    found = {}
    for provider in catalog.providers.values():
        operation = provider.operations.get("chat")
        if operation is not None and operation.response is not None:
            found[repr(operation.response)] = operation  # the providers that extend one base share its reply
    return list(found.values())


CHAT_OPERATIONS = _chat_operations()
PART = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["text", "thinking", "tool_use", "redacted_thinking"]), "text": TEXT, "thinking": TEXT,
    "id": TEXT, "name": TEXT, "input": st.dictionaries(st.sampled_from(["a", "b"]), TEXT, max_size=1),
    "functionCall": st.fixed_dictionaries({}, optional={"name": TEXT, "args": st.dictionaries(st.just("a"), TEXT)}),
    "thought": st.booleans(), "signature": TEXT, "thoughtSignature": TEXT})
MESSAGE = st.fixed_dictionaries({}, optional={
    "content": st.one_of(TEXT, st.lists(PART, max_size=2)), "reasoning_content": TEXT, "reasoning": TEXT,
    "tool_calls": st.lists(CALL, max_size=2), "annotations": st.lists(st.just({"type": "url_citation"}), max_size=1)})
REPLY = st.one_of(
    st.fixed_dictionaries({}, optional={"id": TEXT, "usage": COUNTS, "choices": st.lists(st.fixed_dictionaries(
        {}, optional={"message": MESSAGE, "finish_reason": TEXT}), max_size=2)}),
    st.fixed_dictionaries({}, optional={"id": TEXT, "usage": COUNTS, "content": st.lists(PART, max_size=3),
                                        "stop_reason": TEXT, "output": st.lists(MESSAGE, max_size=2)}),
    st.fixed_dictionaries({}, optional={"usageMetadata": COUNTS, "responseId": TEXT, "candidates": st.lists(
        st.fixed_dictionaries({}, optional={"content": st.fixed_dictionaries({}, optional={"parts": st.lists(PART, max_size=2)}),
                                            "finishReason": TEXT}), max_size=1)}),
    JSON)


def _reply_read_path_by_path(operation: Operation, data: Any) -> tuple[Turn, Usage, str | None]:
    """A whole reply as read before the heads: every part through its own path."""
    spec = operation.response
    assert spec is not None
    turn = Turn(content=joined(spec.content, data), tool_calls=tool_calls_of(spec.tool_calls, data),
                reasoning=joined(spec.reasoning, data), state=spec.state.first(data) if spec.state is not None else None,
                extra=extras_of(spec.extra, data), native_finish_reason=text_or_none(spec.finish_reason, data))
    return finish_turn(turn, operation, None), usage_of(spec.usage, data), text_or_none(spec.id, data)


@settings(max_examples=1000, deadline=None)
@given(data=REPLY, which=st.integers(0, len(CHAT_OPERATIONS) - 1))
def test_a_bundled_chat_reply_reads_as_path_by_path(data: Any, which: int) -> None:
    operation = CHAT_OPERATIONS[which]
    assert operation.response is not None
    turn, usage, reply_id = read_reply(operation.response, operation, data, None)
    expected_turn, expected_usage, expected_id = _reply_read_path_by_path(operation, data)
    for t in (turn, expected_turn):
        t.tool_calls = [replace(c, id="call_made_up") if re.fullmatch(r"call_[0-9a-f]{24}", c.id) else c for c in t.tool_calls]
        if t.message is not None and "tool_calls" in t.message:
            t.message["tool_calls"] = [c.to_message() for c in t.tool_calls]
    assert (turn, usage, reply_id) == (expected_turn, expected_usage, expected_id)


JSON_TEXT = st.one_of(
    JSON.map(json.dumps),
    st.tuples(st.sampled_from(["", " ", "\n", "\t", "\r\n ", "\ufeff", "\x0b"]), JSON.map(json.dumps),
              st.sampled_from(["", " ", "\n\n", "x", " 1", "}", ",", "\x0c"])).map("".join),
    st.text(alphabet='{}[]":,0123456789 .-eE\ntrufalsn\\', max_size=12),
)


def _loaded(text: str) -> Any:
    try:
        return json.loads(text[1:] if text[:1] == "\ufeff" else text)
    except ValueError:
        return NotJSON


@settings(max_examples=400, deadline=None)
@given(text=JSON_TEXT)
@example(text=" [1] ").via("whitespace around")
@example(text="[1] [2]").via("a second value")
@example(text="\ufeff{}").via("a BOM")
@example(text="").via("nothing")
def test_decoding_with_the_scanner_equals_json_loads(text: str) -> None:
    """decode_json calls the C scanner directly; it accepts and refuses what json.loads does."""
    expected = _loaded(text)
    for given_as in (text, text.encode()):
        try:
            got = decode_json(given_as)
        except NotJSON:
            got = NotJSON
        same = got == expected or (isinstance(got, float) and isinstance(expected, float) and math.isnan(got) and math.isnan(expected))
        assert same, (text, got, expected)
