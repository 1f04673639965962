"""Config mutation fuzzing and malformed calls: a broken config is a ConfigurationError with a
file and a line (never another exception), and a malformed call is an InvalidRequestError
raised before anything is sent."""

from __future__ import annotations

import asyncio
import contextlib
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mockserver import MockServer, Reply, openai_chat_reply

from llm_router import Router
from llm_router.errors import ConfigurationError, InvalidRequestError, RouterError

PROVIDER_BASE = """\
name: fuzzbase
abstract: true
operations:
  chat:
    path: /chat/completions
    body:
      model: "{{ model.upstream }}"
      messages: "{{ messages }}"
    params: merge
    response:
      content: $.choices[0].message.content
      usage:
        input_tokens: $.usage.prompt_tokens
        output_tokens: $.usage.completion_tokens
    stream:
      body: {stream: true}
      done: "[DONE]"
      handler:
        delta: $.choices[0].delta.content
        finish_reason: $.choices[0].finish_reason
"""

PROVIDER_CHAT = """\
extends: fuzzbase
name: fuzzchat
base_url: http://127.0.0.1:9/v1
auth: {header: Authorization, scheme: Bearer, env: FUZZ_KEY}
hosts: [127.0.0.1]
timeouts: {connect_s: 1, read_s: 2, total_s: 3}
operations:
  chat:
    path: /chat/completions
    headers:
      x-user: "{{ params.user | default('anon') }}"
    response:
      content: $.choices[0].message.content
      finish_reason: $.choices[0].finish_reason
errors:
  message: $.error.message
  retry:
    max_attempts: 3
    backoff: {initial_s: 0.01, max_s: 0.02}
"""

PROVIDER_POLL = """\
name: fuzzpoll
base_url: http://127.0.0.1:9/v1
auth: {header: x-key, env: FUZZ_KEY}
hosts: [127.0.0.1]
operations:
  image:
    path: "/{{ model.upstream }}"
    body:
      prompt: "{{ prompt }}"
      width: "{{ params.width | default(1024) }}"
    params: merge
    poll:
      url: {from: $.polling_url}
      interval_s: 0.2
      deadline_s: 5
      max_polls: 20
      status: $.status
      pending: [Pending]
      done: [Ready]
      failed: [Error]
      message: $.details
      result: {content: $.result.sample, content_kind: url}
errors:
  message: $.detail
"""

MODELS = """\
models:
  fuzz-chat:
    provider: fuzzchat
    upstream: fc-1
    pricing: {input_per_million: 1.0, output_per_million: 2.0}
    limits: {rpm: 100}
    params: [temperature, user]
    fallbacks: [fuzz-chat-2]
  fuzz-chat-2:
    provider: fuzzchat
    pricing: unknown
  fuzz-image:
    provider: fuzzpoll
    kind: image
    pricing: {per_image: 0.04}
    params: [width]
"""

FILES = {"providers.d/fuzzbase.yaml": PROVIDER_BASE, "providers.d/fuzzchat.yaml": PROVIDER_CHAT, "providers.d/fuzzpoll.yaml": PROVIDER_POLL, "models.d/fuzz.yaml": MODELS}
ENV = {"FUZZ_KEY": "fz-secret-0000"}

BAD_PATHS = ["$..[", "$.a[?(@.b", "not a path", "$[", "$.x[0", "choices[0]", "$$", ""]
BAD_TEMPLATES = ["{{ params.x(", "{% if %}", "{{ }}", "{{ params.w | nofilter }}", "{{ undefined_var }}",
                 "{{ model.upstream ", "{% for x in %}{% endfor %}", "{{ 1 +* 2 }}"]
ODD_VALUES: list[Any] = [None, 0, -1, 3.5, True, "", "text", [], [1, "a"], {}, {"k": "v"},
                         math.nan, math.inf, -math.inf, 1e308, -1e308, 2**80, "{{ 'a' * 10**9 }}", "../x"]


def _walk(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into the data (not the root)."""
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            out.append((*path, k))
            out += _walk(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.append((*path, i))
            out += _walk(v, (*path, i))
    return out


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


def _mutate(text: str, kind: str, index: int, choice: int) -> str:
    """One mutation of one file; `index` and `choice` pick where and what."""
    if kind == "truncate":
        return text[: index % (len(text) + 1)]
    if kind == "corrupt_char":
        i = index % len(text)
        junk = "\t:{}[]&*!|>'\"%@`#-?,\x00\x85\u2028"[choice % 22]
        return text[:i] + junk + text[i + 1:]
    data = yaml.safe_load(text)
    paths = _walk(data)
    if kind in ("swap_jsonpath", "jinja_error"):
        wanted = "$" if kind == "swap_jsonpath" else "{{"
        leaves = [p for p in paths if isinstance(_parent(data, p)[p[-1]], str) and _parent(data, p)[p[-1]].startswith(wanted)]
        if not leaves:
            return text
        path = leaves[index % len(leaves)]
        garbage = BAD_PATHS if kind == "swap_jsonpath" else BAD_TEMPLATES
        _parent(data, path)[path[-1]] = garbage[choice % len(garbage)]
    elif paths:
        path = paths[index % len(paths)]
        parent = _parent(data, path)
        if kind == "delete_key":
            del parent[path[-1]]
        elif kind == "change_type":
            parent[path[-1]] = ODD_VALUES[choice % len(ODD_VALUES)]
        elif kind == "unknown_key":
            target = parent[path[-1]] if isinstance(parent[path[-1]], dict) else parent
            if isinstance(target, dict):
                target[f"unexpected_{choice % 7}"] = choice
            else:
                data[f"unexpected_{choice % 7}"] = choice
    return yaml.safe_dump(data, sort_keys=False)


MUTATIONS = ["delete_key", "change_type", "unknown_key", "corrupt_char", "truncate", "swap_jsonpath", "jinja_error"]


def _load(files: dict[str, str | bytes]) -> Router | None:
    with tempfile.TemporaryDirectory() as tmp:
        for rel, text in files.items():
            path = Path(tmp) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        try:
            return Router.from_dir(tmp, env=ENV)  # self-contained: the fuzz does not depend on the bundled catalog
        except ConfigurationError as exc:
            assert exc.problems, "a ConfigurationError must list its problems"
            for problem in exc.problems:
                assert problem.file, f"problem without a file: {problem}"
                if not problem.message.startswith("cannot read file"):
                    assert problem.line is not None, f"problem without a line: {problem}"
            return None


def test_the_unmutated_fuzz_config_loads() -> None:
    router = _load(dict(FILES))
    assert router is not None
    assert {"fuzz-chat", "fuzz-chat-2", "fuzz-image"} <= set(router.models)


@settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target=st.sampled_from(sorted(FILES)),
    steps=st.lists(
        st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 10_000), st.integers(0, 1_000)), min_size=1, max_size=3
    ),
)
@example(target="providers.d/fuzzbase.yaml", steps=[("change_type", 656, 169)])  # a template bomb, then the path: found by the fuzz
def test_mutated_config_loads_or_raises_configuration_error_with_file_and_line(
    target: str, steps: list[tuple[str, int, int]]
) -> None:
    files: dict[str, str | bytes] = dict(FILES)
    text = FILES[target]
    for kind, index, choice in steps:
        try:
            text = _mutate(text, kind, index, choice)
        except yaml.YAMLError:
            break  # an earlier text mutation left unparseable YAML: load that as it is
        if not text:
            break
    files[target] = text
    router = _load(files)  # any exception other than ConfigurationError fails the test
    for model in ("fuzz-chat", "fuzz-image") if router is not None else ():
        if model in router.models:  # a config that loads renders a request, or refuses the call with a typed error
            with contextlib.suppress(RouterError):
                router.render(model, messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(
    "blob",
    [b"\xff\xfe\x00broken", b"name: x\n\x80\x81\n", b"", b"\x00\x00\x00", b"- a\n- b\n", b"name: [unclosed\n"],
    ids=["bom-garbage", "invalid-utf8", "empty", "nul-bytes", "a-list", "unclosed-flow"],
)
def test_unreadable_or_non_mapping_provider_file_is_a_configuration_error(blob: bytes) -> None:
    assert _load({**FILES, "providers.d/fuzzchat.yaml": blob}) is None


# --- malformed calls: refused before anything is sent --------------------------------------------------

SECRET = "sk-fuzz-never-sent-0001"


@pytest.fixture
def server():
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        yield srv


@pytest.fixture
async def router(server):
    r = Router.from_dir(env={"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": server.url + "/v1"})
    yield r
    await r.aclose()


HUGE = "x" * 11_000_000


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"messages": "hello"}, "messages must be a non-empty list"),
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": [["user", "hi"]]}, "messages[0] must be a dict"),
        ({"messages": [{"content": "hi"}]}, "messages[0] must be a dict with a string 'role'"),
        ({"messages": [{"role": 1, "content": "hi"}]}, "string 'role'"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "unknown role 'wizard'"),
        ({"messages": [{"role": "user", "content": 42}]}, "content must be a string or a list"),
        ({"messages": [{"role": "user", "content": "bad \ud800 surrogate"}]}, "not valid UTF-8"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]}, "not valid UTF-8"),
        ({"messages": [{"role": "user", "content": HUGE}]}, "more than 10,000,000 characters"),
        ({"prompt": 123}, "prompt must be a string"),
        ({"prompt": "lone \udc80"}, "not valid UTF-8"),
        ({}, "give messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": object()}, "param 'temperature' is not JSON data (got an object)"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": {1, 2}}, "param 'temperature' is not JSON data (got a set)"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": "\ud800"}, "param 'temperature' is not valid UTF-8"),
    ],
    ids=[
        "messages-a-string", "messages-empty", "message-a-list", "message-without-role", "role-not-a-string",
        "unknown-role", "content-an-int", "lone-surrogate", "lone-surrogate-in-part", "eleven-million-chars",
        "prompt-an-int", "prompt-lone-surrogate", "nothing-given", "param-an-object", "param-a-set",
        "param-lone-surrogate",
    ],
)
async def test_malformed_call_raises_invalid_request_before_sending(router, server, kwargs, fragment) -> None:
    model = "openai/gpt-test"  # ad-hoc model: every param is passed through, so only the type check applies
    async with asyncio.timeout(10):
        with pytest.raises(InvalidRequestError) as info:
            await router.query(model, **kwargs)
    assert isinstance(info.value, RouterError)
    assert fragment in str(info.value)
    assert server.count() == 0


async def test_malformed_stream_call_raises_before_sending(router, server) -> None:
    with pytest.raises(InvalidRequestError, match="unknown role"):
        async for _ in router.stream("openai/gpt-test", messages=[{"role": "robot", "content": "hi"}]):
            pass
    assert server.count() == 0


def test_malformed_render_raises_invalid_request(router, server) -> None:
    with pytest.raises(InvalidRequestError, match="not valid UTF-8"):
        router.render("openai/gpt-test", messages=[{"role": "user", "content": "\ud83d"}])
    assert server.count() == 0


@pytest.mark.parametrize("key", ["operations", "auth", "hosts", "timeouts", "errors", "base_url", "name", "extends"])
def test_a_null_value_in_a_provider_that_extends_nothing_is_a_configuration_error_or_loads(key: str) -> None:
    """`null` deletes a key only when merging over a parent; in a file that extends nothing it is a plain error
    (found by the fuzz: `extends: null` + `operations: null` crashed the build)."""
    data = yaml.safe_load(PROVIDER_CHAT)
    data["extends"] = None
    data[key] = None
    _load({**FILES, "providers.d/fuzzchat.yaml": yaml.safe_dump(data, sort_keys=False)})


@pytest.mark.parametrize("base_url", ["http://[127.0.0.1:9/v1", "http://[::1/v1", "http://exa mple.com/v1"])
def test_a_malformed_base_url_is_a_configuration_error_not_a_value_error(base_url: str) -> None:
    """Found by the fuzz (a corrupted character in base_url): urlsplit's ValueError escaped the load."""
    assert _load({**FILES, "providers.d/fuzzchat.yaml": PROVIDER_CHAT.replace("http://127.0.0.1:9/v1", base_url)}) is None


def test_a_malformed_base_url_override_in_env_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_BASE_URL"):
        Router.from_dir(env={"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": "http://[bad/v1"})
