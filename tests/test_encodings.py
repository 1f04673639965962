"""Request and reply encodings, declared in YAML and proven over loopback HTTP: multipart/form-data
(text fields, lists as `name` or `name[]`, files from bytes, a path, a data: URL or a FileInput,
and no file at all), form-urlencoded, a provider's declared content type, binary reply bodies
with their media type, and values read from reply headers."""

from __future__ import annotations

import base64
import json

import pytest
from formdata import Part, fields, form, multipart
from mockserver import TINY_PNG, Reply

from llm_router import FileInput, InvalidReplyError, InvalidRequestError, Router
from llm_router.config.model import Operation
from llm_router.engine.encoding import encode
from llm_router.secrets import MASK
from llm_router.templating import compile_structure

FORMOSA = """
name: formosa
base_url: https://api.formosa.example
base_url_env: FORMOSA_BASE_URL
auth: {header: Authorization, scheme: Bearer, env: FORMOSA_KEY}
errors: {retry: {max_attempts: 1}, message: "$.errors[0]"}
operations:
  transcribe:
    path: /audio/transcriptions
    encoding: multipart
    arrays: brackets
    max_file_bytes: 2048
    body:
      file: "{{ file }}"
      model: "{{ model.upstream }}"
      response_format: json
      temperature: "{{ params.temperature }}"
      timestamp_granularities: "{{ params.timestamp_granularities }}"
      stream: "{{ params.stream }}"
      chunking_strategy: "{{ params.chunking_strategy }}"
    response:
      content: $.text
      usage: {input_tokens: $.usage.input_tokens, output_tokens: $.usage.output_tokens}
  image:
    path: "/generate/{{ model.upstream }}"
    encoding: multipart
    headers: {accept: "image/*"}
    file_params: [image]
    body:
      prompt: "{{ prompt }}"
      image: "{{ params.image }}"
      strength: "{{ params.strength }}"
      output_format: "{{ params.output_format | default('png') }}"
    response:
      binary: {max_bytes: 1024}
      finish_reason: {header: finish-reason}
      id: {header: x-request-id}
      extra: {seed: {header: seed}}
    finish_reasons: {SUCCESS: stop, CONTENT_FILTERED: content_filter}
  chat:
    path: /complete
    encoding: form
    headers: {content-type: "application/x-www-form-urlencoded; charset=utf-8"}
    body:
      prompt: "{{ messages | last_user_text }}"
      stop: "{{ params.stop }}"
      model: "{{ model.upstream }}"
    response:
      content: $.completion
      finish_reason: {header: x-stop-reason}
      id: {header: x-request-id}
"""

MODELS = """
models:
  formosa-ears: {provider: formosa, upstream: ears-2, kind: transcribe, params: [temperature, timestamp_granularities, stream,
                 chunking_strategy], pricing: {input_per_million: 2.5, output_per_million: 10}}
  formosa-paint: {provider: formosa, upstream: core, kind: image, params: [image, strength, output_format],
                  pricing: {per_image: 0.03}}
  formosa-chat: {provider: formosa, upstream: c1, params: [stop], pricing: unknown}
"""


@pytest.fixture
async def router(srv, write_config):
    config = write_config({"providers.d/formosa.yaml": FORMOSA, "models.d/f.yaml": MODELS})
    async with Router.from_dir(config, env={"FORMOSA_KEY": "fk-123456", "FORMOSA_BASE_URL": srv.url}) as r:
        yield r


# OpenAI's API reference reply for gpt-4o-transcribe (research18/04-openai-transcription.md)
TRANSCRIPT = {"text": "Imagine the wildest idea that you've ever had, and you're curious about how it might scale to "
                      "something that's a 100, a 1,000 times bigger. This is a place where you can get to do that.",
              "usage": {"type": "tokens", "input_tokens": 14, "input_token_details": {"text_tokens": 0, "audio_tokens": 14},
                        "output_tokens": 45, "total_tokens": 59}}
AUDIO = bytes(range(256)) * 4


async def test_multipart_sends_the_file_and_each_field_as_the_openai_sdk_does(srv, router):
    srv.route("POST", "/audio/transcriptions", Reply.json(TRANSCRIPT))
    resp = await router.transcribe("formosa-ears", AUDIO, filename="audio.mp3", temperature=0.2,
                                   timestamp_granularities=["word", "segment"], stream=False,
                                   chunking_strategy={"type": "server_vad", "threshold": 0.5})
    (request,) = srv.requests
    parts = multipart(request.headers, request.body)
    assert parts[0] == Part("file", filename="audio.mp3", content_type="audio/mpeg", data=AUDIO)
    assert [(p.name, p.value) for p in parts[1:]] == [
        ("model", "ears-2"), ("response_format", "json"), ("temperature", "0.2"),
        ("timestamp_granularities[]", "word"), ("timestamp_granularities[]", "segment"),  # brackets, as the SDK's _qs
        ("stream", "false"),  # booleans as the SDK writes them
        ("chunking_strategy", '{"type":"server_vad","threshold":0.5}'),  # an object is its JSON text
    ]
    assert resp.text == TRANSCRIPT["text"] and (resp.usage.input_tokens, resp.usage.output_tokens) == (14, 45)
    assert resp.cost == pytest.approx((14 * 2.5 + 45 * 10) / 1e6)


@pytest.mark.parametrize("given,filename,media_type", [
    (lambda tmp: tmp / "clip.wav", "clip.wav", ("audio/x-wav", "audio/wav")),
    (lambda tmp: "data:audio/ogg;base64," + base64.b64encode(AUDIO).decode(), "file.oga", ("audio/ogg",)),
    (lambda tmp: FileInput.from_base64(base64.b64encode(AUDIO).decode(), "talk.webm"), "talk.webm", ("audio/webm", "video/webm")),
    (lambda tmp: FileInput(AUDIO, "x.flac", "audio/flac"), "x.flac", ("audio/flac",)),
])
async def test_a_file_from_a_path_a_data_url_base64_or_a_file_input(srv, router, tmp_path, given, filename, media_type):
    (tmp_path / "clip.wav").write_bytes(AUDIO)
    srv.route("POST", "/audio/transcriptions", Reply.json(TRANSCRIPT))
    await router.transcribe("formosa-ears", given(tmp_path))
    file = fields(srv.requests[0].headers, srv.requests[0].body)["file"]
    assert (file.data, file.filename) == (AUDIO, filename) and file.content_type in media_type


async def test_a_file_given_only_by_url_is_refused_where_its_bytes_are_needed(srv, router):
    with pytest.raises(InvalidRequestError, match="given as a URL; this provider needs its bytes"):
        await router.transcribe("formosa-ears", "https://files.example/clip.mp3")
    assert srv.requests == []


async def test_a_file_over_the_operations_cap_is_refused_before_sending(srv, router):
    with pytest.raises(InvalidRequestError, match="2049 bytes.*at most 2048 bytes"):
        await router.transcribe("formosa-ears", b"\0" * 2049, filename="a.wav")
    assert srv.requests == []


async def test_multipart_with_no_file_is_still_multipart_and_a_binary_reply_is_the_result(srv, router):
    srv.route("POST", "/generate/core", Reply.raw(TINY_PNG, headers={
        "content-type": "image/png", "finish-reason": "CONTENT_FILTERED", "seed": "343940597",
        "x-request-id": "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4"}))
    resp = await router.query("formosa-paint", prompt="Lighthouse on a cliff overlooking the ocean", output_format="webp")
    (request,) = srv.requests
    assert request.headers["accept"] == "image/*"
    assert fields(request.headers, request.body) == {"prompt": "Lighthouse on a cliff overlooking the ocean",
                                                     "output_format": "webp"}
    assert (resp.content, resp.content_kind, resp.media_type) == (TINY_PNG, "bytes", "image/png")
    assert resp.finish_reason == "content_filter" and resp.id == "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4"
    assert resp.extra == {"seed": "343940597"} and resp.cost == pytest.approx(0.03)


@pytest.mark.parametrize("image", [TINY_PNG, "data:image/png;base64," + base64.b64encode(TINY_PNG).decode()])
async def test_a_file_param_is_a_file_part(srv, router, image):
    srv.route("POST", "/generate/core", Reply.raw(TINY_PNG, headers={"content-type": "image/png"}))
    await router.query("formosa-paint", prompt="make it blue", image=image, strength=0.5)
    got = fields(srv.requests[0].headers, srv.requests[0].body)
    assert got["image"].data == TINY_PNG and got["strength"] == "0.5"


@pytest.mark.parametrize("bad", [42, {"b64": "x"}, "not-a-url.png"])
async def test_a_file_param_that_is_no_file_is_refused_naming_it(srv, router, bad):
    with pytest.raises(InvalidRequestError, match="param 'image'"):
        await router.query("formosa-paint", prompt="x", image=bad)
    assert srv.requests == []


async def test_a_binary_reply_over_its_cap_is_an_invalid_reply(srv, router):
    srv.route("POST", "/generate/core", Reply.raw(b"\x89PNG" + b"\0" * 1024, headers={"content-type": "image/png"}))
    with pytest.raises(InvalidReplyError, match="larger than 1024 bytes"):
        await router.query("formosa-paint", prompt="x")


async def test_an_error_on_a_binary_operation_is_read_as_json_with_the_providers_message(srv, router):
    srv.route("POST", "/generate/core", Reply.json(
        {"id": "x", "name": "content_moderation", "errors": ["Your request was flagged by our content moderation system"]},
        status=403))
    with pytest.raises(Exception, match="flagged by our content moderation"):
        await router.query("formosa-paint", prompt="x")


async def test_form_body_honours_the_declared_content_type_and_reads_headers(srv, router):
    srv.route("POST", "/complete", Reply.json({"completion": "4"}, headers={"x-stop-reason": "stop", "x-request-id": "r-9"}))
    resp = await router.query("formosa-chat", [{"role": "user", "content": "2+2 = ?"}], stop=["\n", "END"])
    (request,) = srv.requests
    assert request.headers["content-type"] == "application/x-www-form-urlencoded; charset=utf-8"
    assert form(request.headers, request.body) == [("prompt", "2+2 = ?"), ("stop", "\n"), ("stop", "END"), ("model", "c1")]
    assert (resp.content, resp.finish_reason, resp.id) == ("4", "stop", "r-9")


# --- the encoder itself ----------------------------------------------------------------------------


def _operation(encoding: str, arrays: str = "repeat") -> Operation:
    return Operation(kind="transcribe", path=compile_structure("/x", frozenset()), encoding=encoding, arrays=arrays)


def test_names_and_file_names_are_escaped_so_no_field_can_inject_a_header():
    headers: dict[str, str] = {}
    evil = FileInput(b"data", 'a".mp3\r\nContent-Type: text/html', 'audio/mpeg\r\nX-Evil: 1')
    body = encode(_operation("multipart"), {'na"me\r\nX: y': "v", "file": evil}, headers, "here")
    parts = multipart(headers, body)
    assert [p.name for p in parts] == ["na%22me%0D%0AX: y", "file"]
    assert parts[1].filename == "a%22.mp3%0D%0AContent-Type: text/html" and b"X-Evil" not in body.split(b"\r\n\r\n")[2]


def test_the_boundary_never_occurs_in_a_part():
    headers: dict[str, str] = {}
    body = encode(_operation("multipart"), {"a": "--llm-router-" + "0" * 32}, headers, "here")
    boundary = headers["content-type"].split("boundary=")[1]
    assert body.count(boundary.encode()) == 2 and fields(headers, body) == {"a": "--llm-router-" + "0" * 32}


@pytest.mark.parametrize("declared,ok", [
    ("multipart/form-data", True), ("Multipart/Form-Data; boundary=mine", True), ("application/json", False)])
def test_a_declared_content_type_must_name_the_encoding(declared, ok):
    headers = {"Content-Type": declared}
    if not ok:
        with pytest.raises(InvalidRequestError, match="does not match the operation's encoding"):
            encode(_operation("multipart"), {"a": "b"}, headers, "here")
        return
    encode(_operation("multipart"), {"a": "b"}, headers, "here")
    assert list(headers) == ["content-type"] and "boundary=llm-router-" in headers["content-type"]


def test_a_form_body_refuses_a_file_and_a_non_object_body():
    with pytest.raises(InvalidRequestError, match="form body cannot carry files"):
        encode(_operation("form"), {"f": FileInput(b"x")}, {}, "here")
    with pytest.raises(InvalidRequestError, match="must be an object of fields"):
        encode(_operation("form"), ["a"], {}, "here")


def test_form_lists_repeat_or_take_brackets():
    headers: dict[str, str] = {}
    body = encode(_operation("form", "brackets"), {"a": [1, True], "b": {"c": None}}, headers, "here")
    assert form(headers, body) == [("a[]", "1"), ("a[]", "true"), ("b", json.dumps({"c": None}, separators=(",", ":")))]


def test_render_shows_each_file_by_name_type_and_size_never_its_bytes(router):
    view = router.render("formosa-paint", prompt="x", image=TINY_PNG)
    assert view["body"]["image"] == {"file": "file", "media_type": "application/octet-stream", "bytes": len(TINY_PNG),
                                     "url": None}
    assert view["headers"]["Authorization"] == f"Bearer {MASK}" and "fk-123456" not in json.dumps(view)
