"""Contracts with binary reply bodies (`base64:`): an AWS event stream replays byte for byte, a corrupted or
malformed one fails with a diff or a file:line problem, and `llm-router record` keeps a binary body's
bytes (as base64) instead of mangling them into text, secrets masked."""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from auth_mocks import SigV4Verifier
from bedrock_mock import ConverseMock
from eventstream_codec import BEDROCK_LIVE, event
from mockserver import MockServer

from llm_router._resources import catalog_dir
from llm_router.cli import main

BUNDLED = catalog_dir()
CONTRACTS = BUNDLED / "providers.d" / "contracts"
ACCESS_KEY, SECRET_KEY = "AKIARECORDBINARY0001", "rEcOrDsEcReT/kEy+ForTheRouter000000000000"


def _contract(name: str) -> dict:
    return json.loads(json.dumps(yaml.safe_load((CONTRACTS / f"{name}.yaml").read_text())))


def _layer(tmp_path, data: dict):
    folder = tmp_path / "providers.d" / "contracts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "models.d").mkdir(exist_ok=True)
    (tmp_path / "models.d" / "none.yaml").write_text("models: {}\n")
    return tmp_path


def _test(capsys, *dirs) -> tuple[int, str]:
    code = main(["test", *map(str, dirs), "--provider", "bedrock"])
    return code, capsys.readouterr().out


def test_the_bundled_stream_contract_replays_the_real_capture_byte_for_byte():
    reply = _contract("bedrock-chat-stream")["replies"][0]
    assert base64.b64decode("".join(reply["base64"].split())) == BEDROCK_LIVE
    assert reply["headers"] == {"content-type": "application/vnd.amazon.eventstream"}


def test_a_flipped_byte_in_a_binary_body_fails_the_contract_on_its_crc(tmp_path, capsys):
    data = _contract("bedrock-chat-stream")
    body = bytearray(BEDROCK_LIVE)
    body[400] ^= 0x01  # inside the third message: its CRC no longer matches
    data["replies"][0]["base64"] = base64.b64encode(bytes(body)).decode()
    code, out = _test(capsys, BUNDLED, _layer(tmp_path, data))
    assert code == 1 and "FAIL bedrock-chat-stream " in out
    assert "message 3: message CRC mismatch (at byte 359)" in out


def test_a_body_that_is_not_base64_is_a_contract_problem_with_file_and_line(tmp_path, capsys):
    data = _contract("bedrock-chat-stream")
    data["replies"][0]["base64"] = "AAAA3QAAAGfHkZB*"
    layer = _layer(tmp_path, data)
    code, out = _test(capsys, BUNDLED, layer)
    assert code == 1
    file = layer / "providers.d" / "contracts" / "bedrock-chat-stream.yaml"
    line = next(i for i, text in enumerate(file.read_text().splitlines(), 1) if text.strip().startswith("base64:"))
    assert f"{file}:{line}: replies[0].base64 is not base64 (" in out
    assert "encode the body's bytes with RFC 4648's alphabet" in out


def test_two_bodies_in_one_reply_name_every_kind_a_reply_may_give(tmp_path, capsys):
    data = _contract("bedrock-chat-stream")
    data["replies"][0]["text"] = "also text"
    code, out = _test(capsys, BUNDLED, _layer(tmp_path, data))
    assert code == 1 and "replies[0]: give exactly one of body, text, sse, base64 (got text, base64)" in out


@pytest.fixture
def bedrock(monkeypatch):
    with MockServer() as srv:
        for name, value in {"BEDROCK_BASE_URL": srv.url, "AWS_REGION": "us-west-2", "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                            "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "HOME": "/nonexistent"}.items():
            monkeypatch.setenv(name, value)
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
            monkeypatch.delenv(name, raising=False)
        yield srv


def _record(tmp_path, capsys, *argv: str) -> tuple[str, dict]:
    out = tmp_path / "providers.d" / "contracts" / "bedrock-recorded.yaml"
    (tmp_path / "models.d").mkdir(parents=True)
    (tmp_path / "models.d" / "none.yaml").write_text("models: {}\n")
    assert main(["record", *argv, "--out", str(out)]) == 0
    capsys.readouterr()
    text = out.read_text()
    return text, yaml.safe_load(text)


def test_a_recorded_converse_stream_keeps_its_bytes_and_replays(bedrock, tmp_path, capsys):
    ConverseMock(bedrock, SigV4Verifier(ACCESS_KEY, SECRET_KEY, "us-west-2", "bedrock"), [BEDROCK_LIVE], chunk_size=100)
    text, data = _record(tmp_path, capsys, "bedrock-nova-lite", "Reply with exactly OK.", "--stream")
    (reply,) = data["replies"]
    assert base64.b64decode(reply["base64"]) == BEDROCK_LIVE  # not text with U+FFFD where the bytes were
    assert reply["headers"] == {"content-type": "application/vnd.amazon.eventstream"}
    assert data["request"]["path"] == "/model/us.amazon.nova-lite-v1:0/converse-stream"
    assert data["request"]["headers"]["authorization"] == "***"
    assert data["expect"]["chunks"] == ["OK", "."] and data["env"] == {"AWS_REGION": "us-west-2"}
    assert SECRET_KEY not in text and ACCESS_KEY not in text
    code, out = _test(capsys, BUNDLED, tmp_path)
    assert code == 0 and "PASS bedrock-recorded" in out, out


def test_a_secret_echoed_in_a_binary_body_is_masked_in_the_recording(bedrock, tmp_path, capsys):
    echo = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": f"key {SECRET_KEY} id {ACCESS_KEY}"}})
    ConverseMock(bedrock, SigV4Verifier(ACCESS_KEY, SECRET_KEY, "us-west-2", "bedrock"), [echo])
    text, data = _record(tmp_path, capsys, "bedrock-nova-lite", "hi", "--stream")
    recorded = base64.b64decode(data["replies"][0]["base64"])
    assert SECRET_KEY.encode() not in recorded and ACCESS_KEY.encode() not in recorded
    assert b'"text":"key *** id ***"' in recorded
    assert SECRET_KEY not in text and ACCESS_KEY not in text
