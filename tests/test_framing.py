"""The stream framings besides SSE, byte by byte: NDJSON lines and AWS event-stream messages, fed in
chunks split anywhere, checked against botocore's own vectors and decoder and a real Bedrock capture;
every broken body is a FrameError naming where it broke."""

from __future__ import annotations

import json

import pytest
from botocore.eventstream import EventStreamBuffer
from eventstream_codec import (
    BEDROCK_EXCEPTION,
    BEDROCK_LIVE,
    BEDROCK_TOOL_EVENTS,
    ERROR_EVENT_MESSAGE,
    NEGATIVE,
    POSITIVE,
    event,
    message,
    raw_message,
)
from hypothesis import given
from hypothesis import strategies as st

from llm_router.engine.framing import EventStreamDecoder, Frame, FrameError, NDJSONDecoder, StreamErrorFrame


def feed_all(decoder: NDJSONDecoder | EventStreamDecoder, body: bytes, cuts: list[int] = ()) -> list[Frame]:  # type: ignore[assignment]
    frames, last = [], 0
    for cut in sorted(cuts):
        frames += decoder.feed(body[last:cut])
        last = cut
    frames += decoder.feed(body[last:])
    return frames + decoder.close()


# ----------------------------------------------------------------------------------- NDJSON

OLLAMA = (  # the lines of ollama/ollama docs/api.md "Chat request (Streaming)"
    b'{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":"The","images":null},"done":false}\n'
    b'{"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","message":{"role":"assistant","content":""},"done":true,"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}\n'
)


def test_ndjson_lines_are_frames_wherever_the_chunks_split():
    whole = feed_all(NDJSONDecoder(), OLLAMA)
    assert [json.loads(f.data)["done"] for f in whole] == [False, True]
    assert [(f.name, f.number, f.offset) for f in whole] == [("", 1, 0), ("", 2, OLLAMA.index(b"\n") + 1)]
    for cut in range(1, len(OLLAMA)):
        assert feed_all(NDJSONDecoder(), OLLAMA, [cut]) == whole
    assert feed_all(NDJSONDecoder(), OLLAMA, list(range(1, len(OLLAMA)))) == whole  # one byte at a time


def test_ndjson_crlf_blank_lines_and_a_last_line_without_newline():
    body = b'{"a":1}\r\n\r\n   \n{"a":2}\r\n{"a":3}'
    frames = feed_all(NDJSONDecoder(), body, [8])  # the CRLF split across chunks
    assert [json.loads(f.data) for f in frames] == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert [f.number for f in frames] == [1, 4, 5]  # blank lines count as lines
    assert frames[2].offset == body.rindex(b"{")


def test_ndjson_an_empty_body_has_no_frames():
    assert feed_all(NDJSONDecoder(), b"") == []
    assert feed_all(NDJSONDecoder(), b"\n\n") == []


def test_ndjson_a_line_over_the_cap_is_refused_before_it_is_buffered_whole():
    decoder = NDJSONDecoder(max_frame_bytes=16)
    assert [f.data for f in decoder.feed(b'{"ok":1}\n{"long":"')] == [b'{"ok":1}']
    with pytest.raises(FrameError, match=r"line 2 is longer than max_frame_bytes \(16\) \(at byte 9\)"):
        decoder.feed(b"x" * 20)


def test_ndjson_a_terminated_line_over_the_cap_is_refused_after_the_good_lines_before_it():
    decoder = NDJSONDecoder(max_frame_bytes=16)
    frames = decoder.feed(b'{"ok":1}\n' + b'"' + b"y" * 30 + b'"\n')
    assert [f.data for f in frames] == [b'{"ok":1}']  # delivered first
    with pytest.raises(FrameError, match=r"line 2 is longer .* \(at byte 9\)"):
        decoder.close()


# ----------------------------------------------------------------------------------- event-stream


@pytest.mark.parametrize("name", list(POSITIVE))
def test_eventstream_decodes_botocores_positive_vectors(name):
    body, headers, payload = POSITIVE[name]
    (frame,) = feed_all(EventStreamDecoder(), body)
    assert dict(frame.headers) == headers
    assert frame.data == payload
    assert (frame.number, frame.offset) == (1, 0)


@pytest.mark.parametrize("name", list(NEGATIVE))
def test_eventstream_refuses_botocores_negative_vectors(name):
    body, says = NEGATIVE[name]
    with pytest.raises(FrameError, match=rf"message 1.*{says}.*\(at byte 0\)"):
        feed_all(EventStreamDecoder(), body)


def test_eventstream_an_error_message_is_a_stream_error_with_its_code():
    with pytest.raises(StreamErrorFrame) as caught:
        feed_all(EventStreamDecoder(), ERROR_EVENT_MESSAGE)
    assert (caught.value.code, caught.value.message) == ("code", "message")


def test_eventstream_the_real_bedrock_capture_decodes_to_its_six_events_in_any_chunking():
    frames = feed_all(EventStreamDecoder(), BEDROCK_LIVE)
    assert [f.name for f in frames] == ["messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop",
                                        "messageStop", "metadata"]
    assert [f.offset for f in frames] == [0, 180, 359, 549, 683, 900]  # as botocore reports them (research note 8.2)
    assert json.loads(frames[1].data)["delta"]["text"] == "OK"
    assert json.loads(frames[5].data)["usage"]["totalTokens"] == 17
    for cut in (1, 11, 12, 13, 179, 180, 181, 1000):
        assert feed_all(EventStreamDecoder(), BEDROCK_LIVE, [cut]) == frames
    assert feed_all(EventStreamDecoder(), BEDROCK_LIVE, list(range(1, len(BEDROCK_LIVE), 7))) == frames


def test_the_test_encoder_reproduces_the_real_capture_byte_for_byte():
    first = feed_all(EventStreamDecoder(), BEDROCK_LIVE)[0]
    assert event("messageStart", first.data) == BEDROCK_LIVE[:180]


def test_eventstream_the_real_exception_frame_is_a_stream_error_after_the_events_before_it():
    decoder = EventStreamDecoder()
    body = event(*BEDROCK_TOOL_EVENTS[0]) + BEDROCK_EXCEPTION
    (frame,) = decoder.feed(body)  # the good event first, in order
    assert frame.name == "contentBlockStart"
    with pytest.raises(StreamErrorFrame) as caught:
        decoder.close()
    assert caught.value.code == "modelStreamErrorException"
    assert caught.value.message == "Model Stream Error"
    assert caught.value.offset == len(body) - len(BEDROCK_EXCEPTION)


@pytest.mark.parametrize("cut", [5, 12, 100, len(BEDROCK_LIVE) - 1])
def test_eventstream_a_body_cut_short_names_the_message_and_its_offset(cut):
    decoder = EventStreamDecoder()
    frames = decoder.feed(BEDROCK_LIVE[:cut])
    with pytest.raises(FrameError, match=r"the body ended inside message (\d+): \d+ bytes of .*\(at byte (\d+)\)") as caught:
        decoder.close()
    assert str(caught.value).find(f"message {len(frames) + 1}") > 0
    assert caught.value.offset == (900 if cut > 900 else 0)


def test_eventstream_a_message_over_the_cap_is_refused_from_its_prelude():
    big = event("contentBlockDelta", {"delta": {"text": "x" * 5000}})
    decoder = EventStreamDecoder(max_frame_bytes=4096)
    with pytest.raises(FrameError, match=r"message 1 is \d+ bytes, longer than max_frame_bytes \(4096\) \(at byte 0\)"):
        decoder.feed(big[:12])


@pytest.mark.parametrize(("head", "says"), [
    (b"\x01a\x07\x00\x09value", "its headers end in the middle of a header"),  # a string said to be 9 bytes has 5
    (b"\x01a\x05\x00\x01", "its headers end in the middle of a header"),  # an int64 of 2 bytes
    (b"\x05ab", "its headers end in the middle of a header"),  # a name said to be 5 bytes has 2
    (b"\x01a\x09" + b"x" * 5, "its headers end in the middle of a header"),  # a UUID of 5 bytes
    (b"\x01a\x0a", "header 'a' has the unknown type 10"),
    (b"\x02\xff\xfe\x00", "a header name or string is not UTF-8"),
    (b"\x01a\x07\x00\x02\xff\xfe", "a header name or string is not UTF-8"),
])
def test_eventstream_malformed_headers_are_refused(head, says):
    with pytest.raises(FrameError, match=rf"message 1: {says} \(at byte 0\)"):
        feed_all(EventStreamDecoder(), raw_message(head))


headers_strategy = st.dictionaries(
    st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) < 256),
    st.one_of(st.booleans(), st.integers(-(2**31), 2**31 - 1), st.binary(max_size=40), st.text(max_size=40)),
    max_size=5,
)


@given(st.lists(st.tuples(headers_strategy, st.binary(max_size=200)), min_size=1, max_size=6), st.data())
def test_eventstream_agrees_with_botocores_decoder(messages, data):
    body = b"".join(message(h, p) for h, p in messages)
    cuts = data.draw(st.lists(st.integers(1, len(body) - 1), max_size=5))
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    theirs = [(m.headers, m.payload) for m in buffer]
    ours = [(dict(f.headers), f.data) for f in feed_all(EventStreamDecoder(), body, cuts)]
    assert ours == theirs == [(h, p) for h, p in messages]
