"""A Redis that misbehaves, over real sockets on 127.0.0.1: one that accepts and never answers,
an HTTP server at the Redis port, one that answers nonsense. Calls never wait for a Redis known to
be down (a background probe brings it back), every state operation falls back under
`on_error: local`, `on_error: fail` refuses with StateUnavailableError (never a raw exception), and
a malformed Redis URL is a ConfigurationError naming router.yaml."""

import asyncio
import http.server
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from loopback import NO_RETRY, loopback_router
from mockserver import MockServer, Reply, openai_chat_reply

from llm_router import ConfigurationError, Router, StateUnavailableError
from llm_router._resources import catalog_dir
from llm_router.routing.limits import LimitExceeded
from llm_router.state import Outcome, Slot, Ticket
from llm_router.state.redis import RedisState

pytest_plugins = ["redis_server"]

USER = [{"role": "user", "content": "hi"}]


class Listener:
    """A TCP server on 127.0.0.1 that accepts every connection and then does `behaviour` with it."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)  # "hang": held open, never read, never answered
            if self.behaviour == "nonsense":
                threading.Thread(target=self._nonsense, args=(conn,), daemon=True).start()

    @staticmethod
    def _nonsense(conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                conn.sendall(b":not-a-number\r\n")
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


class _NotRedis(http.server.BaseHTTPRequestHandler):
    def handle_one_request(self) -> None:  # whatever arrives, answer like a web server would
        self.raw_requestline = self.rfile.readline(65537)
        self.send_error(400, "Bad Request")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hung() -> Iterator[Listener]:
    listener = Listener("hang")
    yield listener
    listener.close()


@pytest.fixture(params=["http", "nonsense"])
def not_redis(request) -> Iterator[str]:
    """A server at the Redis URL that does not speak Redis: a tiny HTTP server, or one that answers garbage."""
    if request.param == "nonsense":
        listener = Listener("nonsense")
        yield listener.url
        listener.close()
        return
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotRedis)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"redis://127.0.0.1:{server.server_address[1]}/0"
    server.shutdown()
    server.server_close()


async def timed(awaitable) -> tuple[object, float]:
    started = time.perf_counter()
    result = await awaitable
    return result, time.perf_counter() - started


async def every_operation(state: RedisState) -> None:
    """Each StateBackend operation once, as a call makes them."""
    slot = Slot("m", rpm=100, tpm=10_000, track_in_flight=True)
    ticket = await state.acquire(slot, 10, 0)
    await state.health(["m"])
    await state.claim_probe("m", 1)
    await state.release(ticket, Outcome(actual_tokens=5, latency_s=0.1))
    await state.add_spend([("day", 0.5, 60)])
    await state.spent(["day"])


# --- a Redis that accepts and never answers ---------------------------------------------------------------


async def test_a_hung_redis_costs_one_timeout_then_no_call_waits_for_it(hung, caplog, unique_prefix):
    state = RedisState(hung.url, key_prefix=unique_prefix, timeout_s=0.3, retry_interval_s=0.05)
    with caplog.at_level(logging.INFO, logger="llm_router"):
        async with asyncio.timeout(10):
            _, first = await timed(state.acquire(Slot("m", rpm=3), 0, 0))
            assert 0.25 < first < 1.5  # the call that found Redis hung waited for its timeout, once
            waits = []
            for _ in range(2):  # later calls, spread over many probe intervals, never wait
                _, took = await timed(state.acquire(Slot("m", rpm=3), 0, 0))
                waits.append(took)
                await asyncio.sleep(0.12)
            with pytest.raises(LimitExceeded):  # the in-process state took over the count
                await state.acquire(Slot("m", rpm=3), 0, 0)
            _, took = await timed(every_operation(state))
            waits.append(took)
    await state.aclose()
    assert max(waits) < 0.1, waits
    assert sum("failed (TimeoutError" in r.message for r in caplog.records) == 1


async def test_calls_in_flight_when_redis_hangs_wait_one_timeout_together_not_one_each(hung, unique_prefix):
    state = RedisState(hung.url, key_prefix=unique_prefix, timeout_s=0.3, max_connections=8)
    async with asyncio.timeout(10):
        tickets, took = await timed(asyncio.gather(*(state.acquire(Slot("m", rpm=1000), 0, 0) for _ in range(50))))
    await state.aclose()
    assert all(isinstance(t, Ticket) for t in tickets) and took < 1.5


async def test_a_hung_redis_under_on_error_fail_refuses_every_operation_without_waiting(hung, unique_prefix):
    state = RedisState(hung.url, key_prefix=unique_prefix, on_error="fail", timeout_s=0.3, retry_interval_s=0.05)
    async with asyncio.timeout(10):
        with pytest.raises(StateUnavailableError, match="on_error: fail"):
            await state.acquire(Slot("m", rpm=3), 0, 0)
        for operation in (state.acquire(Slot("m", rpm=3), 0, 0), state.health(["m"]), state.claim_probe("m", 1),
                          state.release(Ticket(Slot("m")), Outcome(latency_s=0.1)), state.add_spend([("d", 1.0, 60)]),
                          state.spent(["d"])):
            with pytest.raises(StateUnavailableError, match="unavailable"):
                await timed(operation)
    await state.aclose()


async def test_a_router_on_a_hung_redis_answers_every_call_without_waiting_for_it(write_config, hung):
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        router = loopback_router(write_config, {"p": srv}, "models:\n  m: {provider: p, pricing: unknown, limits: {rpm: 100}}\n",
                                 "state: {backend: redis, url_env: REDIS_URL}\n", retry=NO_RETRY, env={"REDIS_URL": hung.url})
        async with router, asyncio.timeout(20):
            _, first = await timed(router.query("m", USER))  # finds Redis hung: its timeout (1 s by default), once
            later = [(await timed(router.query("m", USER)))[1] for _ in range(10)]
            await asyncio.sleep(1.1)  # past the probe interval: a call still does not wait
            later.append((await timed(router.query("m", USER)))[1])
        assert first < 3 and max(later) < 0.5, (first, later)
        assert srv.count() == 12


# --- a server at the Redis URL that is not Redis --------------------------------------------------------


async def test_a_server_that_is_not_redis_is_an_outage_under_the_declared_policy(not_redis, caplog, unique_prefix):
    local = RedisState(not_redis, key_prefix=unique_prefix, retry_interval_s=0.05)
    with caplog.at_level(logging.WARNING, logger="llm_router"):
        async with asyncio.timeout(10):
            await every_operation(local)
            await every_operation(local)
    await local.aclose()
    (warning,) = [r.message for r in caplog.records]
    assert f"Redis at {local.where} failed" in warning and "in-process state" in warning

    refusing = RedisState(not_redis, key_prefix=unique_prefix, on_error="fail")
    async with asyncio.timeout(10):
        with pytest.raises(StateUnavailableError, match=f"Redis at {refusing.where} failed"):
            await refusing.acquire(Slot("m", rpm=1), 0, 0)
    await refusing.aclose()


@pytest.mark.parametrize("on_error", ["local", "fail"])
async def test_a_router_whose_redis_url_is_not_redis_answers_or_refuses_with_a_typed_error(write_config, not_redis,
                                                                                         on_error):
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        router = loopback_router(write_config, {"p": srv}, "models:\n  m: {provider: p, pricing: unknown, limits: {rpm: 100}}\n",
                                 f"state: {{backend: redis, url_env: REDIS_URL, on_error: {on_error}}}\n", retry=NO_RETRY,
                                 env={"REDIS_URL": not_redis})
        async with router, asyncio.timeout(10):
            if on_error == "local":
                assert (await router.query("m", USER)).content == "ok"
            else:
                with pytest.raises(StateUnavailableError):
                    await router.query("m", USER)
        assert srv.count() == (1 if on_error == "local" else 0)


async def test_redis_coming_back_is_found_by_the_probe_not_by_a_call(redis_proc, unique_prefix):
    state = RedisState(redis_proc.url, key_prefix=unique_prefix, retry_interval_s=0.05, timeout_s=0.3)
    async with asyncio.timeout(20):
        await state.acquire(Slot("m", rpm=10), 0, 0)
        redis_proc.stop()
        await state.acquire(Slot("m", rpm=10), 0, 0)  # fails over to local
        redis_proc.start()
        while state._down_since is not None:  # no call is made meanwhile: the probe does the asking
            await asyncio.sleep(0.02)
        ticket = await state.acquire(Slot("m", rpm=10), 0, 0)
    await state.aclose()
    assert isinstance(ticket.handle, str)  # a Redis request id, not a local ticket


# --- a malformed Redis URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "why"), [
    ("localhost:6379", "must start with redis://"),
    ("http://cache:6379/0", "must start with redis://"),
    ("redis://:s3cret-pass@cache:port/0", "does not parse"),
    ("redis://:s3cret-pass@cache:99999/0", "does not parse"),
    ("redis://[::1/0", "does not parse"),
    ("redis:///0", "names no host"),
    ("redis://cache:6379/zero", "database number"),
    ("unix://", "socket's path"),
])
def test_a_malformed_redis_url_env_is_a_configuration_error_naming_router_yaml(write_config, url, why):
    site = write_config({"router.yaml": "state:\n  backend: redis\n  url_env: REDIS_URL\n"})
    with pytest.raises(ConfigurationError) as caught:
        Router.from_dir(catalog_dir(), site, env={"REDIS_URL": url})
    (problem,) = caught.value.problems
    assert problem.file == str(site / "router.yaml") and problem.key == "state.url_env"
    assert "REDIS_URL" in problem.message and why in problem.message
    assert "s3cret" not in str(caught.value)


def test_a_malformed_redis_url_in_router_yaml_names_the_url_key(write_config):
    site = write_config({"router.yaml": "state:\n  backend: redis\n  url: redis://cache:port/0\n"})
    with pytest.raises(ConfigurationError, match="the Redis URL in `url` is malformed") as caught:
        Router.from_dir(catalog_dir(), site, env={})
    assert caught.value.problems[0].key == "state.url"


def test_a_redis_state_without_the_redis_package_says_what_to_install(write_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "llm_router.state.redis")
    site = write_config({"router.yaml": "state:\n  backend: redis\n  url: redis://127.0.0.1:6379/0\n"})
    with pytest.raises(ConfigurationError, match=r"pip install 'llm-router\[redis\]'"):
        Router.from_dir(catalog_dir(), site, env={})
