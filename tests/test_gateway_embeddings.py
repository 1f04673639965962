"""`POST /v1/embeddings` on `llm-router serve`, called with the official openai SDK over real HTTP on
127.0.0.1 (one gateway process for the module), routed to the bundled OpenAI embeddings operation on a
loopback mock. The SDK asks for base64 float32 by default and decodes it: both encodings round-trip."""

from __future__ import annotations

import array
import base64

import openai
import pytest
from gateway_harness import KEYS, UPSTREAM_KEY, openai_gateway_fixtures, post_json, sdk_client


def upstream_embeddings(request):
    body = request.json()
    vectors = [[float(len(text)), 0.25, -1.5] for text in body["input"]]
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(array.array("f", v).tobytes()).decode() if body.get("encoding_format") == "base64" else v}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 5, "total_tokens": 5}}


mock, gateway = openai_gateway_fixtures("/v1/embeddings", upstream_embeddings)


@pytest.mark.parametrize("encoding_format", [openai.NOT_GIVEN, "float"])
def test_the_openai_sdk_gets_its_embeddings_in_either_encoding(gateway, mock, encoding_format):
    raw = sdk_client(gateway).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["hi", "hello"], dimensions=3, encoding_format=encoding_format)
    result = raw.parse()
    assert [d.embedding for d in result.data] == [[2.0, 0.25, -1.5], [5.0, 0.25, -1.5]]
    assert [d.index for d in result.data] == [0, 1] and result.model == "text-embedding-3-small"
    assert result.usage.prompt_tokens == 5 and result.usage.total_tokens == 5
    assert raw.headers["x-llm-router-provider"] == "openai" and float(raw.headers["x-llm-router-cost-usd"]) == pytest.approx(
        5 * 0.02 / 1e6)
    sent = [r for r in mock.requests if r.path == "/v1/embeddings"][-1]
    assert sent.json()["dimensions"] == 3 and sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_a_chat_model_on_the_embeddings_endpoint_is_a_400_naming_the_right_one(gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk_client(gateway).embeddings.create(model="chat-a", input="x")
    assert caught.value.code == "wrong_endpoint" and "/v1/chat/completions" in caught.value.message


@pytest.mark.parametrize("body,param", [
    ({"model": "text-embedding-3-small", "input": [[1, 2, 3]]}, "input"),
    ({"model": "text-embedding-3-small", "input": []}, "input"),
    ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"}, "encoding_format"),
])
def test_a_malformed_embeddings_body_is_a_400_naming_the_field(gateway, body, param):
    reply = post_json(gateway.url + "/v1/embeddings", body, KEYS["full"])
    assert reply.status_code == 400 and reply.json()["error"]["param"].startswith(param)
