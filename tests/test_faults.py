"""Fault injection over real loopback HTTP: every call returns a correct LLMResponse or raises a
typed RouterError with a useful message, within its deadline; with a healthy fallback every call
succeeds; load, rate limits, leaks and cancellation hold up."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
from mockserver import BflSimulator, MockServer, Reply, Request, openai_chat_reply, openai_chat_sse, openai_error

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.errors import (
    InvalidReplyError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    RouterError,
    ServerError,
    StreamInterrupted,
)

KEY = "sk-fault-5e1d0c9b"
READ_S, TOTAL_S, ATTEMPTS = 0.5, 0.8, 3
DEADLINE_S = ATTEMPTS * TOTAL_S + 1.5  # every try bounded by total_s, plus tiny backoffs and slack


def _chat_provider(name: str, read_s: float = READ_S, total_s: float = TOTAL_S) -> str:
    return f"""\
extends: openai-compatible
name: {name}
base_url: http://127.0.0.1:9/v1
base_url_env: {name.upper()}_BASE_URL
auth: {{header: Authorization, scheme: Bearer, env: FAULT_KEY}}
hosts: [127.0.0.1]
timeouts: {{connect_s: 1, read_s: {read_s}, total_s: {total_s}}}
operations:
  chat:
    path: /chat/completions
    response:
      content: $.choices[0].message.content
errors:
  retry:
    max_attempts: {ATTEMPTS}
    backoff: {{initial_s: 0.01, max_s: 0.02}}
    max_wait_s: 1
"""


POLL_PROVIDER = """\
name: polly
base_url: http://127.0.0.1:9/p
base_url_env: POLLY_BASE_URL
auth: {header: x-key, env: FAULT_KEY}
hosts: [127.0.0.1]
timeouts: {connect_s: 1, read_s: 1, total_s: 2}
operations:
  image:
    path: "/{{ model.upstream }}"
    body: {prompt: "{{ prompt }}"}
    poll:
      url: {from: $.polling_url}
      interval_s: 0.2
      deadline_s: 30
      max_polls: 200
      status: $.status
      pending: [Pending]
      done: [Ready]
      failed: [Error, Task not found]
      message: $.details
      result: {content: $.result.sample, content_kind: url}
errors:
  retry:
    max_attempts: 3
    backoff: {initial_s: 0.01, max_s: 0.02}
"""

MODELS = """\
models:
  flaky-m:
    provider: flaky
    upstream: f-1
    pricing: unknown
  flaky-fb:
    provider: flaky
    upstream: f-1
    pricing: unknown
    fallbacks: [healthy-m]
  healthy-m:
    provider: healthy
    upstream: h-1
    pricing: unknown
  limited:
    provider: healthy
    upstream: lim-1
    pricing: unknown
    limits: {rpm: 100, max_wait_s: 0}
    fallbacks: [healthy-m]
  polly-m:
    provider: polly
    upstream: flux-x
    kind: image
    pricing: unknown
"""

MSG = [{"role": "user", "content": "hi"}]


def _healthy(req: Request) -> Reply:
    if req.json().get("stream"):
        return Reply.sse(openai_chat_sse(["he", "al", "thy"]))
    return Reply.json(openai_chat_reply("healthy"))


@pytest.fixture
def srv():
    with MockServer() as server:
        server.route("POST", "/h/chat/completions", _healthy)
        yield server


@pytest.fixture
def config_dir(write_config) -> Path:
    return write_config({
        "providers.d/flaky.yaml": _chat_provider("flaky"),
        # the healthy fallback gets roomy timeouts: on a loaded CI machine it must not be the one that fails
        "providers.d/healthy.yaml": _chat_provider("healthy", read_s=5, total_s=8),
        "providers.d/polly.yaml": POLL_PROVIDER,
        "models.d/fault.yaml": MODELS,
    })


@pytest.fixture
async def router(srv, config_dir):
    env = {"FAULT_KEY": KEY, "FLAKY_BASE_URL": srv.url + "/f", "HEALTHY_BASE_URL": srv.url + "/h",
           "POLLY_BASE_URL": srv.url + "/p"}
    r = Router.from_dir(catalog_dir(), config_dir, env=env)
    yield r
    await r.aclose()


FLAKY = "/f/chat/completions"
HTML = "<!DOCTYPE html><html><head><title>502</title></head><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"

# (id, reply, expected error class(es), a fragment of its message)
FAULTS: list[tuple[str, Reply, Any, str]] = [
    ("http-500", Reply.json(openai_error("engine exploded", "server_error"), status=500), ServerError, "engine exploded"),
    ("429-retry-after-0", Reply.json(openai_error("slow down", "rate_limit"), status=429, headers={"retry-after": "0"}),
     RateLimitError, "slow down"),
    ("429-no-retry-after", Reply.json(openai_error("quota", "rate_limit"), status=429), RateLimitError, "quota"),
    ("429-retry-after-too-long", Reply.json(openai_error("later", "rate_limit"), status=429, headers={"retry-after": "30"}),
     RateLimitError, "max_wait_s"),
    ("connection-reset", Reply.reset(), ProviderConnectionError, "connection failed"),
    ("read-timeout", Reply.hang(5), ProviderTimeout, "timed out"),
    ("slow-body", Reply.slow_body(openai_chat_reply("late"), chunk_delay_s=0.25, pieces=6), ProviderTimeout, "timed out"),
    ("truncated-json", Reply.truncated(b'{"choices": [{"message": {"content": "par'),
     (ServerError, ProviderConnectionError), ""),
    ("html-error-page", Reply.text(HTML, status=502, content_type="text/html"), ServerError, "502 Bad Gateway"),
    ("empty-body-200", Reply.raw(b"", status=200), InvalidReplyError, "not valid JSON"),
    ("empty-body-503", Reply.raw(b"", status=503), ServerError, "empty body"),
    ("json-without-content", Reply.json({"choices": []}), InvalidReplyError, "nothing at"),
]


@pytest.mark.parametrize(("reply", "expected", "fragment"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
async def test_fault_raises_a_typed_error_with_the_providers_message_within_the_deadline(
    router, srv, reply, expected, fragment
) -> None:
    srv.route("POST", FLAKY, reply)
    started = time.monotonic()
    with pytest.raises(expected) as info:
        async with asyncio.timeout(DEADLINE_S):
            await router.query("flaky-m", messages=MSG)
    assert isinstance(info.value, RouterError)
    assert fragment in str(info.value)
    assert "flaky" in str(info.value)  # names the provider
    assert "<html" not in str(info.value).lower()
    assert KEY not in str(info.value)
    assert time.monotonic() - started < DEADLINE_S
    if "too-long" in str(fragment) or fragment == "max_wait_s":
        assert srv.count(FLAKY) == 1  # asked to wait past max_wait_s: raised at once, no sleep


@pytest.mark.parametrize("reply", [f[1] for f in FAULTS], ids=[f[0] for f in FAULTS])
async def test_fault_with_a_healthy_fallback_succeeds(router, srv, reply) -> None:
    srv.route("POST", FLAKY, reply)
    async with asyncio.timeout(DEADLINE_S):
        resp = await router.query("flaky-fb", messages=MSG)
    assert resp.content == "healthy"
    assert resp.model_name == "healthy-m"
    assert [a.model for a in resp.attempts] == ["flaky-fb", "healthy-m"]
    assert resp.attempts[0].ok is False and resp.attempts[1].ok is True


async def test_a_500_then_success_is_retried_within_the_model(router, srv) -> None:
    srv.script("POST", FLAKY, [Reply.json(openai_error("blip"), status=500)], then=Reply.json(openai_chat_reply("second")))
    async with asyncio.timeout(DEADLINE_S):
        resp = await router.query("flaky-fb", messages=MSG)
    assert (resp.content, resp.model_name, resp.attempts[0].tries) == ("second", "flaky-fb", 2)


async def test_retry_after_is_honoured_before_the_retry(router, srv) -> None:
    srv.script("POST", FLAKY, [Reply.json(openai_error("wait"), status=429, headers={"retry-after": "0.4"})],
               then=Reply.json(openai_chat_reply("ok")))
    started = time.monotonic()
    async with asyncio.timeout(DEADLINE_S):
        resp = await router.query("flaky-m", messages=MSG)
    assert resp.content == "ok"
    gap = srv.requests[1].received_at - srv.requests[0].received_at
    assert 0.35 <= gap < 1.0
    assert time.monotonic() - started < 1.5


# --- streams ------------------------------------------------------------------------------------

CUT_MID_EVENT = 'data: {"id":"x","choices":[{"index":0,"delta":{"content":"tru'


async def _collect(router: Router, model: str) -> list[str]:
    out = []
    async for chunk in router.stream(model, messages=MSG):
        out.append(chunk.delta)
    return out


async def test_stream_cut_mid_event_after_chunks_raises_stream_interrupted(router, srv) -> None:
    events = openai_chat_sse(["one ", "two "])[:3]  # role chunk + two deltas, no finish, no [DONE]
    srv.route("POST", FLAKY, Reply.cut_sse([*events, CUT_MID_EVENT], after=4))
    got: list[str] = []
    with pytest.raises(StreamInterrupted, match="after 8 characters") as info:
        async with asyncio.timeout(DEADLINE_S):
            async for chunk in router.stream("flaky-fb", messages=MSG):
                got.append(chunk.delta)
    assert "".join(got) == "one two "  # no fallback once chunks were delivered
    assert srv.count("/h/chat/completions") == 0
    assert KEY not in str(info.value)


async def test_stream_cut_before_the_first_chunk_falls_back(router, srv) -> None:
    srv.route("POST", FLAKY, Reply.cut_sse([CUT_MID_EVENT], after=1))
    async with asyncio.timeout(DEADLINE_S):
        got = await _collect(router, "flaky-fb")
    assert "".join(got) == "healthy"


async def test_stream_that_stalls_times_out_with_a_typed_error(router, srv) -> None:
    events = openai_chat_sse(["a"])
    srv.route("POST", FLAKY, Reply.sse([events[0], events[1], {"data": events[2]["data"], "delay_s": 5}]))
    with pytest.raises(StreamInterrupted):
        async with asyncio.timeout(DEADLINE_S):
            await _collect(router, "flaky-m")


# --- load, limits, leaks -------------------------------------------------------------------------------


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _random_faults(seed: int):
    rng = random.Random(seed)
    faults = [Reply.json(openai_error("boom"), status=500), Reply.json(openai_error("busy"), status=429,
              headers={"retry-after": "0"}), Reply.reset(), Reply.hang(2)]
    ok = Reply.json(openai_chat_reply("flaky-ok"))

    def handler(_: Request) -> Reply:
        return rng.choice(faults) if rng.random() < 0.2 else ok

    return handler


async def _settle(srv: MockServer) -> None:
    await srv.async_wait_until(lambda: srv.open_connections == 0, timeout=5)
    for _ in range(5):
        await asyncio.sleep(0)
    gc.collect()


async def test_500_concurrent_calls_with_random_faults_all_succeed_without_leaks(srv, config_dir) -> None:
    srv.route("POST", FLAKY, _random_faults(seed=7))
    env = {"FAULT_KEY": KEY, "FLAKY_BASE_URL": srv.url + "/f", "HEALTHY_BASE_URL": srv.url + "/h"}
    await _settle(srv)
    fds, tasks = _fd_count(), asyncio.all_tasks()
    router = Router.from_dir(catalog_dir(), config_dir, env=env)
    rss = []
    for _ in range(2):
        async with asyncio.timeout(40):
            results = await asyncio.gather(*(router.query("flaky-fb", messages=MSG) for _ in range(500)),
                                           return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"{len(errors)} failed, e.g. {errors[0]!r}"
        assert {r.content for r in results} <= {"flaky-ok", "healthy"}
        assert sum(r.model_name == "flaky-fb" for r in results) > 250  # most succeed on the primary
        gc.collect()
        rss.append(_rss_mb())
    await router.aclose()
    await _settle(srv)
    # Server-side sockets of hung replies close on the server's own schedule (slower under load): a leak
    # is a descriptor still open after they had time to go.
    for _ in range(150):
        if _fd_count() <= fds:
            break
        await asyncio.sleep(0.1)
    assert _fd_count() <= fds, "file descriptors leaked"
    assert asyncio.all_tasks() == tasks, "tasks leaked"
    assert rss[1] - rss[0] < 30, f"memory grew {rss[1] - rss[0]:.1f} MB between two rounds of 500"


async def test_rpm_limit_caps_requests_at_the_server_and_the_rest_fall_back(router, srv) -> None:
    async with asyncio.timeout(30):
        results = await asyncio.gather(*(router.query("limited", messages=MSG) for _ in range(500)),
                                       return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)]
    to_limited = sum(1 for r in srv.requests if r.path == "/h/chat/completions" and r.json()["model"] == "lim-1")
    assert 1 <= to_limited <= 100
    assert sum(r.model_name == "limited" for r in results) == to_limited
    assert sum(r.model_name == "healthy-m" for r in results) == 500 - to_limited


# --- cancellation ------------------------------------------------------------------------------------------


async def _cancel_promptly(task: asyncio.Task[Any]) -> None:
    task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(1):
            await task
    assert time.monotonic() - started < 0.2


async def test_cancel_during_a_retry_sleep_stops_promptly_and_sends_nothing_more(router, srv) -> None:
    srv.route("POST", FLAKY, Reply.json(openai_error("wait"), status=429, headers={"retry-after": "0.8"}))
    before = asyncio.all_tasks()
    task = asyncio.create_task(router.query("flaky-fb", messages=MSG))
    assert await srv.async_wait_until(lambda: srv.count() >= 1, timeout=5)
    await asyncio.sleep(0.1)  # now inside the 0.8 s Retry-After sleep
    await _cancel_promptly(task)
    await asyncio.sleep(1.0)
    assert srv.count() == 1  # no retry, no fallback after the cancel
    assert asyncio.all_tasks() == before


async def test_cancel_during_a_poll_wait_stops_polling(router, srv) -> None:
    bfl = BflSimulator(srv, api_key=KEY, pending_polls=1000, prefix="/p")
    before = asyncio.all_tasks()
    task = asyncio.create_task(router.query("polly-m", prompt="a cat"))
    assert await srv.async_wait_until(lambda: bfl.polls >= 2, timeout=5)
    await _cancel_promptly(task)
    seen = srv.count()
    await asyncio.sleep(0.6)  # three poll intervals
    assert srv.count() == seen
    assert asyncio.all_tasks() == before


async def test_cancel_during_a_stream_closes_the_connection_and_sends_nothing_more(router, srv) -> None:
    events = openai_chat_sse([f"w{i} " for i in range(20)])
    srv.route("POST", FLAKY, Reply.sse(events, delay_s=0.2))
    before = asyncio.all_tasks()
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in router.stream("flaky-fb", messages=MSG):
            first.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        await first.wait()
    await _cancel_promptly(task)
    assert await srv.async_wait_until(lambda: srv.disconnects >= 1, timeout=3)
    await asyncio.sleep(0.5)
    assert srv.count() == 1
    assert asyncio.all_tasks() == before


async def test_poll_job_that_never_finishes_is_bounded_by_its_deadline(write_config, srv) -> None:
    cfg = write_config({
        "providers.d/polly.yaml": POLL_PROVIDER.replace("deadline_s: 30", "deadline_s: 0.7"),
        "models.d/m.yaml": "models:\n  polly-m: {provider: polly, upstream: flux-x, kind: image, pricing: unknown}\n",
    })
    BflSimulator(srv, api_key=KEY, pending_polls=1000, prefix="/p")
    async with Router.from_dir(catalog_dir(), cfg, env={"FAULT_KEY": KEY, "POLLY_BASE_URL": srv.url + "/p"}) as router:
        with pytest.raises(ProviderTimeout, match="deadline_s"):
            async with asyncio.timeout(3):
                await router.query("polly-m", prompt="a cat")


async def test_a_poll_that_succeeds_returns_the_image_url(router, srv) -> None:
    bfl = BflSimulator(srv, api_key=KEY, pending_polls=1, prefix="/p")
    async with asyncio.timeout(5):
        resp = await router.query("polly-m", prompt="a cat")
    assert resp.content_kind == "url" and resp.content.endswith(".png")
    assert (resp.model_name, bfl.polls) == ("polly-m", 2)


async def test_a_poll_job_that_fails_raises_a_provider_error_with_its_status(router, srv) -> None:
    BflSimulator(srv, api_key=KEY, pending_polls=1, final_status="Error", details="out of GPUs", prefix="/p")
    with pytest.raises(ProviderError, match="'Error'.*out of GPUs"):
        async with asyncio.timeout(5):
            await router.query("polly-m", prompt="a cat")
