"""Submit-then-poll beyond one status URL, declared in YAML only and run over loopback HTTP: the
result fetched at another URL (fal's response_url), a done job that still failed (`failed_when`),
statuses compared as JSON values and an absent status (`missing`), a done reply without a result as
a typed error (`empty`), and the declared cancel request, sent once when the caller cancels or time
runs out, shielded, bounded, its failures logged (redacted) and swallowed."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from mockserver import MockServer, Reply
from queue_mock import FalQueue

from llm_router import Router
from llm_router.config import load_catalog
from llm_router.errors import ContentFilterError, InvalidReplyError, ProviderError, ProviderTimeout

KEY = "fal-test-key"
QUEUE = """
name: queuey
base_url: http://127.0.0.1:9
base_url_env: QUEUEY_BASE_URL
auth: {header: Authorization, scheme: Key, env: QUEUEY_KEY}
hosts: [127.0.0.1]
operations:
  image:
    path: "/{{ model.upstream }}"
    body: {prompt: "{{ prompt }}"}
    poll:
      url: {from: $.status_url}
      interval_s: 0.01
      deadline_s: %(deadline)s
      max_polls: %(max_polls)s
      status: $.status
      pending: [IN_QUEUE, IN_PROGRESS]
      done: [COMPLETED]
      failed_when: {path: $.error, code: $.error_type}
      result:
        url: {from: $.response_url}
        content: $.images[0].url
        content_kind: url
    cancel: {method: PUT, url: {from: $.cancel_url}, timeout_s: %(cancel_timeout)s}
errors: {message: $.detail}
"""
# A Google-style long-running operation: `done` is absent until it is the JSON value true.
OPERATION = """
name: opsy
base_url: http://127.0.0.1:9
base_url_env: OPSY_BASE_URL
auth: {header: x-goog-api-key, env: OPSY_KEY}
hosts: [127.0.0.1]
operations:
  image:
    path: "/models/{{ model.upstream }}:predictLongRunning"
    body: {instances: [{prompt: "{{ prompt }}"}]}
    poll:
      url: {template: "/{{ submit.name }}"}   # operations/op-1
      interval_s: 0.01
      deadline_s: 5
      status: $.done
      missing: %(missing)s
      pending: [false]
      done: [%(done)s]
      failed_when: {path: $.error, message: $.error.message, code: $.error.status}
      result:
        content: $.response.generateVideoResponse.generatedSamples[0].video.uri
        content_kind: url
        empty: {kind: content_filter, message: "$.response.generateVideoResponse.raiMediaFilteredReasons[0]"}
"""
MODELS = """
models:
  schnell: {provider: queuey, upstream: fal-ai/flux/schnell, kind: image, pricing: {per_image: 0.003}}
  veo: {provider: opsy, upstream: veo-3.0-generate-001, kind: image, pricing: unknown}
"""


@pytest.fixture
def make_router(srv, write_config):
    def make(deadline: float = 5, max_polls: int = 100, cancel_timeout: float = 1, missing: str = "pending",
             done: str = "true") -> Router:
        config = write_config({
            "providers.d/queuey.yaml": QUEUE % {"deadline": deadline, "max_polls": max_polls, "cancel_timeout": cancel_timeout},
            "providers.d/opsy.yaml": OPERATION % {"missing": missing, "done": done},
            "models.d/m.yaml": MODELS,
        })
        return Router.from_dir(config, env={"QUEUEY_KEY": KEY, "QUEUEY_BASE_URL": srv.url,
                                            "OPSY_KEY": "g-key", "OPSY_BASE_URL": srv.url})
    return make


def paths(srv: MockServer) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in srv.requests]


# ----------------------------------------------------------------------------------- result URL


async def test_the_result_is_fetched_at_the_url_the_submit_reply_gave(srv, make_router):
    fal = FalQueue(srv, key=KEY, progress_polls=2)
    async with make_router() as router:
        resp = await router.query("schnell", prompt="a tiger eye")
    (job,) = fal.jobs
    app = f"/fal-ai/flux/requests/{job}"  # the subpath `schnell` is not in the job's URLs, as on fal
    assert paths(srv) == [("POST", "/fal-ai/flux/schnell"), *[("GET", app + "/status")] * 4, ("GET", app)]
    assert all(r.headers["authorization"] == f"Key {KEY}" for r in srv.requests)
    assert srv.requests[0].json() == {"prompt": "a tiger eye"}
    # only the result URL's reply holds the image; the COMPLETED status reply does not
    assert resp.content == f"https://v3.fal.media/files/{job}.png" and resp.content_kind == "url"
    assert resp.cost == pytest.approx(0.003)
    assert fal.cancelled == []


async def test_a_result_url_on_another_host_is_refused_and_gets_no_key(srv, make_router):
    with MockServer(host="127.0.0.2") as other:
        FalQueue(srv, key=KEY, url_base=other.url)  # status, result and cancel URLs all on the other host
        async with make_router() as router:
            with pytest.raises(ProviderError, match=r"refusing to poll '127\.0\.0\.2'"):
                await router.query("schnell", prompt="x")
        assert other.requests == []


async def test_the_result_url_is_checked_like_the_poll_url(srv, make_router, write_config):
    fal = FalQueue(srv, key=KEY, progress_polls=0)
    config = write_config({"providers.d/queuey.yaml": (QUEUE % {"deadline": 5, "max_polls": 9, "cancel_timeout": 1})
                           .replace("url: {from: $.response_url}", 'url: {template: "http://evil.test/{{ submit.request_id }}"}'),
                           "models.d/m.yaml": MODELS.split("  veo:")[0]})
    async with Router.from_dir(config, env={"QUEUEY_KEY": KEY, "QUEUEY_BASE_URL": srv.url}) as router:
        with pytest.raises(ProviderError, match=r"refusing to send the result request to 'evil\.test': not one of the provider's hosts"):
            await router.query("schnell", prompt="x")
    assert len(fal.jobs) == 1 and srv.count(method="GET") == 2  # polled to COMPLETED, then stopped before the result


# ----------------------------------------------------------------------------------- statuses


async def test_a_done_job_that_failed_raises_its_error_and_fetches_no_result(srv, make_router):
    fal = FalQueue(srv, key=KEY, error=("Runner disconnected", "runner_disconnected"))
    async with make_router() as router:
        with pytest.raises(ProviderError, match=r"job done \(status 'COMPLETED'\) but failed: Runner disconnected") as info:
            await router.query("schnell", prompt="x")
    assert info.value.code == "runner_disconnected"
    assert all(path.endswith("/status") for method, path in paths(srv) if method == "GET")
    assert fal.cancelled == []


def operation_replies(srv: MockServer, *polls: dict) -> None:
    srv.route("POST", "/models/veo-3.0-generate-001:predictLongRunning", Reply.json({"name": "operations/op-1"}))
    srv.script("GET", "/operations/op-1", [Reply.json(p) for p in polls])


VIDEO = {"done": True, "response": {"generateVideoResponse": {"generatedSamples": [{"video": {"uri": "https://v/x.mp4"}}]}}}


async def test_a_boolean_status_absent_while_pending_is_read_as_json(srv, make_router):
    operation_replies(srv, {"name": "operations/op-1"}, {"name": "operations/op-1", "done": False}, VIDEO)
    async with make_router() as router:
        resp = await router.query("veo", prompt="a tiger")
    assert resp.content == "https://v/x.mp4"
    assert srv.count("/operations/op-1") == 3
    assert all(r.headers["x-goog-api-key"] == "g-key" for r in srv.requests)


async def test_a_json_true_is_not_the_string_true(srv, make_router):
    operation_replies(srv, VIDEO)
    async with make_router(done='"true"') as router:  # the file lists the *string* "true"
        with pytest.raises(ProviderError, match=r"job ended with status true \(a status the provider file does not list\)"):
            await router.query("veo", prompt="a tiger")


async def test_an_absent_status_fails_by_default_and_says_how_to_wait_instead(srv, make_router):
    operation_replies(srv, {"name": "operations/op-1"})
    async with make_router(missing="fail") as router:
        with pytest.raises(InvalidReplyError, match=r"no status at \$\.done \(set `missing: pending`"):
            await router.query("veo", prompt="a tiger")


async def test_a_done_operation_with_an_error_is_a_failure(srv, make_router):
    operation_replies(srv, {"name": "operations/op-1", "done": True,
                            "error": {"code": 3, "status": "INVALID_ARGUMENT", "message": "bad prompt"}})
    async with make_router() as router:
        with pytest.raises(ProviderError, match="but failed: bad prompt") as info:
            await router.query("veo", prompt="a tiger")
    assert info.value.code == "INVALID_ARGUMENT"


async def test_a_done_reply_without_a_result_is_the_declared_error_with_the_providers_reason(srv, make_router):
    reason = "Your prompt may violate our policies."
    operation_replies(srv, {"done": True, "response": {"generateVideoResponse": {"raiMediaFilteredCount": 1,
                                                                                 "raiMediaFilteredReasons": [reason]}}})
    async with make_router() as router:
        with pytest.raises(ContentFilterError, match="Your prompt may violate our policies") as info:
            await router.query("veo", prompt="a tiger")
    assert info.value.kind == "content_filter"


# ----------------------------------------------------------------------------------- cancel


async def test_cancelling_the_caller_sends_the_cancel_request_once_before_the_cancellation_propagates(srv, make_router):
    fal = FalQueue(srv, key=KEY, progress_polls=10_000)
    async with make_router() as router:
        task = asyncio.create_task(router.query("schnell", prompt="x"))
        assert await srv.async_wait_until(lambda: srv.count(method="GET") >= 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fal.cancelled == list(fal.jobs)  # already sent when the cancellation reached the caller
    (cancel,) = [r for r in srv.requests if r.method == "PUT"]
    assert cancel.headers["authorization"] == f"Key {KEY}" and cancel.path.endswith("/cancel")


async def test_the_deadline_sends_the_cancel_request_then_raises_a_timeout(srv, make_router):
    fal = FalQueue(srv, key=KEY, progress_polls=10_000)
    async with make_router(deadline=0.3) as router:
        with pytest.raises(ProviderTimeout, match=r"job not done after 0\.3s"):
            await router.query("schnell", prompt="x")
    assert fal.cancelled == list(fal.jobs)


async def test_the_poll_cap_sends_the_cancel_request(srv, make_router):
    fal = FalQueue(srv, key=KEY, progress_polls=10_000)
    async with make_router(max_polls=3) as router:
        with pytest.raises(ProviderTimeout, match="3 polls"):
            await router.query("schnell", prompt="x")
    assert srv.count(method="GET") == 3 and fal.cancelled == list(fal.jobs)


async def test_a_failing_cancel_request_is_logged_redacted_and_the_timeout_still_raised(srv, make_router, caplog):
    fal = FalQueue(srv, key=KEY, progress_polls=10_000,
                   cancel_reply=Reply.json({"detail": f"cannot cancel; your key Key {KEY} is fine"}, status=500))
    caplog.set_level(logging.INFO, logger="llm_router")
    async with make_router(max_polls=2) as router:
        with pytest.raises(ProviderTimeout):
            await router.query("schnell", prompt="x")
    assert len(fal.cancelled) == 1
    assert "cancel request of a queuey job (schnell) answered HTTP 500" in caplog.text
    assert KEY not in caplog.text


async def test_a_cancel_request_that_hangs_is_cut_at_its_timeout(srv, make_router, caplog):
    FalQueue(srv, key=KEY, progress_polls=10_000, cancel_reply=Reply.hang(30))
    async with make_router(max_polls=2, cancel_timeout=0.2) as router:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await router.query("schnell", prompt="x")
        assert time.monotonic() - started < 2
    assert "could not cancel a queuey job (schnell)" in caplog.text


async def test_cancelling_the_caller_again_does_not_stop_the_cancel_request(srv, make_router):
    fal = FalQueue(srv, key=KEY, progress_polls=10_000, cancel_reply=Reply.hang(0.3, then=Reply.json({}, status=202)))
    async with make_router() as router:
        task = asyncio.create_task(router.query("schnell", prompt="x"))
        assert await srv.async_wait_until(lambda: srv.count(method="GET") >= 2)
        task.cancel()
        assert await srv.async_wait_until(lambda: srv.count(method="PUT") == 1)
        task.cancel()  # while the cancel request waits for its reply
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await srv.async_wait_until(lambda: len(fal.cancelled) == 1)
        await asyncio.sleep(0.5)  # the shielded request runs to its reply, not cut by the second cancel
    assert srv.count(method="PUT") == 1 and srv.errors == []


async def test_a_job_that_fails_is_not_cancelled(srv, make_router):
    fal = FalQueue(srv, key=KEY, error=("Request timed out", "request_timeout"))
    async with make_router() as router:
        with pytest.raises(ProviderError, match="Request timed out"):
            await router.query("schnell", prompt="x")
    assert fal.cancelled == []


# ----------------------------------------------------------------------------------- config errors


def problems_of(write_config, provider: str) -> list[str]:
    config = write_config({"providers.d/p.yaml": provider})
    _, problems = load_catalog([config], {"P_KEY": "k"})
    return [str(p) for p in problems if p.severity == "error"]


HEAD = "name: p\nbase_url: https://p.test\nauth: {header: x-key, env: P_KEY}\noperations:\n"


@pytest.mark.parametrize(("operation", "says"), [
    ("  image:\n    path: /i\n    response: {content: $.u}\n    cancel: {method: PUT, url: {from: $.c}}\n",
     "p.yaml:5: operations.image: `cancel` cannot be used without `poll`"),
    ("  image:\n    path: /i\n    response: {content: $.u, url: {from: $.r}}\n",
     "p.yaml:7: operations.image.response.url: a result at another URL needs a job to poll"),
    ("  image:\n    path: /i\n    poll: {url: {from: $.p}, status: $.s, pending: [1], done: [true, 1.0], result: {content: $.u}}\n",
     "p.yaml:7: poll status 1.0 is in both `pending` and `done`"),
    ("  image:\n    path: /i\n    poll: {url: {from: $.p}, status: $.s, pending: [P], done: [D], result: {content: $.u}}\n"
     "    cancel: {url: {from: $.c}}\n",
     "operations.image.cancel: 'method' is a required property"),
    ("  image:\n    path: /i\n    poll: {url: {from: $.p}, status: $.s, pending: [P], done: [D], missing: later,\n"
     "           result: {content: $.u, empty: {kind: filtered}}}\n",
     "'later' is not one of 'fail', 'pending'"),
])
def test_job_config_mistakes_are_reported_with_file_line_and_fix(write_config, operation, says):
    problems = problems_of(write_config, HEAD + operation)
    assert any(says in p for p in problems), problems


def test_true_and_1_are_different_statuses(write_config):
    poll = "    poll: {url: {from: $.p}, status: $.s, pending: [1], done: [true], result: {content: $.u}}\n"
    assert problems_of(write_config, HEAD + "  image:\n    path: /i\n" + poll) == []


# ----------------------------------------------------------------------------------- bundled: fal


async def test_bundled_fal_runs_flux_schnell_through_the_queue(srv):
    fal = FalQueue(srv, key="fal-key-123456", progress_polls=0)
    async with Router.from_dir(env={"FAL_API_KEY": "fal-key-123456", "FAL_BASE_URL": srv.url}) as router:
        resp = await router.query("flux-schnell", prompt="a tiger eye", image_size="landscape_4_3")
    (job,) = fal.jobs
    assert fal.jobs[job]["input"] == {"prompt": "a tiger eye", "image_size": "landscape_4_3"}
    assert paths(srv)[0] == ("POST", "/fal-ai/flux/schnell") and paths(srv)[-1] == ("GET", f"/fal-ai/flux/requests/{job}")
    assert resp.content == f"https://v3.fal.media/files/{job}.png" and resp.cost == pytest.approx(0.003)
