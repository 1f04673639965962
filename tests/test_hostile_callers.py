"""Hostile and careless callers: bad input fails before anything is sent, with an
InvalidRequestError naming the field. A value a template places in a URL never changes the URL's
structure; a param placed in the path or query is not also merged into the body; a body is always
valid JSON; a provider's own content-type is honoured."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import OrderedDict
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mockserver import MockServer, Reply, openai_chat_reply

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.errors import ConfigurationError, InvalidRequestError, ProviderError, RouterError
from llm_router.inputs import MAX_DEPTH

KEY = "sk-hostile-caller-0001"
HI = [{"role": "user", "content": "hi"}]

# A provider that places params in its path and its query, and merges the others into the body.
PLACING = """\
extends: openai-compatible
name: placing
base_url: http://127.0.0.1:9/v1
base_url_env: PLACING_BASE_URL
auth: {header: Authorization, scheme: Bearer, env: PLACING_KEY}
hosts: [127.0.0.1]
operations:
  chat:
    path: "/deployments/{{ params.deployment }}/chat"
    query: {api-version: "{{ params.api_version }}"}
    params: merge
  image:
    path: "/images/{{ model.upstream }}"
    body: {prompt: "{{ prompt }}"}
    params: merge
    poll:
      url: {template: "/jobs?id={{ submit.id }}"}
      interval_s: 0.05
      deadline_s: 5
      status: $.status
      pending: [Pending]
      done: [Ready]
      result: {content: $.url, content_kind: url}
"""
MODELS = """\
models:
  placed:
    provider: placing
    pricing: unknown
    params: [deployment, api_version, temperature, weird]
  painter:
    provider: placing
    kind: image
    upstream: flux
    pricing: unknown
"""


@pytest.fixture
def srv():
    with MockServer() as server:
        server.route("*", re.compile(r".*"), Reply.json(openai_chat_reply("ok")))
        yield server


@pytest.fixture
async def router(srv, write_config):
    cfg = write_config({"providers.d/placing.yaml": PLACING, "models.d/m.yaml": MODELS})
    env = {"PLACING_KEY": KEY, "PLACING_BASE_URL": srv.url + "/v1", "OPENAI_API_KEY": KEY,
           "OPENAI_BASE_URL": srv.url + "/v1", "BFL_API_KEY": KEY, "BFL_BASE_URL": srv.url + "/v1",
           "GEMINI_API_KEY": KEY, "GEMINI_BASE_URL": srv.url + "/v1beta", "ANTHROPIC_API_KEY": KEY,
           "ANTHROPIC_BASE_URL": srv.url + "/v1"}
    async with Router.from_dir(catalog_dir(), cfg, env=env) as r:
        yield r


async def _refused(router: Router, srv: MockServer, fragment: str, model: str = "openai/gpt-x", **kwargs: Any) -> str:
    kwargs.setdefault("messages", HI) if "prompt" not in kwargs else None
    with pytest.raises(InvalidRequestError) as info:
        async with asyncio.timeout(10):
            await router.query(model, **kwargs)
    assert fragment in str(info.value), str(info.value)
    assert srv.count() == 0, [r.path for r in srv.requests]
    return str(info.value)


# --- values placed in a URL --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bfl/../../admin", "bfl/..", "bfl/.", "bfl/a//b", "bfl/a\\b", "bfl/x/../../y",
                                  "bfl/a%2Fb", "bfl/%2e%2e", "gemini/../../v1/files", "gemini/a/"])
async def test_a_model_name_that_would_move_the_path_is_refused_before_sending(router, srv, name: str) -> None:
    call = {"prompt": "a cat"} if name.startswith("bfl") else {"messages": HI}
    message = await _refused(router, srv, "cannot be placed in a URL", name, **call)
    assert "model.upstream" in message or "path" in message


@pytest.mark.parametrize(("upstream", "path"), [
    ("x?y=1", "/v1/x%3Fy%3D1"), ("a#b", "/v1/a%23b"), ("a b", "/v1/a%20b"), ("é", "/v1/%C3%A9"),
    ("%41", "/v1/%2541"), ("a;b&c", "/v1/a%3Bb%26c"), ("flux:1@2", "/v1/flux:1@2"), ("..x", "/v1/..x"),
])
async def test_other_characters_in_a_model_name_are_percent_encoded_into_one_path_segment(router, srv, upstream, path) -> None:
    srv.route("POST", re.compile(r".*"), Reply.json({"id": "j", "polling_url": srv.url + "/v1/get_result?id=j"}))
    srv.route("GET", "/v1/get_result", Reply.json({"status": "Ready", "result": {"sample": "https://x/y.png"}}))
    async with asyncio.timeout(10):
        await router.query(f"bfl/{upstream}", prompt="a cat")
    submit = srv.requests[0]
    assert submit.path == path and submit.raw_query == ""
    assert submit.headers["x-key"] == KEY


async def test_a_param_placed_in_the_path_or_query_is_encoded_and_not_merged_into_the_body(router, srv) -> None:
    async with asyncio.timeout(10):
        await router.query("placed", HI, deployment="prod 1", api_version="2024&key=stolen", temperature=0.5)
    sent = srv.requests[0]
    assert sent.path == "/v1/deployments/prod%201/chat"
    assert sent.query == {"api-version": "2024&key=stolen"}  # one query value, not two
    body = sent.json()
    assert body["temperature"] == 0.5
    assert "deployment" not in body and "api_version" not in body


@pytest.mark.parametrize("deployment", ["../admin", "a//b", "", ".", {"a": 1}, [1]])
async def test_a_param_that_would_move_the_path_is_refused(router, srv, deployment) -> None:
    await _refused(router, srv, "cannot be placed in a URL", "placed", deployment=deployment)


@pytest.mark.parametrize(("job_id", "query"), [("j-1", {"id": "j-1"}), ("x&admin=1", {"id": "x&admin=1"}),
                                               ("a b#c", {"id": "a b#c"})])
async def test_a_poll_url_built_from_a_reply_encodes_the_value(router, srv, job_id: str, query: dict[str, str]) -> None:
    srv.route("POST", "/v1/images/flux", Reply.json({"id": job_id}))
    srv.route("GET", "/v1/jobs", Reply.json({"status": "Ready", "url": "https://x/y.png"}))
    async with asyncio.timeout(10):
        response = await router.query("painter", prompt="a cat")
    assert response.content == "https://x/y.png"
    assert srv.requests[1].path == "/v1/jobs" and srv.requests[1].query == query


@pytest.mark.parametrize("job_id", ["../../admin", "a//b", ""])
async def test_a_poll_id_that_would_move_the_path_is_a_provider_error_and_no_poll_is_sent(router, srv, job_id) -> None:
    srv.route("POST", "/v1/images/flux", Reply.json({"id": job_id}))
    with pytest.raises(ProviderError, match="poll URL"):
        async with asyncio.timeout(10):
            await router.query("painter", prompt="a cat")
    assert srv.count() == 1


# --- values that are not JSON data, wrong types, too much ------------------------------------------------------------

DEEP: Any = "leaf"
for _ in range(MAX_DEPTH + 1):
    DEEP = {"a": DEEP}
HUGE = "x" * 10_000_001


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"temperature": math.nan}, "param 'temperature' is nan, which JSON cannot carry"),
    ({"temperature": math.inf}, "param 'temperature' is inf"),
    ({"temperature": -math.inf}, "param 'temperature' is -inf"),
    ({"user": {"a": [1, {"b": math.nan}]}}, "param 'user'.a[1].b is nan"),
    ({"user": {1.5: "x"}}, "param 'user' has the key 1.5"),
    ({"user": {None: "x"}}, "param 'user' has the key None"),
    ({"user": {(1, 2): "x"}}, "param 'user' has the key (1, 2)"),
    ({"user": b"bytes"}, "param 'user' is not JSON data (got a bytes)"),
    ({"user": Decimal("1.5")}, "param 'user' is not JSON data (got a Decimal)"),
    ({"user": 1j}, "param 'user' is not JSON data (got a complex)"),
    ({"user": [1, {2, 3}]}, "param 'user'[1] is not JSON data (got a set)"),
    ({"user": DEEP}, f"nests deeper than {MAX_DEPTH} levels"),
    ({"user": HUGE}, "more than 10,000,000 characters"),
    ({"user": [[["x" * 1000] * 1000] * 1000] * 1000}, "param 'user'[0][9] holds more than 10,000,000 characters"),
    ({"fallback_config": {"temperature": math.nan}, "fallback_model": "openai/gpt-y"}, "fallback_config param 'temperature' is nan"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages[0].content[0].text must be a str"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text must be a str"),
    ({"messages": [{"role": "user", "content": [{"type": 7}]}]}, "messages[0].content[0] must be a dict with a string 'type'"),
    ({"messages": [{"role": "user", "content": ["plain"]}]}, "messages[0].content[0] must be a dict"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}]}, "content[0].image_url must be a str or dict"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}]}, "content[0].image_url.url must be a string"),
    ({"messages": [{"role": "user", "content": [{"type": "file", "file": "x"}]}]}, "content[0].file must be a dict"),
    ({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_data": 1}}]}]}, "content[0].file.file_data must be a string"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": math.nan}}]}]},
     "messages[0].content[0].input_audio.data is nan"),
    ({"messages": [{"role": "user", "content": {"text": "hi"}}]}, "messages[0].content must be a string or a list"),
    ({"messages": [{"role": "user", "content": "hi", "name": 5}]}, "messages[0].name must be a string"),
    ({"messages": [{"role": "assistant", "content": "x", "provider_state": "x"}, *HI]}, "messages[0].provider_state must be"),
    ({"messages": [{"role": "assistant", "content": "x", "provider_state": {"wire": "anthropic", "data": 5}}, *HI]},
     "messages[0].provider_state must be"),
    ({"messages": [{"role": "user", "content": "hi", "extra": object()}]}, "messages[0].extra is not JSON data (got an object)"),
    ({"messages": [{"role": "user", "content": "x\ud800"}]}, "messages[0].content is not valid UTF-8"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": "x"}, *HI]},
     "messages[1].tool_calls must be a list"),
    ({"messages": [{"role": "tool", "content": "r", "tool_call_id": 5}]}, "messages[0] is a tool result for call 5"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "default": math.nan}}}]},
     "tools[0].function.parameters.default is nan"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "x": {1, 2}}}}]},
     "tools[0].function.parameters.x is not JSON data (got a set)"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "x": math.inf}}}},
     "response_format.json_schema.schema.x is inf"),
    ({"prompt": HUGE, "messages": None}, "more than 10,000,000 characters"),
    ({"prompt": 5, "messages": None}, "prompt must be a string, got int"),
], ids=lambda v: v if isinstance(v, str) else None)
async def test_bad_input_is_refused_before_sending_naming_the_field(router, srv, kwargs: dict[str, Any], fragment: str) -> None:
    await _refused(router, srv, fragment, **kwargs)


async def test_json_like_types_that_json_writes_are_accepted(router, srv) -> None:
    """Tuples, int keys (logit_bias), subclasses of dict and str: JSON data as Python writes it."""
    async with asyncio.timeout(10):
        await router.query("openai/gpt-x", HI, logit_bias={50256: -100}, stop=("a", "b"), metadata=OrderedDict(a="1"))
    body = srv.requests[0].json()
    assert body["logit_bias"] == {"50256": -100} and body["stop"] == ["a", "b"] and body["metadata"] == {"a": "1"}


_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                  st.sampled_from([math.nan, math.inf, {1, 2}, b"x", object(), Decimal(1), "\ud800"]))
_value = st.recursive(_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner, inner),
    st.dictionaries(st.one_of(st.text(max_size=5), st.integers(), st.none(), st.floats()), inner, max_size=3)), max_leaves=10)
_part = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "file", "input_audio", 3])},
                              optional={"text": _value, "image_url": _value, "file": _value, "input_audio": _value})
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "developer", "tool", "robot"])},
    optional={"content": st.one_of(_value, st.lists(st.one_of(_part, _value), max_size=3)), "name": _value,
              "tool_call_id": _value, "tool_calls": _value, "provider_state": _value})


@pytest.fixture(scope="module")
def offline_router(tmp_path_factory) -> Router:
    """The bundled catalog and the placing provider, for render (nothing is sent)."""
    cfg = tmp_path_factory.mktemp("placing")
    (cfg / "providers.d").mkdir()
    (cfg / "models.d").mkdir()
    (cfg / "providers.d/placing.yaml").write_text(PLACING)
    (cfg / "models.d/m.yaml").write_text(MODELS)
    return Router.from_dir(catalog_dir(), cfg, env={"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY,
                                                  "GEMINI_API_KEY": KEY, "PLACING_KEY": KEY})


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(model=st.sampled_from(["openai/gpt-x", "anthropic/claude-x", "gemini/gem-x", "placed"]),
       messages=st.one_of(st.just(HI), st.lists(_message, min_size=1, max_size=3)),
       params=st.dictionaries(st.sampled_from(["temperature", "user", "max_tokens", "deployment", "weird"]), _value, max_size=3),
       tools=st.one_of(st.none(), _value))
def test_property_any_call_renders_valid_json_or_is_an_invalid_request(offline_router, model, messages, params, tools) -> None:
    """Whatever a caller passes, the request is strict JSON (no NaN) or the call is refused with a typed error."""
    try:
        view = offline_router.render(model, messages=messages, tools=tools, **params)
    except InvalidRequestError:
        return
    except RouterError as exc:  # another typed error (an unsupported param...) is a refusal too
        assert not isinstance(exc, ProviderError)
        return
    json.dumps(view["body"], allow_nan=False)
    assert "/../" not in view["url"] and "/./" not in view["url"]


# --- content-type ------------------------------------------------------------------------------------------------------


def _typed_provider(headers: str) -> str:
    return f"""\
extends: openai-compatible
name: typed
base_url: http://127.0.0.1:9/v1
base_url_env: TYPED_BASE_URL
auth: {{header: Authorization, scheme: Bearer, env: TYPED_KEY}}
hosts: [127.0.0.1]
{headers}"""


@pytest.mark.parametrize("declared", ["application/json; charset=utf-8", "application/vnd.api+json", "Application/JSON"])
async def test_a_json_content_type_the_provider_declares_is_sent_as_declared(write_config, declared: str) -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        cfg = write_config({"providers.d/typed.yaml": _typed_provider(f"headers: {{Content-Type: {json.dumps(declared)}}}\n"),
                            "models.d/m.yaml": "models:\n  m: {provider: typed, pricing: unknown}\n"})
        async with Router.from_dir(catalog_dir(), cfg, env={"TYPED_KEY": KEY, "TYPED_BASE_URL": srv.url + "/v1"}) as router:
            async with asyncio.timeout(10):
                await router.query("m", HI)
        sent = srv.requests[0]
    assert [v for k, v in sent.headers.items() if k.lower() == "content-type"] == [declared]
    assert sent.json()["messages"] == HI


@pytest.mark.parametrize("where", ["provider", "operation"])
@pytest.mark.parametrize("declared", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_content_type_that_is_not_json_is_a_configuration_error_with_its_line(write_config, where: str, declared: str) -> None:
    headers = (f"headers: {{content-type: {declared}}}\n" if where == "provider"
               else f"operations:\n  chat:\n    headers: {{content-type: {declared}}}\n")
    cfg = write_config({"providers.d/typed.yaml": _typed_provider(headers),
                        "models.d/m.yaml": "models:\n  m: {provider: typed, pricing: unknown}\n"})
    with pytest.raises(ConfigurationError) as info:
        Router.from_dir(catalog_dir(), cfg, env={"TYPED_KEY": KEY})
    (problem,) = [p for p in info.value.problems if "content-type" in p.message]
    assert problem.file.endswith("typed.yaml") and problem.line == (7 if where == "provider" else 9)
    assert "JSON" in problem.message


async def test_a_content_type_a_template_builds_is_checked_on_each_call(write_config) -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        headers = 'operations:\n  chat:\n    headers: {content-type: "{{ params.ct }}"}\n'
        cfg = write_config({"providers.d/typed.yaml": _typed_provider(headers),
                            "models.d/m.yaml": "models:\n  m: {provider: typed, pricing: unknown, params: [ct]}\n"})
        async with Router.from_dir(catalog_dir(), cfg, env={"TYPED_KEY": KEY, "TYPED_BASE_URL": srv.url + "/v1"}) as router:
            with pytest.raises(InvalidRequestError, match="content-type header 'text/plain' is not JSON"):
                await router.query("m", HI, ct="text/plain")
            assert srv.count() == 0
            async with asyncio.timeout(10):
                await router.query("m", HI, ct="application/json")
        assert srv.requests[0].headers["content-type"] == "application/json"
