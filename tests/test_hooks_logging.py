"""Hooks (on_attempt, on_success, on_failure) and DEBUG logs that never show keys or prompts."""

import asyncio
import logging

import pytest
from loopback import loopback_router
from mockserver import MockServer, Reply, openai_chat_reply, openai_chat_sse

from llm_router import Attempt, LLMResponse, RouterError, ServerError

PATH = "/v1/chat/completions"
KEY = "sk-secret-ABCDEF123"
PROMPT = "TOPSECRETPROMPT"
USER = [{"role": "user", "content": f"please keep {PROMPT} private"}]
MODELS = """\
models:
  main: {provider: prim, pricing: unknown, fallbacks: [backup]}
  backup: {provider: back, pricing: unknown}
"""


@pytest.fixture
def servers():
    with MockServer() as prim, MockServer() as back:
        prim.route("POST", PATH, Reply.json({"error": {"message": "busy"}}, status=503))
        back.route("POST", PATH, Reply.json(openai_chat_reply("REPLYTEXT")))
        yield {"prim": prim, "back": back}


def make_router(write_config, servers, router_yaml=None):
    return loopback_router(write_config, servers, MODELS, router_yaml, key=lambda name: KEY)


async def test_sync_and_async_hooks_see_each_attempt_and_the_success(write_config, servers):
    seen: list[tuple[str, object]] = []

    def on_attempt(attempt: Attempt) -> None:
        seen.append(("attempt", attempt))

    async def on_success(response: LLMResponse) -> None:
        await asyncio.sleep(0)
        seen.append(("success", response))

    async with make_router(write_config, servers) as router:
        router.add_hook("on_attempt", on_attempt)
        router.add_hook("on_success", on_success)
        resp = await router.query("main", USER)
    assert [kind for kind, _ in seen] == ["attempt", "attempt", "success"]
    failed, ok = seen[0][1], seen[1][1]
    assert (failed.model, failed.provider, failed.ok, failed.status, failed.error_kind, failed.tries) == (
        "main", "prim", False, 503, "server_error", 2)
    assert (ok.model, ok.ok, ok.status) == ("backup", True, 200)
    assert seen[2][1] is resp


async def test_on_failure_gets_the_error_with_its_attempts(write_config, servers):
    failures = []
    servers["back"].route("POST", PATH, Reply.json({"error": {"message": "also busy"}}, status=503))
    async with make_router(write_config, servers) as router:
        router.add_hook("on_failure", failures.append)
        with pytest.raises(Exception) as caught:
            await router.query("main", USER)
    assert failures == [caught.value]
    assert [a.model for a in failures[0].attempts] == ["main", "backup"]


async def test_a_raising_hook_is_logged_and_never_breaks_the_call(write_config, servers, caplog):
    def broken(_):
        raise RuntimeError("hook bug")

    async def broken_async(_):
        raise RuntimeError("async hook bug")

    async with make_router(write_config, servers) as router:
        for event in ("on_attempt", "on_success", "on_failure"):
            router.add_hook(event, broken)
            router.add_hook(event, broken_async)
        resp = await router.query("main", USER)
        assert resp.content == "REPLYTEXT"
        servers["back"].route("POST", PATH, Reply.json({"error": {"message": "down"}}, status=500))
        with pytest.raises(Exception) as caught:
            await router.query("main", USER)
    assert not isinstance(caught.value, RuntimeError)
    hook_logs = [r for r in caplog.records if r.name == "llm_router" and "hook" in r.getMessage()]
    assert len(hook_logs) >= 6 and all(r.levelno == logging.ERROR for r in hook_logs)


def test_unknown_hook_event_is_a_value_error(write_config, servers):
    router = make_router(write_config, servers)
    with pytest.raises(ValueError, match="on_attempt"):
        router.add_hook("on_done", print)


async def test_debug_logs_show_each_attempt_without_key_or_prompt(write_config, servers, caplog):
    caplog.set_level(logging.DEBUG, logger="llm_router")
    async with make_router(write_config, servers) as router:
        await router.query("main", USER)
        servers["back"].route("POST", PATH, Reply.sse(openai_chat_sse(["REPLY", "TEXT"])))
        async for _ in router.stream("backup", USER):
            pass
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "attempt failed: model=main provider=prim status=503" in text
    assert "tries=2" in text
    assert "attempt ok: model=backup provider=back status=200" in text and "latency=" in text
    assert KEY not in text and KEY[-6:] not in text
    assert PROMPT not in text and "REPLYTEXT" not in text


async def test_log_content_true_logs_prompt_and_reply_but_never_the_key(write_config, servers, caplog):
    caplog.set_level(logging.DEBUG, logger="llm_router")
    async with make_router(write_config, servers, router_yaml="log_content: true\n") as router:
        await router.query("main", USER)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert PROMPT in text and "REPLYTEXT" in text
    assert KEY not in text


async def test_stream_emits_the_same_hooks(write_config, servers):
    servers["back"].route("POST", PATH, Reply.sse(openai_chat_sse(["a", "b"])))
    events = []
    async with make_router(write_config, servers) as router:
        for event in ("on_attempt", "on_success", "on_failure"):
            router.add_hook(event, lambda payload, event=event: events.append((event, payload)))
        async with asyncio.timeout(10):
            chunks = [c async for c in router.stream("main", USER)]
    assert [e for e, _ in events] == ["on_attempt", "on_attempt", "on_success"]
    success = events[-1][1]
    assert success.model_name == "backup" and success.usage.output_tokens == 2
    assert chunks[-1].is_final and chunks[-1].usage.output_tokens == 2


async def test_errors_before_sending_run_no_hooks(write_config, servers):
    events = []
    async with make_router(write_config, servers) as router:
        router.add_hook("on_failure", events.append)
        with pytest.raises(RouterError):
            await router.query("main", USER, temperature=0.5)
    assert events == [] and servers["prim"].count() == 0


def test_error_attempts_default_to_empty():
    assert ServerError("x", provider="p", model="m").attempts == ()
