"""The official openai SDK against `llm-router serve` over real HTTP on 127.0.0.1: one gateway process
for the module, talking to a loopback mock provider. Sync, async, streaming, tools (streamed too),
response_format, images, models, headers, and every error status."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx2
import openai
import pytest
from gateway_harness import ADMIN_KEY, KEYS, UPSTREAM_KEY, WEATHER_TOOL, Gateway, gateway_env, post_json, start_mock, write_site

from llm_router._resources import catalog_dir

USER = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def mock():
    srv = start_mock()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def gateway(mock, tmp_path_factory):
    site = write_site(tmp_path_factory.mktemp("site"))
    gw = Gateway.start([catalog_dir(), site], gateway_env(mock))
    yield gw
    gw.stop()


def client(gateway: Gateway, key: str = KEYS["full"]) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gateway.url + "/v1", max_retries=0, timeout=10)


def upstream_bodies(mock, model: str) -> list[dict]:
    return [r.json() for r in mock.requests if r.path == "/v1/chat/completions" and r.json()["model"] == model]


# --- chat completions ------------------------------------------------------------------------------------

def test_sync_chat_completion_has_openais_shape_usage_details_and_router_headers(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(model="chat-a", messages=USER, temperature=0.2)
    completion = raw.parse()
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.model == "chat-a"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello!"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 5, 15)
    assert usage.prompt_tokens_details.cached_tokens == 4
    assert usage.completion_tokens_details.reasoning_tokens == 2
    headers = raw.headers
    assert headers["x-llm-router-model"] == "chat-a" and headers["x-llm-router-provider"] == "mock"
    assert headers["x-llm-router-attempts"] == "1"
    # 6 uncached input tokens at $2/M, 4 cached at $0.5/M, 5 output at $8/M
    assert float(headers["x-llm-router-cost-usd"]) == pytest.approx((6 * 2.0 + 4 * 0.5 + 5 * 8.0) / 1e6)
    assert 0 <= float(headers["x-llm-router-overhead-ms"]) < 1000
    assert completion.id == f"chatcmpl-{headers['x-request-id']}"


def test_only_the_allow_listed_client_headers_go_upstream_and_never_over_the_providers_key(gateway, mock):
    before = len(mock.requests)
    client(gateway).chat.completions.create(model="chat-a", messages=USER, extra_headers={
        "x-trace-id": "trace-7", "x-internal-note": "stays here"})
    sent = [r for r in mock.requests[before:] if r.path == "/v1/chat/completions"][-1]
    assert sent.headers.get("x-trace-id") == "trace-7"
    assert "x-internal-note" not in sent.headers
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"  # the provider's key, not the client's


def test_a_clients_own_request_id_is_kept_and_a_malformed_one_replaced(gateway):
    assert post_json(gateway.url + "/v1/chat/completions", {"model": "chat-a", "messages": USER}, KEYS["full"],
                     **{"x-request-id": "trace-42"}).headers["x-request-id"] == "trace-42"
    replaced = post_json(gateway.url + "/v1/chat/completions", {"model": "chat-a", "messages": USER}, KEYS["full"],
                         **{"x-request-id": "bad id\twith spaces"}).headers["x-request-id"]
    assert len(replaced) == 32 and replaced.isalnum()


async def test_async_client_with_concurrent_calls(gateway):
    async with openai.AsyncOpenAI(api_key=KEYS["full"], base_url=gateway.url + "/v1", max_retries=0, timeout=10) as aclient:
        replies = await asyncio.gather(*(aclient.chat.completions.create(model="chat-a", messages=USER) for _ in range(20)))
    assert [r.choices[0].message.content for r in replies] == ["Hello!"] * 20
    assert len({r.id for r in replies}) == 20


def test_stream_ends_with_a_usage_chunk_when_asked(gateway):
    chunks = list(client(gateway).chat.completions.create(model="chat-a", messages=USER, stream=True,
                                                          stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello!"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"


def test_stream_without_include_usage_has_no_usage_chunk(gateway):
    chunks = list(client(gateway).chat.completions.create(model="chat-a", messages=USER, stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_stream_headers_name_the_model_and_end_in_done(gateway):
    with httpx2.stream("POST", gateway.url + "/v1/chat/completions", timeout=10,
                       json={"model": "chat-a", "messages": USER, "stream": True},
                       headers={"authorization": f"Bearer {KEYS['full']}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-llm-router-model"] == "chat-a" and "x-request-id" in response.headers
        body = response.read().decode()
    assert body.rstrip().endswith("data: [DONE]")


def test_a_stream_falls_back_before_its_first_chunk(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="chat-ratelimited", messages=USER, stream=True, extra_body={"fallback_model": "chat-b"})
    assert raw.headers["x-llm-router-model"] == "chat-b"
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices) == "Hello!"


def test_a_stream_cut_after_it_started_ends_in_an_error_event_the_sdk_raises(gateway):
    text = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in client(gateway).chat.completions.create(model="chat-cut", messages=USER, stream=True):
            text += chunk.choices[0].delta.content or ""
    assert text == "one two " and "stream cut after 8 characters" in caught.value.message
    assert caught.value.body["code"] == "stream_interrupted"


def test_tool_calls_in_openai_shape(gateway, mock):
    completion = client(gateway).chat.completions.create(model="chat-a", messages=USER, tools=[WEATHER_TOOL],
                                                         tool_choice="auto")
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert (call.id, call.type, call.function.name, json.loads(call.function.arguments)) == (
        "call_1", "function", "get_weather", {"city": "Paris"})
    sent = upstream_bodies(mock, "gpt-4.1")[-1]
    assert sent["tools"] == [WEATHER_TOOL] and sent["tool_choice"] == "auto"


def test_streamed_tool_calls_arrive_as_indexed_fragments(gateway):
    chunks = list(client(gateway).chat.completions.create(model="chat-a", messages=USER, tools=[WEATHER_TOOL], stream=True))
    fragments = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert fragments and all(f.index == 0 for f in fragments)
    assert fragments[0].id == "call_1" and fragments[0].function.name == "get_weather" and fragments[0].type == "function"
    assert json.loads("".join(f.function.arguments or "" for f in fragments)) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_a_tool_result_turn_goes_upstream_as_sent(gateway, mock):
    messages = [*USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'}]
    completion = client(gateway).chat.completions.create(model="chat-a", messages=messages, tools=[WEATHER_TOOL])
    assert completion.choices[0].message.content == "Hello!"
    assert upstream_bodies(mock, "gpt-4.1")[-1]["messages"][-1] == messages[-1]


def test_response_format_json_schema_reaches_the_provider_and_json_comes_back(gateway, mock):
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": {"type": "object"}}}
    completion = client(gateway).chat.completions.create(model="chat-a", messages=USER, response_format=fmt)
    assert json.loads(completion.choices[0].message.content) == {"city": "Paris", "temp_c": 18}
    assert upstream_bodies(mock, "gpt-4.1")[-1]["response_format"] == fmt


def test_fallback_model_and_config_as_extra_body_fields(gateway, mock):
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="chat-ratelimited", messages=USER,
        extra_body={"fallback_model": "chat-b", "fallback_config": {"temperature": 0.5}})
    assert raw.parse().model == "chat-b"
    assert raw.headers["x-llm-router-model"] == "chat-b" and raw.headers["x-llm-router-attempts"] == "2"
    assert upstream_bodies(mock, "gpt-4.1-mini")[-1]["temperature"] == 0.5


def test_a_model_without_the_tools_capability_is_a_400(gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="chat-b", messages=USER, tools=[WEATHER_TOOL])
    assert caught.value.code == "unsupported_capability" and "tools" in caught.value.message


# --- images and models -----------------------------------------------------------------------------------

def test_image_generation_returns_a_url(gateway, mock):
    raw = client(gateway).images.with_raw_response.generate(model="img-url", prompt="a cat", size="1024x1024")
    image = raw.parse()
    assert image.data[0].url == "https://img.example/cat.png" and image.created > 0
    assert float(raw.headers["x-llm-router-cost-usd"]) == pytest.approx(0.04)
    sent = [r.json() for r in mock.requests if r.path == "/v1/images/generations"][-1]
    assert sent == {"model": "url-model", "prompt": "a cat", "size": "1024x1024"}


def test_image_generation_returns_base64_with_usage(gateway):
    image = client(gateway).images.generate(model="img-b64", prompt="a cat", quality="high")
    assert image.data[0].b64_json == "iVBORw0KGgo=" and image.data[0].url is None
    assert image.usage.total_tokens == 109


def test_openai_size_becomes_width_and_height_for_a_model_that_takes_those(gateway, mock):
    client(gateway).images.generate(model="img-wh", prompt="a dog", size="1024x768")
    sent = [r.json() for r in mock.requests if r.path == "/v1/images/generations"][-1]
    assert sent["width"] == 1024 and sent["height"] == 768 and "size" not in sent


def test_a_chat_model_on_the_images_endpoint_is_a_400(gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).images.generate(model="chat-a", prompt="a cat")
    assert caught.value.code == "wrong_endpoint"


def test_models_list_holds_what_the_key_may_use_with_prices_and_capabilities(gateway):
    everything = {m.id for m in client(gateway).models.list()}
    assert {"chat-a", "img-url", "secret-model", "gpt-4.1"} <= everything
    (only,) = client(gateway, KEYS["restricted"]).models.list().data
    assert only.id == "chat-a" and only.owned_by == "mock"
    extra = only.model_extra
    assert extra["pricing"]["input_per_million"] == 2.0 and extra["capabilities"] == ["structured_output", "tools"]
    assert extra["kind"] == "chat" and "temperature" in extra["params"]
    assert client(gateway, KEYS["restricted"]).models.retrieve("chat-a").id == "chat-a"


def test_retrieving_a_model_outside_the_key_is_the_same_404_as_a_missing_one(gateway):
    restricted = client(gateway, KEYS["restricted"])
    errors = []
    for name in ("secret-model", "no-such-model"):
        with pytest.raises(openai.NotFoundError) as caught:
            restricted.models.retrieve(name)
        errors.append(caught.value.message.replace(name, "X"))
    assert errors[0] == errors[1]


# --- errors ---------------------------------------------------------------------------------------------

def test_an_unknown_key_is_a_401_and_a_missing_one_too(gateway):
    with pytest.raises(openai.AuthenticationError) as caught:
        client(gateway, "sk-not-a-key").chat.completions.create(model="chat-a", messages=USER)
    assert caught.value.code == "invalid_api_key" and "sk-not-a-key" not in caught.value.response.text
    missing = httpx2.post(gateway.url + "/v1/chat/completions", json={"model": "chat-a", "messages": USER}, timeout=10)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"


def test_x_api_key_header_is_accepted(gateway):
    response = httpx2.post(gateway.url + "/v1/chat/completions", json={"model": "chat-a", "messages": USER}, timeout=10,
                           headers={"x-api-key": KEYS["full"]})
    assert response.status_code == 200


def test_the_admin_key_from_the_environment_may_use_every_model(gateway):
    assert client(gateway, ADMIN_KEY).chat.completions.create(model="secret-model", messages=USER).model == "secret-model"


def test_a_key_without_access_gets_403_whether_or_not_the_model_exists(gateway):
    restricted = client(gateway, KEYS["restricted"])
    messages = []
    for name in ("secret-model", "no-such-model"):
        with pytest.raises(openai.PermissionDeniedError) as caught:
            restricted.chat.completions.create(model=name, messages=USER)
        assert caught.value.code == "model_not_allowed"
        messages.append(caught.value.message.replace(name, "X"))
    assert messages[0] == messages[1]
    with pytest.raises(openai.PermissionDeniedError) as caught:  # a fallback outside the list too
        restricted.chat.completions.create(model="chat-a", messages=USER, extra_body={"fallback_model": "chat-b"})
    assert caught.value.body["param"] == "fallback_model"


def test_an_unknown_model_is_a_404_model_not_found(gateway):
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway).chat.completions.create(model="chat-aa", messages=USER)
    assert caught.value.code == "model_not_found" and "'chat-a'" in caught.value.message  # a close match the key may use


@pytest.mark.parametrize("body,param", [
    ({"model": "chat-a", "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
    ({"model": "chat-a", "messages": []}, "messages"),
    ({"messages": USER}, "model"),
    ({"model": "chat-a", "messages": USER, "stream": "maybe"}, "stream"),
    ({"model": "chat-a", "messages": USER, "n": 3}, "n"),
    ({"model": "chat-a", "messages": USER, "tools": [{"type": "function", "function": {"description": "x"}}]},
     "tools[0].function.name"),
    ({"model": "chat-a", "messages": USER, "top_k": 5}, "top_k"),
    ({"model": "chat-a", "messages": USER, "prompt": "x"}, "prompt"),
])
def test_a_malformed_body_is_a_400_naming_the_field(gateway, body, param):
    response = post_json(gateway.url + "/v1/chat/completions", body, KEYS["full"])
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and param.split("[")[0] in error["message"]


def test_a_body_that_is_not_json_is_a_400(gateway):
    response = httpx2.post(gateway.url + "/v1/chat/completions", content=b"{not json", timeout=10,
                           headers={"authorization": f"Bearer {KEYS['full']}"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_a_body_over_the_size_cap_is_a_413(gateway):
    big = [{"role": "user", "content": "x" * 70_000}]
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway).chat.completions.create(model="chat-a", messages=big)
    assert caught.value.status_code == 413 and caught.value.code == "request_too_large"
    chunked = httpx2.post(gateway.url + "/v1/chat/completions", content=iter([b"{" + b" " * 40_000, b" " * 40_000 + b"}"]),
                          headers={"authorization": f"Bearer {KEYS['full']}"}, timeout=10)
    assert chunked.status_code == 413  # no Content-Length: counted while reading


def test_a_keys_rpm_is_a_429_with_retry_after_and_ratelimit_headers(gateway):
    limited = client(gateway, KEYS["limited"])
    remaining = [limited.chat.completions.with_raw_response.create(model="chat-a", messages=USER)
                 .headers["x-ratelimit-remaining-requests"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    with pytest.raises(openai.RateLimitError) as caught:
        limited.chat.completions.create(model="chat-a", messages=USER)
    headers = caught.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60 and headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "0" and caught.value.code == "rate_limit_exceeded"


def test_an_upstream_429_is_a_429_with_its_retry_after(gateway):
    with pytest.raises(openai.RateLimitError) as caught:
        client(gateway).chat.completions.create(model="chat-ratelimited", messages=USER)
    assert caught.value.response.headers["retry-after"] == "30"


def test_a_spent_key_budget_is_a_429_insufficient_quota_until_the_day_ends(gateway):
    budget = client(gateway, KEYS["budget"])
    budget.chat.completions.create(model="chat-a", messages=USER)  # $0.000054 of $0.0001
    budget.chat.completions.create(model="chat-a", messages=USER)  # now over
    with pytest.raises(openai.RateLimitError) as caught:
        budget.chat.completions.create(model="chat-a", messages=USER)
    assert caught.value.body["type"] == "insufficient_quota" and caught.value.code == "budget_exceeded"
    assert 0 < int(caught.value.response.headers["retry-after"]) <= 86400


def test_an_upstream_authentication_failure_is_a_502_that_never_echoes_the_key(gateway):
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway).chat.completions.create(model="chat-authfail", messages=USER)
    response = caught.value.response
    assert response.status_code == 502 and caught.value.code == "upstream_authentication"
    everything = response.text + json.dumps(dict(response.headers))
    assert UPSTREAM_KEY not in everything and UPSTREAM_KEY[:12] not in everything and "Incorrect API key" not in everything


def test_an_upstream_timeout_is_a_504(gateway):
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway).chat.completions.create(model="chat-slow", messages=USER)
    assert caught.value.status_code == 504 and caught.value.code == "upstream_timeout"


def test_an_upstream_400_is_a_400_with_the_providers_message(gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="chat-badrequest", messages=USER)
    assert "maximum context length" in caught.value.message and caught.value.body["type"] == "invalid_request_error"


def test_an_error_before_the_first_chunk_of_a_stream_is_an_http_error(gateway):
    with pytest.raises(openai.APIStatusError) as caught:
        list(client(gateway).chat.completions.create(model="chat-authfail", messages=USER, stream=True))
    assert caught.value.status_code == 502


def test_unknown_paths_and_methods_answer_in_the_error_envelope(gateway):
    missing = httpx2.get(gateway.url + "/v1/nothing", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_path"
    wrong = httpx2.get(gateway.url + "/v1/chat/completions", timeout=10)
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


def test_cors_is_off_unless_configured(gateway):
    preflight = httpx2.options(gateway.url + "/v1/chat/completions", timeout=10, headers={
        "origin": "https://evil.example", "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_a_client_gone_mid_stream_closes_the_upstream_stream(gateway, mock):
    before = mock.disconnects
    with socket.create_connection(tuple(gateway.url.removeprefix("http://").split(":")), timeout=5) as sock:  # type: ignore[arg-type]
        body = json.dumps({"model": "chat-long", "messages": USER, "stream": True}).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"authorization: Bearer " + KEYS["full"].encode() + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        assert b"w0" in sock.recv(65536) or b"w0" in sock.recv(65536)  # the stream started
    assert mock.wait_until(lambda: mock.disconnects > before, timeout=5)


def test_health_and_readiness(gateway):
    assert httpx2.get(gateway.url + "/healthz", timeout=5).json() == {"status": "ok"}
    ready = httpx2.get(gateway.url + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["checks"] == {"config": "ok", "state": "ok"}


def test_no_key_appears_in_the_gateway_log(gateway):
    log = gateway.log
    assert "key=full" in log and "key=restricted" in log
    for key in (*KEYS.values(), ADMIN_KEY, UPSTREAM_KEY, "sk-not-a-key"):
        assert key not in log
