"""`llm-router render`, `models`, `query` and `demo`: what they print, exit codes, and no key or traceback in sight."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from llm_router.cli import main
from llm_router.demo import start_demo_server

SECRET = "sk-test-CLI-SECRET-93ab1e"


@pytest.fixture
def demo_url() -> Iterator[str]:
    """The demo provider's loopback server, on its own event loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server, url = asyncio.run_coroutine_threadsafe(start_demo_server(), loop).result(timeout=10)
    yield url

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


@pytest.fixture
def no_keys(monkeypatch):
    for name in list(os.environ):
        if name.endswith(("_API_KEY", "_BASE_URL")):
            monkeypatch.delenv(name)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    return subprocess.run([sys.executable, "-m", "llm_router", *args], check=False, capture_output=True, text=True, timeout=60,
                          env={**base, **(env or {})})


def test_render_prints_the_request_with_the_key_masked(no_keys, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert main(["render", "gpt-4.1", "hi there", "--system", "be brief", "-p", "temperature=0.5"]) == 0
    out, err = capsys.readouterr()
    request = json.loads(out)
    assert request["method"] == "POST" and request["url"] == "https://api.openai.com/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer ***"
    assert request["body"] == {"model": "gpt-4.1", "temperature": 0.5, "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]}
    assert SECRET not in out + err


@pytest.mark.parametrize("model,key", [("claude-3-5-haiku-latest", "ANTHROPIC_API_KEY"), ("gemini-2.5-flash", "GEMINI_API_KEY"),
                                       ("flux-pro-1.1", "BFL_API_KEY")])
def test_render_never_shows_a_key_in_header_or_url(model, key):
    result = run("render", model, "a cat on a mat", "--format", "json", env={key: SECRET})
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr and "***" in result.stdout


def test_render_of_a_stream_shows_the_stream_request(no_keys, capsys):
    assert main(["render", "gemini-2.5-flash", "hi", "--stream"]) == 0
    request = json.loads(capsys.readouterr().out)
    assert request["url"].endswith(":streamGenerateContent") and request["query"] == {"alt": "sse"}


def test_models_lists_the_demo_model_with_its_provider_and_price(no_keys, capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (demo,) = [line for line in lines if line.startswith("demo-echo ")]
    assert demo.split()[1:5] == ["demo", "chat", "-", "$1/$2"]  # no capabilities
    assert any(line.startswith("flux-pro-1.1 ") for line in lines)


def test_models_json_is_a_list_of_rows(no_keys, capsys):
    assert main(["models", "--format", "json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["demo-echo"] == {"name": "demo-echo", "provider": "demo", "kind": "chat", "price": "$1/$2 per M",
                                 "capabilities": [], "params": ["max_tokens", "temperature"], "fallbacks": []}
    assert rows["gpt-4.1"]["capabilities"] == ["structured_output", "tools", "vision"]


def test_models_text_shows_each_models_capabilities(no_keys, capsys):
    assert main(["models"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("gemini-2.5-flash "))
    assert "structured_output,tools,vision" in line.split()


def test_query_demo_echo_against_the_demo_server(demo_url, no_keys, monkeypatch, capsys):
    monkeypatch.setenv("DEMO_BASE_URL", demo_url)
    assert main(["query", "demo-echo", "hello big world", "-p", "temperature=0.2"]) == 0
    out, err = capsys.readouterr()
    assert out == "echo: world big hello\n"
    assert err.startswith("[demo-echo via demo: ") and "cost $" in err


def test_query_json_and_stream_against_the_demo_server(demo_url):
    env = {"DEMO_BASE_URL": demo_url}
    result = run("query", "demo-echo", "one two", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["content"] == "echo: two one" and answer["model"] == "demo-echo" and answer["provider"] == "demo"
    assert answer["usage"]["output_tokens"] == 3
    streamed = run("query", "demo-echo", "one two", "--stream", env=env)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == "echo: two one\n"


def test_demo_command_runs_a_query_offline():
    result = run("demo", "ping pong")
    assert result.returncode == 0, result.stderr
    assert "query  → 'echo: pong ping'" in result.stdout and "stream → echo: pong ping" in result.stdout
    assert "0 error(s)" in result.stdout


@pytest.mark.parametrize("command", ["render", "query"])
def test_unknown_model_is_one_line_and_exit_1(command):
    result = run(command, "gpt-4.1x", "hi")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: unknown model 'gpt-4.1x'; did you mean 'gpt-4.1'")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_unsupported_param_is_a_clear_error(no_keys, capsys):
    assert main(["render", "gpt-4.1", "hi", "-p", "nope=1"]) == 1
    _, err = capsys.readouterr()
    assert err.startswith("error: model 'gpt-4.1' does not accept param(s) nope; allowed: ")


def test_malformed_param_is_a_clear_error():
    result = run("render", "gpt-4.1", "hi", "-p", "nope")
    assert result.returncode == 1 and result.stderr == "error: --param takes KEY=VALUE, got 'nope'\n"


def test_query_to_a_dead_server_is_one_error_line_with_no_traceback():
    result = run("query", "demo-echo", "hi", env={"DEMO_BASE_URL": "http://127.0.0.1:9/v1"})
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "demo" in result.stderr and "Traceback" not in result.stderr


def test_bad_config_dir_is_reported_with_file_and_line(write_config, capsys):
    config = write_config({"models.d/m.yaml": "models:\n  x:\n    provider: nope\n    pricing: unknown\n"})
    assert main(["models", str(config)]) == 1
    _, err = capsys.readouterr()
    assert f"{config / 'models.d/m.yaml'}:3: model 'x': names provider 'nope'" in err


def test_python_dash_m_and_main_agree_on_usage_errors():
    result = run("frobnicate")
    assert result.returncode == 2 and "invalid choice: 'frobnicate'" in result.stderr
