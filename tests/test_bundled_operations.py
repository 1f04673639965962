"""The bundled providers of the new operation kinds, over loopback HTTP against mocks that speak each
API's real format and check what it checks (fixtures from the SDKs and API references, research
notes of issue #18): OpenAI embeddings (base64 float32) and transcriptions (multipart), Mistral
embeddings, Cohere rerank, ElevenLabs speech (audio bytes), Stability images (multipart in, image out)."""

from __future__ import annotations

import array
import base64

import pytest
from formdata import fields
from mockserver import TINY_PNG, Reply

from llm_router import AllAttemptsFailed, ContentFilterError, InvalidReplyError, RateLimitError, Router

KEYS = {name: f"sk-{name.lower()}-0123456789" for name in ("OPENAI", "MISTRAL", "COHERE", "ELEVENLABS", "STABILITY")}


@pytest.fixture
async def router(srv):
    env = {f"{name}_API_KEY": key for name, key in KEYS.items()}
    env.update({"OPENAI_BASE_URL": srv.url + "/v1", "MISTRAL_BASE_URL": srv.url + "/mistral/v1",
                "COHERE_BASE_URL": srv.url, "ELEVENLABS_BASE_URL": srv.url + "/v1",
                "STABILITY_BASE_URL": srv.url + "/v2beta"})
    async with Router.from_dir(env=env) as r:
        yield r


def openai_error(message, status=400):
    return Reply.json({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}, status=status)


def f32(values):
    return base64.b64encode(array.array("f", values).tobytes()).decode()


def openai_embeddings(request):
    """Like /v1/embeddings: the inputs embedded in order, as base64 float32 when asked."""
    body = request.json()
    if request.headers.get("authorization") not in (f"Bearer {KEYS['OPENAI']}", f"Bearer {KEYS['MISTRAL']}"):
        return openai_error("Incorrect API key provided", 401)
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    if any(not t for t in texts):
        return openai_error("'$.input' is invalid: it cannot be an empty string")
    vectors = [[float(len(t)), 0.5, -2.0][: body.get("dimensions", 3)] for t in texts]
    data = [{"object": "embedding", "index": i, "embedding": f32(v) if body.get("encoding_format") == "base64" else v}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 4 * len(texts), "total_tokens": 4 * len(texts)}}


async def test_openai_embeddings_decode_base64_float32_in_input_order(srv, router):
    srv.route("POST", "/v1/embeddings", openai_embeddings)
    resp = await router.embed("text-embedding-3-large", ["one", "three"], dimensions=2)
    assert srv.requests[0].json() == {"model": "text-embedding-3-large", "input": ["one", "three"],
                                      "encoding_format": "base64", "dimensions": 2}
    assert resp.vectors == [[3.0, 0.5], [5.0, 0.5]] and resp.dimensions == 2
    assert resp.usage.input_tokens == 8 and resp.cost == pytest.approx(8 * 0.13 / 1e6)


@pytest.mark.parametrize("bad,message", [("abc", "not valid base64"), (base64.b64encode(b"abc").decode(), "3 bytes")])
async def test_openai_sdk_negative_fixtures_are_invalid_replies(srv, router, bad, message):
    srv.route("POST", "/v1/embeddings", {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": bad}],
                                         "model": "text-embedding-3-small", "usage": {"prompt_tokens": 1, "total_tokens": 1}})
    with pytest.raises(InvalidReplyError, match=message):
        await router.embed("text-embedding-3-small", "x")


async def test_mistral_embeddings_are_plain_floats(srv, router):
    srv.route("POST", "/mistral/v1/embeddings", openai_embeddings)
    resp = await router.embed("mistral-embed", "Embed this sentence.")
    assert "encoding_format" not in srv.requests[0].json() and resp.vectors == [[20.0, 0.5, -2.0]]


def openai_transcriptions(request):
    """Like /v1/audio/transcriptions: multipart only, a `file` part with a name is required."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return openai_error("Invalid Content-Type header")
    form = fields(request.headers, request.body)
    file = form.get("file")
    if file is None or not getattr(file, "filename", None):
        return openai_error("Missing required parameter: 'file'.")
    if form["model"] == "whisper-1":
        return {"text": f"{len(file.data)} bytes of {file.content_type}", "usage": {"type": "duration", "seconds": 9}}
    return {"text": "hello", "usage": {"type": "tokens", "input_tokens": 14, "output_tokens": 45, "total_tokens": 59}}


async def test_openai_transcription_uploads_multipart_and_prices_tokens_or_seconds(srv, router, tmp_path):
    srv.route("POST", "/v1/audio/transcriptions", openai_transcriptions)
    clip = tmp_path / "clip.mp3"
    clip.write_bytes(b"ID3" + bytes(1021))
    resp = await router.transcribe("gpt-4o-transcribe", clip, language="en", include=["logprobs"])
    form = fields(srv.requests[0].headers, srv.requests[0].body)
    assert form["include[]"] == "logprobs" and form["language"] == "en" and form["response_format"] == "json"
    assert resp.text == "hello" and resp.cost == pytest.approx((14 * 2.5 + 45 * 10) / 1e6)
    resp = await router.transcribe("whisper-1", clip)
    assert resp.text == "1024 bytes of audio/mpeg" and resp.usage.audio_seconds == 9 and resp.cost == pytest.approx(0.0009)


async def test_cohere_rerank_puts_the_documents_back_by_index(srv, router):
    def rerank(request):
        body = request.json()
        scored = sorted(((d.count("capital") / 10, i) for i, d in enumerate(body["documents"])), reverse=True)
        return {"id": "r1", "results": [{"index": i, "relevance_score": s} for s, i in scored[: body.get("top_n")]],
                "meta": {"billed_units": {"search_units": 1}}}

    srv.route("POST", "/v2/rerank", rerank)
    docs = ["no", "capital capital", "capital"]
    resp = await router.rerank("rerank-v3.5", "capital?", docs, top_n=2)
    assert [(r.index, r.document) for r in resp.ranking] == [(1, "capital capital"), (2, "capital")]
    assert srv.requests[0].headers["authorization"] == f"Bearer {KEYS['COHERE']}" and resp.cost == pytest.approx(0.002)


AUDIO = bytes(range(256)) * 4  # elevenlabs-python tests/test_music_multipart.py SAMPLE_AUDIO


async def test_elevenlabs_speech_is_the_audio_of_the_reply(srv, router):
    srv.route("POST", "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb", Reply.raw(AUDIO, headers={"content-type": "audio/mpeg"}))
    resp = await router.speak("eleven-flash-v2.5", "Hello there", seed=7)
    (request,) = srv.requests
    assert request.headers["xi-api-key"] == KEYS["ELEVENLABS"] and request.query == {"output_format": "mp3_44100_128"}
    assert request.json() == {"text": "Hello there", "model_id": "eleven_flash_v2_5", "seed": 7}
    assert resp.audio == AUDIO and resp.media_type == "audio/mpeg"
    assert resp.usage.characters == 11 and resp.cost == pytest.approx(11 * 50 / 1e6)


async def test_elevenlabs_quota_401_falls_back_instead_of_failing_as_a_bad_key(srv, router):
    quota = {"detail": {"status": "quota_exceeded", "message": "This request exceeds your quota of 10000."}}
    srv.route("POST", "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb", lambda req: Reply.json(quota, status=401)
              if req.json()["model_id"] == "eleven_multilingual_v2" else Reply.raw(AUDIO, headers={"content-type": "audio/mpeg"}))
    resp = await router.speak("eleven-multilingual-v2", "hi")
    assert resp.model_name == "eleven-flash-v2.5" and resp.audio == AUDIO
    assert resp.attempts[0].error_kind == "rate_limited"
    srv.route("POST", "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb", Reply.json(quota, status=401))
    with pytest.raises(AllAttemptsFailed) as caught:
        await router.speak("eleven-multilingual-v2", "hi")
    assert all(isinstance(e, RateLimitError) for e in caught.value.errors) and "exceeds your quota" in str(caught.value)


async def test_stability_text_only_multipart_and_the_image_with_its_headers(srv, router):
    srv.route("POST", "/v2beta/stable-image/generate/core", Reply.raw(TINY_PNG, headers={
        "content-type": "image/png", "finish-reason": "SUCCESS", "seed": "343940597", "x-request-id": "req-1"}))
    resp = await router.query("stable-image-core", prompt="Lighthouse on a cliff overlooking the ocean", style_preset="photographic")
    (request,) = srv.requests
    assert request.headers["accept"] == "image/*" and request.headers["authorization"] == f"Bearer {KEYS['STABILITY']}"
    assert fields(request.headers, request.body) == {"prompt": "Lighthouse on a cliff overlooking the ocean",
                                                     "output_format": "png", "style_preset": "photographic"}
    assert (resp.content, resp.media_type, resp.finish_reason, resp.extra, resp.id) == (
        TINY_PNG, "image/png", "stop", {"seed": "343940597"}, "req-1")
    assert resp.cost == pytest.approx(0.03)


async def test_stability_ultra_sends_the_image_to_start_from_as_a_file(srv, router):
    srv.route("POST", "/v2beta/stable-image/generate/ultra", Reply.raw(TINY_PNG, headers={"content-type": "image/webp"}))
    await router.query("stable-image-ultra", prompt="in watercolour", image=TINY_PNG, strength=0.4)
    form = fields(srv.requests[0].headers, srv.requests[0].body)
    assert form["image"].data == TINY_PNG and form["strength"] == "0.4"


async def test_stability_moderation_is_a_content_filter_error(srv, router):
    srv.route("POST", "/v2beta/stable-image/generate/core", Reply.json(
        {"id": "x", "name": "content_moderation", "errors": ["Your request was flagged by our content moderation system"]},
        status=403))
    with pytest.raises(ContentFilterError, match="flagged"):
        await router.query("stable-image-core", prompt="x")


async def test_stabilitys_json_answer_is_a_site_layer_away(srv, write_config):
    """With `accept: application/json` Stability answers {image (base64), finish_reason, seed}: a site file
    that extends the bundled provider takes that form instead of the bytes."""
    site = write_config({"providers.d/stability-json.yaml": """
extends: stability
name: stability-json
operations:
  image:
    headers: {accept: application/json}
    response:
      binary: null
      finish_reason: $.finish_reason
      id: null
      extra: {seed: $.seed}
      content: $.image
      content_kind: base64
""", "models.d/s.yaml": "models:\n  core-json: {provider: stability-json, upstream: core, kind: image, pricing: {per_image: 0.03}}\n"})
    srv.route("POST", "/v2beta/stable-image/generate/core", Reply.json(
        {"image": base64.b64encode(TINY_PNG).decode(), "finish_reason": "SUCCESS", "seed": 343940597},
        headers={"content-type": "application/json; type=image/png"}))
    from llm_router._resources import catalog_dir

    env = {"STABILITY_API_KEY": KEYS["STABILITY"], "STABILITY_BASE_URL": srv.url + "/v2beta"}
    async with Router.from_dir(catalog_dir(), site, env=env) as router:
        resp = await router.query("core-json", prompt="a lighthouse")
    assert srv.requests[0].headers["accept"] == "application/json"
    assert fields(srv.requests[0].headers, srv.requests[0].body)["prompt"] == "a lighthouse"
    assert (resp.content, resp.content_kind, resp.finish_reason, resp.extra) == (
        base64.b64encode(TINY_PNG).decode(), "base64", "stop", {"seed": 343940597})


async def test_veo_polls_its_long_running_operation_and_prices_the_seconds_asked_for(srv, write_config):
    """The bundled Veo operation (providers.d/gemini.yaml) against a mock of Google's operations API; a
    site layer only shortens its poll interval."""
    site = write_config({"providers.d/gemini-quick.yaml": (
        "extends: gemini\nname: gemini-quick\noperations:\n  video:\n    poll: {interval_s: 0.01, backoff: null}\n"),
        "models.d/v.yaml": "models:\n  veo-quick:\n    provider: gemini-quick\n    upstream: veo-3.1-generate-preview\n"
                           "    kind: video\n    params: [duration_seconds, resolution]\n    pricing:\n"
                           "      per_output_second: 0.4\n      per_output_second_by: {param: resolution, prices: {4k: 0.6}}\n"
                           "      seconds_from: {param: duration_seconds, default: 8}\n"})
    name = "models/veo-3.1-generate-preview/operations/op-7"
    uri = "https://generativelanguage.googleapis.com/v1beta/files/op7:download?alt=media"
    srv.route("POST", "/v1beta/models/veo-3.1-generate-preview:predictLongRunning", Reply.json({"name": name}))
    srv.script("GET", f"/v1beta/{name}", [Reply.json({"name": name}), Reply.json({"name": name, "metadata": {}})],
               then=Reply.json({"name": name, "done": True, "response": {"generateVideoResponse": {
                   "generatedSamples": [{"video": {"uri": uri}}]}}}))
    from llm_router import catalog_dir

    env = {"GEMINI_API_KEY": "gk-0123456789", "GEMINI_BASE_URL": srv.url + "/v1beta"}
    async with Router.from_dir(catalog_dir(), site, env=env) as router:
        resp = await router.generate_video("veo-quick", "Man with a dog", duration_seconds=4, resolution="4k")
        assert resp.url == uri and resp.cost == pytest.approx(4 * 0.6)
        default = await router.generate_video("veo-quick", "Man with a dog")
        assert default.cost == pytest.approx(8 * 0.4)  # Veo's own default: 8 seconds
    submit = srv.requests[0]
    assert submit.headers["x-goog-api-key"] == "gk-0123456789"
    assert submit.json() == {"instances": [{"prompt": "Man with a dog"}], "parameters": {"durationSeconds": 4, "resolution": "4k"}}
    assert [r.path for r in srv.requests[1:4]] == [f"/v1beta/{name}"] * 3


def test_vertex_does_not_inherit_geminis_veo_operation():
    """Vertex's Veo polls another way (POST :fetchPredictOperation): vertex.yaml deletes the inherited
    operation with `video: null`, which a file that extends another may do even when it is all it says."""
    from llm_router import catalog_dir
    from llm_router.config import load_catalog

    catalog, problems = load_catalog([catalog_dir()], {})
    assert [p for p in problems if p.severity == "error"] == []
    assert "video" in catalog.providers["gemini"].operations and "video" not in catalog.providers["vertex"].operations
    assert "chat" in catalog.providers["vertex"].operations
