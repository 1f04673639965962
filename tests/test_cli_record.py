"""`llm-router record`: one real call (here to a loopback server) written as a contract, secrets masked, that replays."""

from __future__ import annotations

import pytest
import yaml

from llm_router._resources import catalog_dir
from llm_router.cli import main
from tests.mockserver import MockServer, Reply, openai_chat_reply, openai_chat_sse

SECRET = "sk-record-SECRET-4f9a1c77"


@pytest.fixture
def server(monkeypatch):
    with MockServer() as srv:
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url + "/v1")
        yield srv


def _record_and_replay(tmp_path, capsys, *argv: str) -> tuple[str, dict]:
    out = tmp_path / "providers.d" / "contracts" / "openai-recorded.yaml"
    (tmp_path / "models.d").mkdir(parents=True)
    (tmp_path / "models.d" / "none.yaml").write_text("models: {}\n")
    assert main(["record", *argv, "--out", str(out)]) == 0
    text = out.read_text()
    capsys.readouterr()
    assert main(["test", str(catalog_dir()), str(tmp_path), "--provider", "openai"]) == 0, capsys.readouterr().out
    assert "PASS openai-recorded" in capsys.readouterr().out
    return text, yaml.safe_load(text)


def test_recorded_chat_replays_and_never_contains_the_key(server, tmp_path, capsys) -> None:
    # The server echoes the key in its reply too: it must be masked there as well.
    server.route("POST", "/v1/chat/completions",
                 lambda req: Reply.json({**openai_chat_reply("Hi there", prompt_tokens=12, completion_tokens=3),
                                         "echo": req.headers["authorization"]}))
    text, data = _record_and_replay(tmp_path, capsys, "gpt-4.1", "Hello", "--param", "temperature=0.2")
    assert SECRET not in text
    assert data["request"]["headers"]["authorization"] == "Bearer ***"
    assert data["replies"][0]["body"]["echo"] == "Bearer ***"
    assert data["request"]["path"] == "/v1/chat/completions"
    assert data["request"]["body"] == {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hello"}], "temperature": 0.2}
    assert data["expect"]["content"] == "Hi there"
    assert data["expect"]["usage"]["input_tokens"] == 12 and data["expect"]["usage"]["output_tokens"] == 3
    assert data["expect"]["cost"] == pytest.approx(12 * 2e-6 + 3 * 8e-6)
    assert data["name"] == "openai-recorded" and data["provider"] == "openai"


def test_recorded_stream_is_an_sse_transcript_that_replays(server, tmp_path, capsys) -> None:
    server.route("POST", "/v1/chat/completions", lambda req: Reply.sse(openai_chat_sse(("Hel", "lo"))))
    text, data = _record_and_replay(tmp_path, capsys, "gpt-4.1", "Hello", "--stream")
    assert SECRET not in text
    assert data["call"]["stream"] is True
    assert data["replies"][0]["sse"][-1] == {"data": "[DONE]"}
    assert data["expect"]["chunks"] == ["Hel", "lo"]


def test_recorded_error_expects_the_error_class_and_message(server, tmp_path, capsys) -> None:
    body = {"error": {"message": f"Incorrect API key provided: {SECRET}.", "type": "invalid_request_error",
                      "param": None, "code": "invalid_api_key"}}
    server.route("POST", "/v1/chat/completions", lambda req: Reply.json(body, status=400))
    text, data = _record_and_replay(tmp_path, capsys, "gpt-4.1", "Hello")
    assert SECRET not in text
    assert data["expect"]["error"]["type"] == "BadRequestError"
    assert data["expect"]["error"]["status"] == 400
    assert "Incorrect API key provided: ***" in data["expect"]["error"]["message_contains"]
    assert data["replies"][0]["status"] == 400


def test_a_deployments_own_key_is_masked_in_the_recorded_contract(server, tmp_path, capsys, monkeypatch) -> None:
    own = "sk-deployment-own-key-XYZ123"
    monkeypatch.setenv("OPENAI_BACKUP_KEY", own)
    server.route("POST", "/v1/chat/completions",
                 lambda req: Reply.json({**openai_chat_reply("Hi"), "echo": req.headers["authorization"]}))
    (tmp_path / "models.d").mkdir(parents=True)
    (tmp_path / "models.d" / "backup.yaml").write_text(
        "models:\n  backup-4.1:\n    upstream: gpt-4.1\n    pricing: unknown\n"
        "    deployments:\n      - {provider: openai, name: backup, key_env: OPENAI_BACKUP_KEY}\n")
    out = tmp_path / "providers.d" / "contracts" / "backup.yaml"
    assert main(["record", "backup-4.1", "Hello", "--dir", str(catalog_dir()), "--dir", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    capsys.readouterr()
    assert server.requests[0].headers["authorization"] == f"Bearer {own}"  # that key went over the wire
    assert own not in text and SECRET not in text
    assert yaml.safe_load(text)["request"]["headers"]["authorization"] == "Bearer ***"
