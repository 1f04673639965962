"""`llm-router serve` as a real process on 127.0.0.1 for the gateway tests, the loopback mock provider
it talks to, and the config dirs they share.

    gw = Gateway.start([catalog_dir(), site], env)   # waits (bounded) until /healthz answers
    gw.url, gw.wait_for_log("reloaded"), gw.signal(signal.SIGHUP), gw.stop()

Every server binds 127.0.0.1; every wait is bounded; `stop` always ends the process (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx2
import pytest
from loopback import provider_yaml
from mockserver import MockServer, Reply, Request, openai_chat_reply, openai_chat_sse, openai_error, openai_usage, recraft_reply

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 20.0
UPSTREAM_KEY = "sk-upstream-secret-0123456789"  # the gateway's own provider key: must never reach a client

KEYS = {  # virtual key name → the key a client sends
    "full": "sk-gw-full-0123456789abcdef",
    "restricted": "sk-gw-restricted-0123456789ab",
    "limited": "sk-gw-limited-0123456789abcd",
    "budget": "sk-gw-budget-0123456789abcde",
}
ADMIN_KEY = "sk-gw-admin-0123456789abcdefgh"


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# --- the mock provider ---------------------------------------------------------------------------------

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def tool_call_reply(model: str) -> dict[str, Any]:
    reply = openai_chat_reply(None, model, finish_reason="tool_calls")
    reply["choices"][0]["message"]["tool_calls"] = [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    return reply


def tool_call_sse(model: str) -> list[dict[str, Any]]:
    """A streamed turn with one tool call whose arguments arrive in three fragments."""
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"data": {"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1, "model": model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}}

    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    return [chunk({"role": "assistant", "content": None, "tool_calls": [first]}),
            *(chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}) for part in ('{"city"', ': "Par', 'is"}')),
            chunk({}, "tool_calls"),
            {"data": {"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [],
                      "usage": openai_usage(12, 7)}},
            {"data": "[DONE]"}]


def chat_handler(req: Request) -> Reply:
    """The upstream's behaviour by the model name it is sent (each test model maps to one)."""
    body = req.json()
    model, stream = body["model"], body.get("stream", False)
    if req.headers.get("authorization") != f"Bearer {UPSTREAM_KEY}":
        return Reply.json(openai_error("wrong upstream key", "invalid_request_error", "invalid_api_key"), status=401)
    if model == "rate-limited":
        return Reply.json(openai_error("slow down", "requests", "rate_limit_exceeded"), status=429,
                          headers={"retry-after": "30"})
    if model == "auth-fail":
        return Reply.json(openai_error(f"Incorrect API key provided: {UPSTREAM_KEY}", "invalid_request_error",
                                       "invalid_api_key"), status=401)
    if model == "bad-request":
        return Reply.json(openai_error("this model's maximum context length is 8 tokens", "invalid_request_error",
                                       "context_length_exceeded", "messages"), status=400)
    if model == "slow":
        return Reply.hang(3.0)
    if model == "cut-stream":
        return Reply.cut_sse(openai_chat_sse(["one ", "two ", "three ", "four"], model), after=3)
    if model in ("long-stream", "longer-stream"):  # 2 s, 4 s
        count = 20 if model == "long-stream" else 40
        return Reply.sse(openai_chat_sse([f"w{i} " for i in range(count)], model), delay_s=0.1)
    if body.get("tools") and body["messages"][-1]["role"] == "user":
        return Reply.sse(tool_call_sse(model)) if stream else Reply.json(tool_call_reply(model))
    content = '{"city": "Paris", "temp_c": 18}' if body.get("response_format") else "Hello!"
    if stream:
        return Reply.sse(openai_chat_sse(["Hel", "lo", "!"] if content == "Hello!" else [content], model))
    return Reply.json(openai_chat_reply(content, model, prompt_tokens=10, completion_tokens=5, cached_tokens=4,
                                        reasoning_tokens=2))


def image_handler(req: Request) -> Reply:
    body = req.json()
    if body["model"] == "b64-model":
        return Reply.json({"created": 1, "data": [{"b64_json": "iVBORw0KGgo="}],
                           "usage": {"input_tokens": 9, "output_tokens": 100, "total_tokens": 109}})
    return Reply.json(recraft_reply("https://img.example/cat.png"))


def start_mock() -> MockServer:
    srv = MockServer().start()
    srv.route("POST", "/v1/chat/completions", chat_handler)
    srv.route("POST", "/v1/images/generations", image_handler)
    return srv


# --- config dirs ---------------------------------------------------------------------------------------

MODELS_YAML = """\
models:
  chat-a:
    provider: mock
    upstream: gpt-4.1
    pricing: {input_per_million: 2.0, output_per_million: 8.0, cached_input_per_million: 0.5}
    params: [temperature, max_tokens, max_completion_tokens]
    capabilities: [tools, structured_output]
  chat-b:
    provider: mock
    upstream: gpt-4.1-mini
    pricing: {input_per_million: 0.4, output_per_million: 1.6}
    params: [temperature]
  chat-ratelimited: {provider: mock, upstream: rate-limited, pricing: unknown}
  chat-authfail: {provider: mock, upstream: auth-fail, pricing: unknown}
  chat-badrequest: {provider: mock, upstream: bad-request, pricing: unknown}
  chat-slow: {provider: slowmock, upstream: slow, pricing: unknown}
  chat-cut: {provider: mock, upstream: cut-stream, pricing: unknown}
  chat-long: {provider: mock, upstream: long-stream, pricing: {input_per_million: 1.0, output_per_million: 1.0}}
  chat-longer: {provider: mock, upstream: longer-stream, pricing: unknown}
  secret-model: {provider: mock, upstream: gpt-4.1, pricing: unknown}
  img-url:
    provider: mockimg
    kind: image
    upstream: url-model
    pricing: {per_image: 0.04}
    params: [size, style]
  img-wh:
    provider: mockimg
    kind: image
    upstream: url-model
    pricing: {per_image: 0.03}
    params: [width, height]
  img-b64:
    provider: mockb64
    kind: image
    upstream: b64-model
    pricing: unknown
    params: [size, quality]
"""

def image_provider_yaml(name: str, content: str, content_kind: str) -> str:
    """An OpenAI-style images provider on the mock (url or base64 answers), its base URL from <NAME>_BASE_URL."""
    env = name.upper()
    return (f"name: {name}\nbase_url: http://127.0.0.1:9/v1\nbase_url_env: {env}_BASE_URL\n"
            f"auth: {{header: Authorization, scheme: Bearer, env: {env}_API_KEY}}\nhosts: [127.0.0.1]\n"
            "operations:\n  image:\n    path: /images/generations\n"
            '    body: {model: "{{ model.upstream }}", prompt: "{{ prompt }}"}\n    params: merge\n'
            f"    response:\n      content: {content}\n      content_kind: {content_kind}\n"
            "      usage: {input_tokens: $.usage.input_tokens, output_tokens: $.usage.output_tokens}\n")


def gateway_yaml(keys: Mapping[str, str] = KEYS, *, limited_rpm: int = 3, extra: str = "") -> str:
    """The test keys: `full` (every model), `restricted` (chat-a only), `limited` (rpm), `budget` (a day budget)."""
    return (
        "# yaml-language-server: $schema=../schemas/gateway.schema.json\n"
        "max_request_bytes: 65536\n"
        "forward_headers: [x-trace-id]\n"
        "keys:\n"
        f"  full: {{key_sha256: \"{sha256(keys['full'])}\", models: ['*']}}\n"
        f"  restricted: {{key_sha256: \"{sha256(keys['restricted'])}\", models: [chat-a]}}\n"
        f"  limited: {{key_sha256: \"{sha256(keys['limited'])}\", models: ['chat-*'], rpm: {limited_rpm}}}\n"
        f"  budget:\n    key_sha256: \"{sha256(keys['budget'])}\"\n    models: [chat-a]\n"
        "    budgets: [{period: day, limit_usd: 0.0001}]\n" + extra
    )


def write_site(root: Path, gateway: str | None = None, router: str | None = None) -> Path:
    """A config dir: the mock providers and the test models (layered on the bundled catalog), gateway.yaml and router.yaml."""
    files = {
        "providers.d/mock.yaml": provider_yaml("mock", "{max_attempts: 1, max_wait_s: 1}"),
        "providers.d/slowmock.yaml": provider_yaml("slowmock", "{max_attempts: 1}").replace(
            "hosts: [127.0.0.1]\n", "hosts: [127.0.0.1]\ntimeouts: {read_s: 0.3, total_s: 1}\n"),
        "providers.d/mockimg.yaml": image_provider_yaml("mockimg", "$.data[0].url", "url"),
        "providers.d/mockb64.yaml": image_provider_yaml("mockb64", "$.data[0].b64_json", "base64"),
        "models.d/m.yaml": MODELS_YAML,
        "gateway.yaml": gateway if gateway is not None else gateway_yaml(),
    }
    if router is not None:
        files["router.yaml"] = router
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def gateway_env(mock: MockServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL")) and not k.startswith("LLM_ROUTER")}
    for provider in ("MOCK", "SLOWMOCK", "MOCKIMG", "MOCKB64"):
        env.update({f"{provider}_API_KEY": UPSTREAM_KEY, f"{provider}_BASE_URL": mock.url + "/v1"})
    env.update(LLM_ROUTER_ADMIN_KEY=ADMIN_KEY, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def openai_gateway_fixtures(path: str, upstream: Any) -> tuple[Any, Any]:
    """A test module's `mock` and `gateway` fixtures (one of each for the module): the loopback mock
    answering POST `path` with `upstream` (a handler or a Reply), and the gateway on the bundled catalog
    and a test site, its bundled `openai` provider pointed at the mock (the operation-kind endpoints:
    embeddings, speech, transcriptions). Use: `mock, gateway = openai_gateway_fixtures(...)`."""
    from llm_router._resources import catalog_dir

    @pytest.fixture(scope="module")
    def mock() -> Iterator[MockServer]:
        srv = start_mock()
        srv.route("POST", path, upstream)
        yield srv
        srv.stop()

    @pytest.fixture(scope="module")
    def gateway(mock: MockServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
        env = gateway_env(mock, OPENAI_API_KEY=UPSTREAM_KEY, OPENAI_BASE_URL=mock.url + "/v1")
        gw = Gateway.start([catalog_dir(), write_site(tmp_path_factory.mktemp("site"))], env)
        yield gw
        gw.stop()

    return mock, gateway


def sdk_client(gateway: Gateway) -> Any:
    """The official openai SDK pointed at the gateway with the `full` virtual key, no retries."""
    import openai

    return openai.OpenAI(api_key=KEYS["full"], base_url=gateway.url + "/v1", max_retries=0, timeout=10)


# --- the gateway process -------------------------------------------------------------------------------

class Gateway:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.url = ""
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, dirs: Sequence[str | Path], env: Mapping[str, str], *args: str, wait_ready: bool = True) -> Gateway:
        proc = subprocess.Popen([sys.executable, "-m", "llm_router", "serve", *map(str, dirs), "--port", "0", *args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=dict(env), cwd=ROOT)
        gateway = cls(proc)
        if wait_ready:
            try:
                gateway.url = "http://" + gateway.wait_for_log(r"listening on http://(127\.0\.0\.1:\d+)").group(1)
                gateway.wait_healthy()
            except BaseException:
                gateway.stop()
                raise
        return gateway

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = START_TIMEOUT_S, after: int = 0) -> re.Match[str]:
        """The first log line (from line `after` on) matching `pattern`; fails when the process ends first or time runs out."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[after:]:
                    if match := regex.search(line):
                        return match
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"gateway exited ({self.proc.returncode}) before logging {pattern!r}:\n{self.log_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no log line matched {pattern!r} within {timeout}s:\n{self.log_tail()}")
                self._cond.wait(min(left, 0.1))

    def wait_for_count(self, pattern: str, count: int, timeout: float = START_TIMEOUT_S, after: int = 0) -> None:
        """Until `count` log lines (from line `after` on) match `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for line in self.lines[after:] if regex.search(line)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fewer than {count} log lines matched {pattern!r} within {timeout}s:\n{self.log_tail()}")
                self._cond.wait(min(left, 0.1))

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx2.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"gateway at {self.url} did not become healthy:\n{self.log_tail()}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)


def post_json(url: str, body: Any, key: str, timeout: float = 10, **headers: str) -> httpx2.Response:
    return httpx2.post(url, content=json.dumps(body).encode(), timeout=timeout,
                       headers={"authorization": f"Bearer {key}", "content-type": "application/json", **headers})
