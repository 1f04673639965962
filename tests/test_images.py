"""Image models over loopback HTTP: a one-shot URL reply (Recraft), a base64 reply (OpenAI), and
BFL's submit-then-poll loop with its statuses, deadline, poll cap, host check and cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest
from mockserver import TINY_PNG_B64, BflSimulator, MockServer, Reply, openai_image_b64_reply, recraft_reply

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.errors import ProviderError, ProviderTimeout

KEY = "test-bfl-key"
CONFIG = {
    "providers.d/fastbfl.yaml": """
extends: bfl
name: fastbfl
operations:
  image:
    poll: {interval_s: 0.05, backoff: null, deadline_s: 0.3}
""",
    "providers.d/cappedbfl.yaml": """
extends: bfl
name: cappedbfl
operations:
  image:
    poll: {interval_s: 0.01, backoff: null, deadline_s: 30, max_polls: 3}
""",
    "providers.d/patientbfl.yaml": """
extends: bfl
name: patientbfl
operations:
  image:
    poll: {interval_s: 0.05, backoff: null, deadline_s: 30}
""",
    "models.d/images.yaml": """
models:
  fast-flux: {provider: fastbfl, upstream: flux-pro-1.1, kind: image, pricing: {per_image: 0.04}, params: [width, height, seed]}
  capped-flux: {provider: cappedbfl, upstream: flux-pro-1.1, kind: image, pricing: {per_image: 0.04}}
  patient-flux: {provider: patientbfl, upstream: flux-pro-1.1, kind: image, pricing: {per_image: 0.04}}
""",
}


@pytest.fixture
def router(srv, write_config):
    config = write_config(CONFIG)
    env = {"BFL_API_KEY": KEY, "BFL_BASE_URL": srv.url + "/v1",
           "RECRAFT_API_KEY": "rk-test-123456", "RECRAFT_BASE_URL": srv.url + "/v1",
           "OPENAI_API_KEY": "sk-test-123456", "OPENAI_BASE_URL": srv.url + "/v1"}
    return Router.from_dir(catalog_dir(), config, env=env)


async def test_recraft_answers_with_a_url(srv, router):
    srv.route("POST", "/v1/images/generations", Reply.json(recraft_reply("https://img.recraft.ai/x.png")))
    resp = await router.query("recraftv3", prompt="a red fox", style="digital_illustration", size="1024x1024")
    assert resp.content == "https://img.recraft.ai/x.png" and resp.content_kind == "url"
    (request,) = srv.requests
    assert request.headers["authorization"] == "Bearer rk-test-123456"
    assert request.json() == {"model": "recraftv3", "prompt": "a red fox", "style": "digital_illustration",
                              "size": "1024x1024"}
    assert resp.cost == pytest.approx(0.04)
    await router.aclose()


async def test_openai_image_answers_with_base64(srv, router):
    srv.route("POST", "/v1/images/generations", Reply.json(openai_image_b64_reply(input_tokens=12, output_tokens=1056)))
    resp = await router.query("gpt-image-1", prompt="a red fox")
    assert resp.content == TINY_PNG_B64 and resp.content_kind == "base64"
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (12, 1056)
    body = srv.requests[0].json()
    assert (body["model"], body["prompt"]) == ("gpt-image-1", "a red fox")
    await router.aclose()


async def test_the_last_user_message_is_the_prompt(srv, router):
    srv.route("POST", "/v1/images/generations", Reply.json(recraft_reply()))
    await router.query("recraftv3", [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                                     {"role": "user", "content": "a blue whale"}])
    assert srv.requests[0].json()["prompt"] == "a blue whale"
    await router.aclose()


async def test_bfl_submits_with_x_key_and_polls_until_ready(srv, router):
    bfl = BflSimulator(srv, api_key=KEY, pending_polls=2)
    resp = await router.query("fast-flux", prompt="a lighthouse", width=512, height=512)
    submit, *polls = srv.requests
    assert submit.method == "POST" and submit.path == "/v1/flux-pro-1.1"
    assert submit.headers["x-key"] == KEY
    assert submit.json() == {"prompt": "a lighthouse", "width": 512, "height": 512}
    assert [p.path for p in polls] == ["/v1/get_result"] * 3 and all(p.headers["x-key"] == KEY for p in polls)
    assert bfl.polls == 3
    job_id = next(iter(bfl.jobs))
    assert resp.content == f"{srv.url}/bfl/samples/{job_id}.png" and resp.content_kind == "url"
    assert resp.id == job_id
    assert resp.cost == pytest.approx(0.04)
    await router.aclose()


async def test_bfl_failure_status_raises_naming_the_status(srv, router):
    BflSimulator(srv, api_key=KEY, pending_polls=1, final_status="Content Moderated",
                 details={"message": "flagged"})
    with pytest.raises(ProviderError, match="Content Moderated") as info:
        await router.query("fast-flux", prompt="x")
    assert info.value.code == "Content Moderated"
    assert info.value.provider == "fastbfl"
    await router.aclose()


async def test_a_polling_url_on_another_host_is_refused_and_gets_no_key(srv, router):
    with MockServer() as other:
        BflSimulator(srv, api_key=KEY, poll_server=other, polling_base=f"http://localhost:{other.port}")
        with pytest.raises(ProviderError, match="not one of the provider's hosts") as info:
            await router.query("fast-flux", prompt="x")
        assert other.requests == []
        assert "localhost" in str(info.value)
    assert srv.count("/v1/flux-pro-1.1") == 1
    await router.aclose()


async def test_a_job_pending_past_the_deadline_raises_provider_timeout(srv, router):
    BflSimulator(srv, api_key=KEY, pending_polls=10**6)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="deadline_s"):
        await router.query("fast-flux", prompt="x")
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.5
    await router.aclose()


async def test_max_polls_is_honoured(srv, router):
    bfl = BflSimulator(srv, api_key=KEY, pending_polls=10**6)
    with pytest.raises(ProviderTimeout, match="3 polls"):
        await router.query("capped-flux", prompt="x")
    assert bfl.polls == 3
    await router.aclose()


async def test_cancelling_the_call_stops_polling_at_once(srv, router):
    bfl = BflSimulator(srv, api_key=KEY, pending_polls=10**6)
    task = asyncio.create_task(router.query("patient-flux", prompt="x"))
    assert await srv.async_wait_until(lambda: bfl.polls >= 1, timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    polls_at_cancel = bfl.polls
    await asyncio.sleep(0.3)
    assert bfl.polls == polls_at_cancel
    await router.aclose()
