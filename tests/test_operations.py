"""The operation kinds beyond chat and image (embed, rerank, speech, transcribe, video), each
declared from YAML only by an invented provider and run over loopback HTTP: typed responses,
usage and cost in each kind's unit, the checks on what a reply holds, and the same routing as
router.query (allow-lists, fallbacks, deployments, limits, budgets, hooks)."""

from __future__ import annotations

import asyncio
import base64

import pytest
from mockserver import Reply

from llm_router import (
    AllAttemptsFailed,
    BudgetExceeded,
    EmbeddingResponse,
    InvalidReplyError,
    InvalidRequestError,
    RateLimitError,
    RerankResponse,
    Router,
    RouterClosedError,
    SpeechResponse,
    TranscriptionResponse,
    UnknownModelError,
    UnsupportedParamError,
    VideoResponse,
)
from llm_router.config import load_catalog

OMNIVOX = """
# yaml-language-server: $schema=../schemas/provider.schema.json
name: omnivox
base_url: https://api.omnivox.example/v1
base_url_env: OMNIVOX_BASE_URL
auth: {header: Authorization, scheme: Bearer, env: OMNIVOX_KEY}
errors: {retry: {max_attempts: 1}}
operations:
  embed:
    path: /embeddings
    body: {model: "{{ model.upstream }}", texts: "{{ input }}", dims: "{{ params.dimensions }}"}
    response:
      vectors: {items: "$.data[*]", vector: $.embedding, index: $.index}
      usage: {input_tokens: $.usage.tokens}
      id: {header: x-request-id}
  rerank:
    path: /rerank
    body: {model: "{{ model.upstream }}", query: "{{ query }}", documents: "{{ documents }}", top_n: "{{ params.top_n }}"}
    response:
      ranking: {items: "$.results[*]", index: $.index, score: $.relevance_score}
      usage: {search_units: $.meta.billed_units.search_units}
      id: $.id
  speech:
    path: "/voices/{{ params.voice }}/speak"
    query: {format: "{{ params.format | default('mp3') }}"}
    body: {text: "{{ text }}", model: "{{ model.upstream }}"}
    response:
      binary: {max_bytes: 4096}
      id: {header: x-trace-id}
  transcribe:
    path: /transcriptions
    body: {model: "{{ model.upstream }}", audio: "{{ file.base64 }}", name: "{{ file.filename }}", type: "{{ file.media_type }}"}
    response:
      content: $.text
      usage: {audio_seconds: $.usage.seconds}
  video:
    path: /videos
    body: {model: "{{ model.upstream }}", prompt: "{{ prompt }}", seconds: "{{ params.seconds }}", resolution: "{{ params.resolution }}"}
    poll:
      url: {template: "/videos/{{ submit.id }}"}
      interval_s: 0.01
      deadline_s: 5
      status: $.status
      pending: [queued, in_progress]
      done: [completed]
      failed: [failed]
      message: $.error.message
      result: {content: $.url, content_kind: url}
"""

MODELS = """
models:
  vox-embed:
    provider: omnivox
    upstream: embed-2
    kind: embed
    pricing: {input_per_million: 0.5}
    params: [dimensions]
    fallbacks: [vox-embed-backup]
  vox-embed-backup:
    provider: omnivox
    upstream: embed-1
    kind: embed
    pricing: {input_per_million: 0.25}
  vox-rerank:
    provider: omnivox
    upstream: rank-3
    kind: rerank
    pricing: {per_search_unit: 0.002}
    params: [top_n]
  vox-voice:
    provider: omnivox
    upstream: tts-1
    kind: speech
    pricing: {per_million_characters: 100}
    params: [voice, format]
    defaults: {voice: alloy}
  vox-ears:
    provider: omnivox
    upstream: stt-1
    kind: transcribe
    pricing: {per_audio_second: 0.0001}
  vox-film:
    provider: omnivox
    upstream: film-1
    kind: video
    pricing:
      per_output_second: 0.4
      per_output_second_by: {param: resolution, prices: {4k: 0.6}}
      seconds_from: {param: seconds, default: 8}
    params: [seconds, resolution]
  vox-chat:
    provider: demo
    kind: chat
    pricing: unknown
"""

AUDIO = bytes(range(256)) * 4  # the ElevenLabs SDK's own multipart test sample


@pytest.fixture
def config(write_config):
    return write_config({"providers.d/omnivox.yaml": OMNIVOX, "models.d/vox.yaml": MODELS})


@pytest.fixture
async def router(srv, config):
    from llm_router._resources import catalog_dir

    async with Router.from_dir(catalog_dir(), config,
                               env={"OMNIVOX_KEY": "vx-key-123456", "OMNIVOX_BASE_URL": srv.url + "/v1"}) as r:
        yield r


def embedding_reply(*vectors, tokens=7):
    return {"data": [{"embedding": v, "index": i} for i, v in enumerate(vectors)], "usage": {"tokens": tokens}}


# --- embed -----------------------------------------------------------------------------------------


async def test_embed_returns_one_vector_per_text_in_order_with_its_cost(srv, router):
    # the reply lists the vectors out of order; `index` puts each back in its place
    srv.route("POST", "/v1/embeddings", Reply.json(
        {"data": [{"embedding": [0.5, 0.5], "index": 1}, {"embedding": [1, 0], "index": 0}], "usage": {"tokens": 12}},
        headers={"x-request-id": "req-77"}))
    resp = await router.embed("vox-embed", ["first", "second"], dimensions=2)
    assert isinstance(resp, EmbeddingResponse)
    assert resp.vectors == [[1.0, 0.0], [0.5, 0.5]] and resp.dimensions == 2
    assert srv.requests[0].json() == {"model": "embed-2", "texts": ["first", "second"], "dims": 2}
    assert srv.requests[0].headers["authorization"] == "Bearer vx-key-123456"
    assert resp.usage.input_tokens == 12 and resp.cost == pytest.approx(12 * 0.5 / 1e6)
    assert resp.cost_breakdown.input == pytest.approx(resp.cost)
    assert resp.id == "req-77" and (resp.model_name, resp.provider) == ("vox-embed", "omnivox")


async def test_embed_takes_one_string_as_a_list_of_one(srv, router):
    srv.route("POST", "/v1/embeddings", Reply.json(embedding_reply([0.25, -1])))
    resp = await router.embed("vox-embed", "just one")
    assert srv.requests[0].json()["texts"] == ["just one"] and resp.vectors == [[0.25, -1.0]]


@pytest.mark.parametrize("reply,message", [
    (embedding_reply([1, 0]), "1 vector.* for 2 input"),
    ({"data": [{"embedding": [1], "index": 0}, {"embedding": [2], "index": 0}]}, "index 0.*twice"),
    ({"data": [{"embedding": [1], "index": 0}, {"embedding": [2], "index": 5}]}, "index 5"),
    (embedding_reply([1, 0], [1]), "differ in length"),
    (embedding_reply([1, "x"], [1, 2]), "not a list of numbers"),
    (embedding_reply([], []), "is empty"),
])
async def test_an_embed_reply_that_breaks_its_promise_is_an_invalid_reply(srv, router, reply, message):
    srv.route("POST", "/v1/embeddings", Reply.json(reply))
    with pytest.raises(InvalidReplyError, match=message) as caught:
        await router.embed("vox-embed-backup", ["a", "b"])
    assert caught.value.provider == "omnivox"


@pytest.mark.parametrize("bad", [None, "", [], ["ok", ""], ["ok", 3], {"text": "x"}])
async def test_embed_input_that_is_not_texts_is_refused_before_sending(srv, router, bad):
    with pytest.raises(InvalidRequestError, match="input"):
        await router.embed("vox-embed", bad)
    assert srv.requests == []


async def test_embed_falls_back_to_the_next_embed_model(srv, router):
    def reply(request):
        if request.json()["model"] == "embed-2":
            return Reply.json({"error": {"message": "down"}}, status=503)
        return embedding_reply([1.0], tokens=4)

    srv.route("POST", "/v1/embeddings", reply)
    resp = await router.embed("vox-embed", "x", dimensions=3)
    assert resp.model_name == "vox-embed-backup" and resp.cost == pytest.approx(4 * 0.25 / 1e6)
    assert [a.model for a in resp.attempts] == ["vox-embed", "vox-embed-backup"] and not resp.attempts[0].ok
    assert "dims" not in srv.requests[1].json()  # a fallback gets only fallback_config's params


async def test_a_param_outside_the_allow_list_is_refused(srv, router):
    with pytest.raises(UnsupportedParamError, match="vox-rerank"):
        await router.rerank("vox-rerank", "q", ["d"], temperature=1)
    assert srv.requests == []


@pytest.mark.parametrize("call,message", [
    (lambda r: r.embed("vox-chat", "x"), "'vox-chat' is a chat model; router.embed"),
    (lambda r: r.speak("vox-embed", "x"), "an embed model; router.speak"),
    (lambda r: r.query("vox-embed", prompt="x"), "embed model: call router.embed"),
    (lambda r: r.query("vox-film", [{"role": "user", "content": "x"}]), "video model: call router.generate_video"),
])
async def test_a_model_of_another_kind_is_refused_with_the_method_to_call(srv, router, call, message):
    with pytest.raises(InvalidRequestError, match=message):
        await call(router)
    assert srv.requests == []


async def test_an_unknown_model_lists_close_names(router):
    with pytest.raises(UnknownModelError, match="vox-embed"):
        await router.embed("vox-embedd", "x")


async def test_provider_slash_upstream_reaches_the_providers_operation_of_the_kind(srv, router):
    srv.route("POST", "/v1/embeddings", Reply.json(embedding_reply([3.0])))
    resp = await router.embed("omnivox/embed-9", "x")
    assert srv.requests[0].json()["model"] == "embed-9" and resp.vectors == [[3.0]] and resp.cost is None


async def test_hooks_see_each_attempt_and_the_typed_response(srv, router):
    srv.route("POST", "/v1/embeddings", Reply.json(embedding_reply([1.0])))
    seen = []
    router.add_hook("on_attempt", lambda attempt: seen.append(("attempt", attempt.model, attempt.ok)))
    router.add_hook("on_success", lambda response: seen.append(("success", type(response).__name__)))
    await router.embed("vox-embed", "x")
    assert seen == [("attempt", "vox-embed", True), ("success", "EmbeddingResponse")]
    assert router.usage_report()["models"]["vox-embed"]["input_tokens"] == 7


# --- rerank ----------------------------------------------------------------------------------------

COHERE_DOCS = [
    "Carson City is the capital city of the American state of Nevada.",
    "The Commonwealth of the Northern Mariana Islands is a group of islands in the Pacific Ocean. Its capital is Saipan.",
    "Capitalization or capitalisation in English grammar is the use of a capital letter at the start of a word.",
    "Washington, D.C. (also known as simply Washington or D.C., and officially as the District of Columbia) "
    "is the capital of the United States. It is a federal district.",
    "Capital punishment has existed in the United States since beforethe United States was a country.",
]
# Cohere's API reference example reply (research18/02-cohere-rerank.md)
COHERE_REPLY = {"id": "07734bd2-2473-4f07-94e1-0d9f0e6843cf",
                "results": [{"index": 3, "relevance_score": 0.999071}, {"index": 4, "relevance_score": 0.7867867},
                            {"index": 0, "relevance_score": 0.32713068}],
                "meta": {"api_version": {"version": "2", "is_experimental": False}, "billed_units": {"search_units": 1}}}


async def test_rerank_ranks_the_documents_with_their_text(srv, router):
    srv.route("POST", "/v1/rerank", Reply.json(COHERE_REPLY))
    resp = await router.rerank("vox-rerank", "What is the capital of the United States?", COHERE_DOCS, top_n=3)
    assert isinstance(resp, RerankResponse)
    assert [(r.index, r.score) for r in resp.ranking] == [(3, 0.999071), (4, 0.7867867), (0, 0.32713068)]
    assert resp.ranking[0].document.startswith("Washington, D.C.")
    assert srv.requests[0].json()["top_n"] == 3 and srv.requests[0].json()["documents"] == COHERE_DOCS
    assert resp.usage.search_units == 1 and resp.cost == pytest.approx(0.002) and resp.id == COHERE_REPLY["id"]


@pytest.mark.parametrize("results,message", [
    ([{"index": 9, "relevance_score": 0.5}], "index 9"),
    ([{"index": 0, "relevance_score": 0.5}, {"index": 0, "relevance_score": 0.4}], "twice"),
    ([{"index": 0, "relevance_score": "high"}], "not a number"),
    ([], "no ranked documents"),
])
async def test_a_ranking_outside_the_documents_is_an_invalid_reply(srv, router, results, message):
    srv.route("POST", "/v1/rerank", Reply.json({"results": results}))
    with pytest.raises(InvalidReplyError, match=message):
        await router.rerank("vox-rerank", "q", ["a", "b"])


async def test_rerank_without_a_reported_search_unit_has_an_unknown_cost(srv, router):
    srv.route("POST", "/v1/rerank", Reply.json({"results": [{"index": 0, "relevance_score": 0.1}]}))
    resp = await router.rerank("vox-rerank", "q", ["a"])
    assert resp.usage.search_units is None and resp.cost is None and resp.cost_breakdown is None


# --- speech ----------------------------------------------------------------------------------------


async def test_speak_returns_the_audio_bytes_and_their_media_type(srv, router):
    srv.route("POST", "/v1/voices/alloy/speak", Reply.raw(AUDIO, headers={"content-type": "audio/mpeg", "x-trace-id": "t-1"}))
    resp = await router.speak("vox-voice", "The first move is what sets everything in motion.")
    assert isinstance(resp, SpeechResponse)
    assert resp.audio == AUDIO and resp.media_type == "audio/mpeg" and resp.id == "t-1"
    assert srv.requests[0].query == {"format": "mp3"}
    assert srv.requests[0].json() == {"text": "The first move is what sets everything in motion.", "model": "tts-1"}
    assert resp.usage.characters == 49 and resp.cost == pytest.approx(49 * 100 / 1e6)
    assert "audio=" not in repr(resp)  # the bytes stay out of reprs and logs


async def test_a_voice_in_the_path_can_never_change_the_path(srv, router):
    with pytest.raises(InvalidRequestError, match="cannot be placed in a URL"):
        await router.speak("vox-voice", "hi", voice="../../admin")
    assert srv.requests == []


async def test_an_audio_reply_over_its_cap_fails_while_reading(srv, router):
    srv.route("POST", "/v1/voices/alloy/speak", Reply.raw(b"\0" * 4097, headers={"content-type": "audio/mpeg"}))
    with pytest.raises(InvalidReplyError, match="larger than 4096 bytes"):
        await router.speak("vox-voice", "hi")


async def test_a_json_reply_where_audio_is_expected_is_an_invalid_reply(srv, router):
    srv.route("POST", "/v1/voices/alloy/speak", Reply.json({"status": "queued"}))
    with pytest.raises(InvalidReplyError, match="JSON"):
        await router.speak("vox-voice", "hi")


async def test_an_error_status_on_a_binary_operation_is_read_as_json(srv, router):
    srv.route("POST", "/v1/voices/alloy/speak", Reply.json({"error": {"message": "voice not found"}}, status=404))
    with pytest.raises(Exception, match="voice not found"):
        await router.speak("vox-voice", "hi")


# --- transcribe ------------------------------------------------------------------------------------


async def test_transcribe_sends_the_file_and_reads_the_text(srv, router, tmp_path):
    srv.route("POST", "/v1/transcriptions", Reply.json({"text": "hello there", "usage": {"type": "duration", "seconds": 9}}))
    audio = tmp_path / "clip.wav"
    audio.write_bytes(AUDIO)
    resp = await router.transcribe("vox-ears", audio)
    assert isinstance(resp, TranscriptionResponse) and resp.text == "hello there"
    body = srv.requests[0].json()
    assert base64.b64decode(body["audio"]) == AUDIO and body["name"] == "clip.wav" and body["type"] in ("audio/x-wav", "audio/wav")
    assert resp.usage.audio_seconds == 9 and resp.cost == pytest.approx(9 * 0.0001)


async def test_silence_is_an_empty_transcript_not_an_error(srv, router):
    srv.route("POST", "/v1/transcriptions", Reply.json({"text": "", "usage": {"type": "duration", "seconds": 3}}))
    resp = await router.transcribe("vox-ears", b"\0" * 64, filename="quiet.wav")
    assert resp.text == "" and resp.cost == pytest.approx(3 * 0.0001)
    srv.route("POST", "/v1/transcriptions", Reply.json({"usage": {"type": "duration", "seconds": 3}}))
    with pytest.raises(InvalidReplyError, match=r"nothing at \$\.text"):
        await router.transcribe("vox-ears", b"\0" * 64, filename="quiet.wav")


@pytest.mark.parametrize("file,message", [
    (42, "file must be bytes, a pathlib.Path.*got int"),
    ("clip.wav", "a string is taken only as an http"),
    (["a"], "got list"),
])
async def test_a_file_that_is_neither_bytes_nor_a_path_nor_a_url_is_refused(srv, router, file, message):
    with pytest.raises(InvalidRequestError, match=message):
        await router.transcribe("vox-ears", file)
    assert srv.requests == []


async def test_a_missing_file_is_refused_naming_it(router, tmp_path):
    with pytest.raises(InvalidRequestError, match="cannot read the file"):
        await router.transcribe("vox-ears", tmp_path / "nope.wav")


# --- video -----------------------------------------------------------------------------------------


def video_job(srv, final):
    srv.route("POST", "/v1/videos", Reply.json({"id": "v1", "status": "queued"}))
    srv.script("GET", "/v1/videos/v1", [Reply.json({"id": "v1", "status": "in_progress"})], then=Reply.json(final))


async def test_generate_video_polls_until_done_and_prices_the_requested_seconds(srv, router):
    video_job(srv, {"id": "v1", "status": "completed", "url": "https://cdn.omnivox.example/v1.mp4"})
    resp = await router.generate_video("vox-film", "a calico cat playing a piano", seconds=4, resolution="4k")
    assert isinstance(resp, VideoResponse) and resp.url == "https://cdn.omnivox.example/v1.mp4" and resp.video is None
    assert srv.requests[0].json() == {"model": "film-1", "prompt": "a calico cat playing a piano", "seconds": 4,
                                      "resolution": "4k"}
    assert resp.cost == pytest.approx(4 * 0.6) and resp.cost_breakdown.output == pytest.approx(4 * 0.6)


async def test_video_seconds_default_from_the_pricing_and_the_base_price_per_second(srv, router):
    video_job(srv, {"id": "v1", "status": "completed", "url": "https://cdn.omnivox.example/v1.mp4"})
    resp = await router.generate_video("vox-film", "a cat")
    assert resp.cost == pytest.approx(8 * 0.4)


async def test_a_failed_video_job_raises_its_message(srv, router):
    video_job(srv, {"id": "v1", "status": "failed", "error": {"message": "moderation blocked"}})
    with pytest.raises(Exception, match="moderation blocked"):
        await router.generate_video("vox-film", "x")


# --- routing: deployments, limits, budgets -------------------------------------------------------------


async def test_deployments_limits_and_budgets_apply_to_every_kind(srv, write_config):
    from llm_router._resources import catalog_dir

    config = write_config({
        "providers.d/omnivox.yaml": OMNIVOX,
        "providers.d/omnivox-eu.yaml": OMNIVOX.replace("name: omnivox", "name: omnivox-eu").replace(
            "OMNIVOX_BASE_URL", "OMNIVOX_EU_BASE_URL"),
        "models.d/vox.yaml": """
models:
  split-embed:
    kind: embed
    pricing: {input_per_million: 1000000}
    deployments:
      - {provider: omnivox, upstream: down, limits: {rpm: 1, max_wait_s: 0}}
      - {provider: omnivox-eu, upstream: up, limits: {rpm: 1, max_wait_s: 0}}
  dear-embed:
    provider: omnivox-eu
    kind: embed
    pricing: {input_per_million: 1000000}
""",
        "router.yaml": "budgets:\n  - {scope: model, name: dear-embed, period: day, limit_usd: 10}\n"})
    srv.route("POST", "/v1/embeddings", Reply.json({"error": {"message": "down"}}, status=500))
    srv.route("POST", "/eu/embeddings", Reply.json(embedding_reply([1.0], tokens=6)))
    env = {"OMNIVOX_KEY": "k-123456", "OMNIVOX_BASE_URL": srv.url + "/v1", "OMNIVOX_EU_BASE_URL": srv.url + "/eu"}
    async with Router.from_dir(catalog_dir(), config, env=env) as router:
        resp = await router.embed("split-embed", "x")
        assert resp.deployment == "omnivox-eu" and [a.deployment for a in resp.attempts] == ["omnivox", "omnivox-eu"]
        assert resp.cost == pytest.approx(6.0)
        with pytest.raises(AllAttemptsFailed) as caught:  # each deployment's 1 rpm is used up: nothing is sent
            await router.embed("split-embed", "x")
        assert [type(e) for e in caught.value.errors] == [RateLimitError, RateLimitError]
        assert len(srv.requests) == 2
        for _ in range(2):  # $6, then $12 of the $10 a day
            await router.embed("dear-embed", "x")
        assert router.usage_report()["budgets"][0]["spent_usd"] == pytest.approx(12.0)
        with pytest.raises(BudgetExceeded):
            await router.embed("dear-embed", "x")
        assert len(srv.requests) == 4


async def test_closing_the_router_ends_a_call_in_flight_and_cancelling_one_records_it(srv, config):
    from llm_router._resources import catalog_dir

    srv.route("POST", "/v1/voices/alloy/speak", Reply.hang(10))
    router = Router.from_dir(catalog_dir(), config, env={"OMNIVOX_KEY": "vx-key-123456", "OMNIVOX_BASE_URL": srv.url + "/v1"})
    seen = []
    router.add_hook("on_attempt", lambda attempt: seen.append(attempt.error_kind))
    cancelled = asyncio.create_task(router.speak("vox-voice", "hi"))
    await asyncio.sleep(0.2)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    closed = asyncio.create_task(router.speak("vox-voice", "hi"))
    await asyncio.sleep(0.2)
    await router.aclose()
    with pytest.raises(RouterClosedError):
        await asyncio.wait_for(closed, 2)
    await asyncio.sleep(0.05)
    assert seen == ["cancelled", "closed"]


def test_the_invented_provider_is_pure_yaml_and_validates(config):
    from llm_router._resources import catalog_dir

    catalog, problems = load_catalog([catalog_dir(), config], {"OMNIVOX_KEY": "k"})
    assert [p for p in problems if p.severity == "error"] == []
    assert {k: m.kind for k, m in catalog.models.items() if k.startswith("vox-")} == {
        "vox-embed": "embed", "vox-embed-backup": "embed", "vox-rerank": "rerank", "vox-voice": "speech",
        "vox-ears": "transcribe", "vox-film": "video", "vox-chat": "chat"}



# --- config mistakes: found by validate, with the file and line -------------------------------------

PROVIDER = "name: p\nbase_url: https://p.example\nauth: {header: x-key, env: P_KEY}\noperations:\n"


@pytest.mark.parametrize("operations,models,message", [
    ("  embed:\n    path: /e\n    response: {content: $.text}\n", "", "an embed operation's reply needs `vectors` (it has `content`)"),
    ("  rerank:\n    path: /r\n    response: {usage: {search_units: $.n}}\n", "", "a rerank operation's reply needs `ranking`"),
    ("  embed:\n    path: /e\n    body: {q: '{{ query }}'}\n    response: {vectors: {items: '$.d[*]', vector: $.v}}\n", "",
     "unknown variable(s) query"),
    ("  speech:\n    path: /s\n    response: {binary: {}, content: $.audio}\n", "", "`content` cannot be used with `binary`"),
    ("  embed:\n    path: /e\n    arrays: brackets\n    response: {vectors: {items: '$.d[*]', vector: $.v}}\n", "",
     "applies to multipart and form bodies only"),
    ("  embed:\n    path: /e\n    response: {vectors: {items: '$.d[*]', vector: $.v}}\n    stream: {handler: {delta: $.d}}\n", "",
     "only chat operations stream"),
    ("  video:\n    path: /v\n    poll: {url: {from: $.u}, status: $.s, pending: [P], done: [D],\n"
     "           result: {content: $.r, id: {header: x-id}}}\n", "", "a poll result cannot read reply headers"),
    ("  speech:\n    path: /s\n    response: {binary: {}}\n", "  m: {provider: p, kind: speech, pricing: {per_image: 1}}\n",
     "a speech model's pricing needs per_million_characters"),
    ("  video:\n    path: /v\n    response: {content: $.url, content_kind: url}\n",
     "  m: {provider: p, kind: video, pricing: {per_output_second: 1, seconds_from: {param: duration, default: 8}}}\n",
     "seconds_from names 'duration', which is not in its `params` allow-list"),
    ("  embed:\n    path: /e\n    response: {vectors: {items: '$.d[*]', vector: $.v}}\n",
     "  m: {provider: p, kind: rerank, pricing: unknown}\n", "is a rerank model but provider 'p' has no `rerank` operation"),
    ("  transcribe:\n    path: /t\n    encoding: multipart\n    headers: {content-type: application/json}\n"
     "    response: {content: $.text}\n", "", "the transcribe operation sends multipart bodies; declare multipart/form-data"),
    ("  embed:\n    path: /e\n    headers: {content-type: application/x-www-form-urlencoded}\n"
     "    response: {vectors: {items: '$.d[*]', vector: $.v}}\n", "", "the embed operation sends JSON bodies"),
])
def test_operation_config_mistakes_are_reported_where_they_are(write_config, operations, models, message):
    config = write_config({"providers.d/p.yaml": PROVIDER + operations, "models.d/m.yaml": "models:\n" + (models or "  {}\n")})
    _, problems = load_catalog([config], {"P_KEY": "k"})
    errors = [p for p in problems if p.severity == "error"]
    assert any(message in p.message for p in errors), errors
    assert all(p.line is not None for p in errors)


def test_llm_router_models_states_each_kinds_price_in_its_unit(capsys):
    from llm_router.cli import main

    assert main(["models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["whisper-1"].endswith("$0.006/min of audio") and " transcribe " in lines["whisper-1"]
    assert lines["rerank-v3.5"].endswith("$0.002/search unit")
    assert lines["eleven-flash-v2.5"].endswith("$50 per M characters")
    assert lines["text-embedding-3-small"].endswith("$0.02 per M input")
