"""A provider with its own wire format is a YAML file, never Python: an invented image API with a
submit-then-poll loop, and an invented chat API with nested params and JSONPath-routed streams,
each loaded with Router.from_dir and run against a loopback mock."""

from __future__ import annotations

import asyncio
import re

import pytest
from mockserver import Reply

from llm_router import Router
from llm_router.errors import ProviderError

PIXELFORGE = """
# yaml-language-server: $schema=../schemas/provider.schema.json
name: pixelforge
base_url: https://api.pixelforge.example/v2
base_url_env: PIXELFORGE_BASE_URL
auth: {header: X-Forge-Token, env: PIXELFORGE_TOKEN}
hosts: [api.pixelforge.example]
operations:
  image:
    path: /jobs
    body:
      input: {text: "{{ prompt }}"}
      opts:
        engine: "{{ model.upstream }}"
    params: {merge_into: opts}
    poll:
      url: {template: "/jobs/{{ submit.job.ref }}"}
      interval_s: 0.02
      deadline_s: 5
      status: $.state
      pending: [queued, running]
      done: [finished]
      failed: [crashed]
      message: $.reason
      result:
        content: "$.output.images[0].href"
        content_kind: url
        id: $.id
"""

CHATTERBOX = """
name: chatterbox
base_url: https://chat.chatterbox.example
base_url_env: CHATTERBOX_BASE_URL
auth: {header: Authorization, scheme: Token, env: CHATTERBOX_KEY}
operations:
  chat:
    path: /api/converse
    body:
      turns: "{{ messages | rename_keys({'content': 'text'}) }}"
      options: {engine: "{{ model.upstream }}"}
    params: {merge_into: options}
    response:
      content: $.reply.text
      finish_reason: $.reply.why
      usage: {input_tokens: $.meter.in, output_tokens: $.meter.out}
    stream:
      body: {options: {live: true}}
      route_by: $.type
      on:
        begin: {usage: {input_tokens: $.meter.in}}
        piece: {delta: $.text}
        finish: {finish_reason: $.why, usage: {output_tokens: $.meter.out}, end: true}
        oops: {error: $.message}
"""

MODELS = """
models:
  forge-xl:
    provider: pixelforge
    upstream: forge-xl-2
    kind: image
    pricing: {per_image: 0.01}
    params: [steps, size]
  chatter-1:
    provider: chatterbox
    upstream: cb-1
    pricing: {input_per_million: 1.0, output_per_million: 2.0}
    params: [temperature]
"""


@pytest.fixture
def router(srv, write_config):
    config = write_config({"providers.d/pixelforge.yaml": PIXELFORGE, "providers.d/chatterbox.yaml": CHATTERBOX,
                           "models.d/mine.yaml": MODELS})
    env = {"PIXELFORGE_TOKEN": "pf-token-1234", "PIXELFORGE_BASE_URL": srv.url + "/v2",
           "CHATTERBOX_KEY": "cb-key-5678", "CHATTERBOX_BASE_URL": srv.url}
    return Router.from_dir(config, env=env)


def forge_job(states: list[str], final: dict):
    """Answer the submit with a job ref, then the given states in order, then `final`."""
    polls = iter(states)

    def poll(req):
        state = next(polls, None)
        return {"id": "j1", "state": state} if state is not None else final

    return poll


async def test_invented_image_api_submits_then_polls_by_template(srv, router):
    srv.route("POST", "/v2/jobs", Reply.json({"job": {"ref": "j1"}}, status=202))
    srv.route("GET", "/v2/jobs/j1", forge_job(["queued", "running"], {
        "id": "j1", "state": "finished", "output": {"images": [{"href": "https://cdn.example/j1.png"}]}}))
    resp = await router.query("forge-xl", prompt="a tin robot", steps=30)
    submit, *polls = srv.requests
    assert submit.method == "POST" and submit.path == "/v2/jobs"
    assert submit.headers["x-forge-token"] == "pf-token-1234"
    assert submit.json() == {"input": {"text": "a tin robot"}, "opts": {"engine": "forge-xl-2", "steps": 30}}
    assert [(p.method, p.path) for p in polls] == [("GET", "/v2/jobs/j1")] * 3
    assert all(p.headers["x-forge-token"] == "pf-token-1234" for p in polls)
    assert resp.content == "https://cdn.example/j1.png" and resp.content_kind == "url"
    assert resp.id == "j1" and resp.cost == pytest.approx(0.01) and resp.provider == "pixelforge"
    await router.aclose()


async def test_invented_image_api_failed_state_raises_with_its_reason(srv, router):
    srv.route("POST", "/v2/jobs", Reply.json({"job": {"ref": "j2"}}))
    srv.route("GET", "/v2/jobs/j2", forge_job(["queued"], {"id": "j2", "state": "crashed", "reason": "GPU on fire"}))
    with pytest.raises(ProviderError, match="'crashed': GPU on fire"):
        await router.query("forge-xl", prompt="x")
    await router.aclose()


async def test_invented_image_api_unknown_state_fails(srv, router):
    srv.route("POST", "/v2/jobs", Reply.json({"job": {"ref": "j3"}}))
    srv.route("GET", "/v2/jobs/j3", Reply.json({"id": "j3", "state": "vanished"}))
    with pytest.raises(ProviderError, match="'vanished'.*does not list"):
        await router.query("forge-xl", prompt="x")
    await router.aclose()


async def test_invented_chat_api_nests_params_and_reads_its_reply(srv, router):
    srv.route("POST", "/api/converse", Reply.json({"reply": {"text": "hi there", "why": "done"},
                                                   "meter": {"in": 11, "out": 3}}))
    resp = await router.query("chatter-1", [{"role": "user", "content": "hello"}], temperature=0.4)
    (request,) = srv.requests
    assert request.headers["authorization"] == "Token cb-key-5678"
    assert request.json() == {"turns": [{"role": "user", "text": "hello"}],
                              "options": {"engine": "cb-1", "temperature": 0.4}}
    assert (resp.content, resp.finish_reason, resp.usage.input_tokens, resp.usage.output_tokens) == (
        "hi there", "done", 11, 3)
    assert resp.cost == pytest.approx((11 * 1.0 + 3 * 2.0) / 1e6)
    await router.aclose()


async def test_invented_chat_api_streams_events_routed_by_a_jsonpath(srv, router):
    events = [{"data": {"type": "begin", "meter": {"in": 11}}},
              {"data": {"type": "piece", "text": "hi"}},
              {"data": {"type": "heartbeat"}},
              {"data": {"type": "piece", "text": " there"}},
              {"data": {"type": "finish", "why": "done", "meter": {"out": 2}}}]
    srv.route("POST", "/api/converse", Reply.sse(events))
    chunks = []
    async with asyncio.timeout(10):
        async for chunk in router.stream("chatter-1", [{"role": "user", "content": "hello"}], temperature=0.4):
            chunks.append(chunk)
    assert "".join(c.delta for c in chunks[:-1]) == "hi there" and all(c.delta for c in chunks[:-1])
    final = chunks[-1]
    assert final.finish_reason == "done" and (final.usage.input_tokens, final.usage.output_tokens) == (11, 2)
    assert srv.requests[0].json()["options"] == {"engine": "cb-1", "temperature": 0.4, "live": True}
    await router.aclose()


async def test_invented_chat_api_error_event_before_text_is_a_provider_error(srv, router):
    srv.route("POST", "/api/converse", Reply.sse([{"data": {"type": "oops", "message": "engine asleep"}}]))
    with pytest.raises(ProviderError, match="engine asleep"):
        async with asyncio.timeout(10):
            async for _ in router.stream("chatter-1", [{"role": "user", "content": "hello"}]):
                pass
    await router.aclose()


def test_the_new_providers_are_pure_yaml(write_config):
    """No Python was added: the files are all there is, and validate accepts them."""
    from llm_router.config import load_catalog

    config = write_config({"providers.d/pixelforge.yaml": PIXELFORGE, "providers.d/chatterbox.yaml": CHATTERBOX,
                           "models.d/mine.yaml": MODELS})
    catalog, problems = load_catalog([config], {"PIXELFORGE_TOKEN": "t", "CHATTERBOX_KEY": "k"})
    assert [p for p in problems if p.severity == "error"] == []
    assert set(catalog.providers) >= {"pixelforge", "chatterbox"}
    assert not any(re.search(r"\.py$", str(p)) for p in config.rglob("*"))
