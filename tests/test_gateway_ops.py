"""The gateway as ops run it, over real HTTP on 127.0.0.1: two replicas sharing one redis-server,
a replica killed mid-stream, reload on SIGHUP, graceful shutdown on SIGTERM, readiness, workers,
and refusing to start on a broken config."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import threading
import time
import uuid

import httpx2
import pytest
from gateway_harness import KEYS, Gateway, gateway_env, gateway_yaml, post_json, sha256, start_mock, write_site

from llm_router._resources import catalog_dir

pytest_plugins = ["redis_server"]

USER = [{"role": "user", "content": "hi"}]
LONG_TEXT = "".join(f"w{i} " for i in range(20))  # what the mock's long-stream sends, 0.1 s a chunk


@pytest.fixture(scope="module")
def mock():
    srv = start_mock()
    yield srv
    srv.stop()


def redis_state(url_env: str = "GW_REDIS_URL", on_error: str = "fail") -> str:
    return f"state: {{backend: redis, url_env: {url_env}, key_prefix: 'gw-{uuid.uuid4().hex[:8]}:', on_error: {on_error}}}\n"


def upstream_count(mock, model: str) -> int:
    return sum(1 for r in mock.requests if r.path == "/v1/chat/completions" and r.json()["model"] == model)


class StreamReader(threading.Thread):
    """Reads one streamed completion in a thread: `started` once the first chunk arrived, then `text`,
    whether `[DONE]` came, or the error that ended it."""

    def __init__(self, url: str, key: str = KEYS["full"], model: str = "chat-long") -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.model = url, key, model
        self.started = threading.Event()
        self.text, self.done, self.error = "", False, None

    def run(self) -> None:
        try:
            with httpx2.stream("POST", self.url + "/v1/chat/completions", timeout=15,
                               json={"model": self.model, "messages": USER, "stream": True},
                               headers={"authorization": f"Bearer {self.key}"}) as response:
                for line in response.iter_lines():
                    if line == "data: [DONE]":
                        self.done = True
                    elif line.startswith("data: "):
                        self.text += "".join(re.findall(r'"content":"([^"]*)"', line))
                        self.started.set()
        except Exception as exc:
            self.error = exc
        finally:
            self.started.set()


# --- two replicas on one Redis ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def replicas(mock, redis_url, tmp_path_factory):
    site = write_site(tmp_path_factory.mktemp("replicas"), gateway_yaml(limited_rpm=10), router=redis_state())
    env = gateway_env(mock, GW_REDIS_URL=redis_url)
    first = Gateway.start([catalog_dir(), site], env)
    try:
        second = Gateway.start([catalog_dir(), site], env)
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


async def test_two_replicas_sharing_redis_enforce_one_keys_rpm_exactly(replicas, mock):
    """rpm: 10. Sixteen calls at once, eight to each replica: a limit per replica would pass all sixteen,
    the shared one passes exactly ten; then each replica alone refuses, its window being the other's too."""
    before = upstream_count(mock, "gpt-4.1-mini")
    headers = {"authorization": f"Bearer {KEYS['limited']}"}
    chat = {"model": "chat-b", "messages": USER}
    async with httpx2.AsyncClient(timeout=15) as client:
        burst = await asyncio.gather(*(client.post(replicas[i % 2].url + "/v1/chat/completions", json=chat, headers=headers)
                                       for i in range(16)))
        assert sorted(r.status_code for r in burst) == [200] * 10 + [429] * 6
        # the remaining counts are the shared window's: the ten admitted calls saw 9, 8, ..., 0 between them
        left = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in burst if r.status_code == 200)
        assert left == list(range(10))
        assert all(r.headers["x-ratelimit-remaining-requests"] == "0" for r in burst if r.status_code == 429)
        after = await asyncio.gather(*(client.post(replicas[i % 2].url + "/v1/chat/completions", json=chat, headers=headers)
                                       for i in range(14)))
    assert [r.status_code for r in after] == [429] * 14
    assert upstream_count(mock, "gpt-4.1-mini") - before == 10
    refused = after[1]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded" and int(refused.headers["retry-after"]) >= 1


def test_a_replica_killed_mid_stream_does_not_affect_the_others_streams(replicas):
    doomed, survivor = replicas
    streams = [StreamReader(gw.url) for gw in (doomed, doomed, survivor, survivor, survivor)]
    for stream in streams:
        stream.start()
    for stream in streams:
        assert stream.started.wait(10)
    doomed.proc.kill()
    for stream in streams:
        stream.join(15)
        assert not stream.is_alive()
    for stream in streams[:2]:
        assert not stream.done and stream.text != LONG_TEXT
    for stream in streams[2:]:
        assert stream.error is None and stream.done and stream.text == LONG_TEXT
    assert post_json(survivor.url + "/v1/chat/completions", {"model": "chat-a", "messages": USER}, KEYS["full"]).status_code == 200


# --- reload and shutdown ----------------------------------------------------------------------------------

def test_sighup_with_a_broken_config_keeps_serving_the_old_one_and_a_good_one_is_picked_up(mock, tmp_path):
    site = write_site(tmp_path)
    gw = Gateway.start([catalog_dir(), site], gateway_env(mock))
    try:
        chat = {"model": "chat-a", "messages": USER}
        assert post_json(gw.url + "/v1/chat/completions", chat, KEYS["restricted"]).status_code == 200

        (site / "gateway.yaml").write_text(f"keys:\n  full: {{key_sha256: \"{sha256(KEYS['full'])}\", models: ['*'], rmp: 5}}\n")
        mark = len(gw.lines)
        gw.signal(signal.SIGHUP)
        refused = gw.wait_for_log(r"reload refused", after=mark)
        assert refused
        gw.wait_for_log(re.escape(f"{site / 'gateway.yaml'}:2: keys.full: unknown key 'rmp'"), after=mark)
        assert post_json(gw.url + "/v1/chat/completions", chat, KEYS["restricted"]).status_code == 200  # the old keys

        stream = StreamReader(gw.url)  # in flight across the reload: it finishes on the config it started on
        stream.start()
        assert stream.started.wait(10)
        newcomer = "sk-gw-newcomer-0123456789abcd"
        (site / "gateway.yaml").write_text(
            f"keys:\n  full: {{key_sha256: \"{sha256(KEYS['full'])}\", models: ['*']}}\n"
            f"  newcomer: {{key_sha256: \"{sha256(newcomer)}\", models: [chat-a]}}\n"
            "cors: {origins: ['https://app.example']}\n")
        mark = len(gw.lines)
        gw.signal(signal.SIGHUP)
        gw.wait_for_log(r"reloaded: \d+ models, 3 keys", after=mark)  # full, newcomer, admin
        assert post_json(gw.url + "/v1/chat/completions", chat, newcomer).status_code == 200
        assert post_json(gw.url + "/v1/chat/completions", chat, KEYS["restricted"]).status_code == 401
        preflight = httpx2.options(gw.url + "/v1/chat/completions", timeout=5, headers={
            "origin": "https://app.example", "access-control-request-method": "POST"})
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        stream.join(15)
        assert stream.error is None and stream.done and stream.text == LONG_TEXT
    finally:
        gw.stop()


def refused(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
    except OSError:
        return True
    return False


def test_sigterm_lets_a_stream_in_flight_finish_refuses_new_connections_and_exits_0(mock, tmp_path):
    gw = Gateway.start([catalog_dir(), write_site(tmp_path)], gateway_env(mock), "--graceful-timeout", "10")
    try:
        stream = StreamReader(gw.url)
        stream.start()
        assert stream.started.wait(10)
        gw.signal(signal.SIGTERM)
        deadline = time.monotonic() + 1.5
        while not refused(gw.url):
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.05)
        assert stream.is_alive()  # refused while the stream still runs
        stream.join(15)
        assert stream.error is None and stream.done and stream.text == LONG_TEXT
        assert gw.wait(10) == 0
    finally:
        gw.stop()


def test_a_stream_longer_than_the_graceful_timeout_is_cut_and_the_process_exits(mock, tmp_path):
    gw = Gateway.start([catalog_dir(), write_site(tmp_path)], gateway_env(mock), "--graceful-timeout", "0.3")
    try:
        stream = StreamReader(gw.url, model="chat-longer")  # 4 s
        stream.start()
        assert stream.started.wait(10)
        started = time.monotonic()
        gw.signal(signal.SIGTERM)
        assert gw.wait(10) == 0 and time.monotonic() - started < 3
        stream.join(5)
        assert not stream.done and stream.text.startswith("w0 ")
    finally:
        gw.stop()


def test_readyz_follows_redis_and_healthz_does_not(mock, tmp_path, redis_proc):
    site = write_site(tmp_path, router=redis_state(on_error="local"))
    gw = Gateway.start([catalog_dir(), site], gateway_env(mock, GW_REDIS_URL=redis_proc.url))
    try:
        assert httpx2.get(gw.url + "/readyz", timeout=5).status_code == 200
        redis_proc.stop()
        ready = httpx2.get(gw.url + "/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["checks"]["state"].startswith("unreachable")
        assert httpx2.get(gw.url + "/healthz", timeout=5).status_code == 200
        assert post_json(gw.url + "/v1/chat/completions", {"model": "chat-a", "messages": USER}, KEYS["limited"]).status_code == 200
        redis_proc.start()
        deadline = time.monotonic() + 5
        while httpx2.get(gw.url + "/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        gw.stop()


def test_workers_share_one_port_reload_on_sighup_and_stop_on_sigterm(mock, tmp_path):
    gw = Gateway.start([catalog_dir(), write_site(tmp_path)], gateway_env(mock), "--workers", "2")
    try:
        for _ in range(10):
            assert post_json(gw.url + "/v1/chat/completions", {"model": "chat-a", "messages": USER}, KEYS["full"]).status_code == 200
        gw.wait_for_count(r"Application startup complete", 2)
        mark = len(gw.lines)
        gw.signal(signal.SIGHUP)
        gw.wait_for_count(r"reloaded: ", 2, after=mark)
        gw.signal(signal.SIGTERM)
        assert gw.wait(15) == 0
    finally:
        gw.stop()


# --- refusing to start ------------------------------------------------------------------------------------

def test_serve_refuses_a_broken_config_and_names_the_file_and_line(mock, tmp_path):
    site = write_site(tmp_path, "keys:\n  full:\n    key_sha256: nope\n    models: ['*']\n")
    gw = Gateway.start([catalog_dir(), site], gateway_env(mock), wait_ready=False)
    try:
        assert gw.wait(20) == 1
        gw.wait_for_log(re.escape(f"{site / 'gateway.yaml'}:3: keys.full.key_sha256: 'nope' does not match"))
    finally:
        gw.stop()


def test_serve_refuses_to_start_when_no_key_could_call_it(mock, tmp_path):
    env = gateway_env(mock)
    del env["LLM_ROUTER_ADMIN_KEY"]
    gw = Gateway.start([catalog_dir(), write_site(tmp_path, "keys: {}\n")], env, wait_ready=False)
    try:
        assert gw.wait(20) == 1
        gw.wait_for_log("nothing could call the gateway")
    finally:
        gw.stop()
