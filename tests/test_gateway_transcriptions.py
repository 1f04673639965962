"""`POST /v1/audio/transcriptions` on `llm-router serve`, called with the official openai SDK over real
HTTP on 127.0.0.1 (one gateway process for the module), routed to the bundled OpenAI transcription
operation on a loopback mock: the audio file goes upstream byte for byte, as multipart, with its name."""

from __future__ import annotations

import socket

import httpx2
import pytest
from formdata import multipart
from gateway_harness import KEYS, UPSTREAM_KEY, Gateway, openai_gateway_fixtures, sdk_client

AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 64  # a stand-in for a 16 KB WAV file


def upstream_transcription(request):
    parts = {p.name: p for p in multipart(request.headers, request.body)}
    return {"text": f"heard {len(parts['file'].data)} bytes in {parts['file'].filename}",
            "usage": {"type": "duration", "seconds": 12}}


mock, gateway = openai_gateway_fixtures("/v1/audio/transcriptions", upstream_transcription)


def test_the_openai_sdk_gets_the_transcript_and_the_file_goes_upstream_whole(gateway, mock):
    raw = sdk_client(gateway).audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("meeting.wav", AUDIO, "audio/wav"), language="en", temperature=0.2)
    assert raw.parse().text == f"heard {len(AUDIO)} bytes in meeting.wav"
    assert float(raw.headers["x-llm-router-cost-usd"]) == pytest.approx(12 * 0.0001)  # 12 s at $0.006 a minute
    sent = [r for r in mock.requests if r.path == "/v1/audio/transcriptions"][-1]
    parts = {p.name: p for p in multipart(sent.headers, sent.body)}
    assert parts["file"].data == AUDIO and parts["file"].filename == "meeting.wav"
    assert (parts["model"].value, parts["language"].value, parts["temperature"].value) == ("whisper-1", "en", "0.2")
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_response_format_text_answers_with_the_text_itself(gateway):
    text = sdk_client(gateway).audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"ID3" + bytes(100)),
                                                       response_format="text")
    assert text.strip() == "heard 103 bytes in a.mp3"


def post(gateway: Gateway, files=None, data=None, **headers: str) -> httpx2.Response:
    return httpx2.post(gateway.url + "/v1/audio/transcriptions", files=files, data=data, timeout=10,
                       headers={"authorization": f"Bearer {KEYS['full']}", **headers})


@pytest.mark.parametrize(("files", "data", "status", "says"), [
    (None, {"model": "whisper-1"}, 400, "multipart/form-data"),  # a form without a file is urlencoded
    ({"other": ("a.wav", b"x")}, {"model": "whisper-1"}, 400, "file: required"),
    ({"file": ("a.wav", b"x")}, {"model": "whisper-1", "response_format": "srt"}, 400, "response_format"),
    ({"file": ("a.wav", b"x")}, {"model": "chat-a"}, 400, "/v1/chat/completions"),
    ({"file": ("a.wav", b"x"), "prompt": ("p.txt", b"x")}, {"model": "whisper-1"}, 400, "Maximum number of files is 1"),
])
def test_a_malformed_transcription_request_is_a_4xx_saying_what_is_wrong(gateway, files, data, status, says):
    reply = post(gateway, files=files, data=data)
    assert reply.status_code == status and says in reply.json()["error"]["message"], reply.text


def test_an_upload_over_the_limit_is_refused_from_its_content_length(gateway):
    """A body that says it is 26 MiB is refused before a byte of it is read (a raw socket: HTTP
    clients will not announce more than they send)."""
    host, port = gateway.url.removeprefix("http://").split(":")
    head = (f"POST /v1/audio/transcriptions HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {KEYS['full']}\r\n"
            f"content-type: multipart/form-data; boundary=b\r\ncontent-length: {26 * 2**20}\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            piece = sock.recv(65536)
            if not piece:
                break
            reply += piece
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413") and b'"request_too_large"' in rest, reply[:300]
