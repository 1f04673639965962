"""`POST /v1/audio/speech` on `llm-router serve`, called with the official openai SDK over real HTTP on
127.0.0.1 (one gateway process for the module), routed to the bundled OpenAI speech operation on a
loopback mock: the audio comes back as the provider sent it, with its media type and the cost."""

from __future__ import annotations

import openai
import pytest
from gateway_harness import KEYS, UPSTREAM_KEY, openai_gateway_fixtures, post_json, sdk_client
from mockserver import Reply

AUDIO = b"ID3\x04\x00\x00" + bytes(range(256)) * 40  # a stand-in for an MP3 of ~10 KB


mock, gateway = openai_gateway_fixtures("/v1/audio/speech", Reply(body=AUDIO, headers=(("content-type", "audio/mpeg"),)))


def test_the_openai_sdk_gets_the_audio_its_media_type_and_cost(gateway, mock):
    text = "The quick brown fox jumped over the lazy dog."
    raw = sdk_client(gateway).audio.speech.with_raw_response.create(model="tts-1", voice="nova", input=text, speed=1.5)
    assert raw.content == AUDIO and raw.headers["content-type"] == "audio/mpeg"
    assert raw.headers["x-llm-router-provider"] == "openai"
    assert float(raw.headers["x-llm-router-cost-usd"]) == pytest.approx(len(text) * 15 / 1e6)
    sent = [r for r in mock.requests if r.path == "/v1/audio/speech"][-1]
    assert sent.json() == {"input": text, "model": "tts-1", "voice": "nova", "speed": 1.5}
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_a_chat_model_on_the_speech_endpoint_is_a_400_naming_the_right_one(gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk_client(gateway).audio.speech.create(model="chat-a", voice="alloy", input="x")
    assert caught.value.code == "wrong_endpoint" and "/v1/chat/completions" in caught.value.message


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "tts-1", "voice": "alloy"}, "input"),
    ({"model": "tts-1", "input": ""}, "input"),
    ({"model": "tts-1", "input": "x", "response_format": "ogg"}, "response_format"),
    ({"model": "tts-1", "input": "x", "speed": 9}, "speed"),
])
def test_a_malformed_speech_body_is_a_400_naming_the_field(gateway, body, param):
    reply = post_json(gateway.url + "/v1/audio/speech", body, KEYS["full"])
    assert reply.status_code == 400 and reply.json()["error"]["param"] == param
