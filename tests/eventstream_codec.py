"""Test helpers for the AWS event-stream framing: an encoder, and the byte fixtures quoted in
/work/research18/08-aws-eventstream-bedrock.md (botocore's own unit-test vectors from
boto/botocore@0e6e2404:tests/unit/test_eventstream.py, and real Bedrock ConverseStream bodies from
vercel/ai's fixtures). The encoder reproduces the first real message byte for byte (a test says so)."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

STRING, BYTES, BOOL, INT32 = 7, 6, 0, 4


def header(name: str, value: Any) -> bytes:
    raw = name.encode()
    out = bytes([len(raw)]) + raw
    if isinstance(value, bool):
        return out + bytes([0 if value else 1])
    if isinstance(value, int):
        return out + bytes([INT32]) + struct.pack("!i", value)
    if isinstance(value, bytes):
        return out + bytes([BYTES]) + struct.pack("!H", len(value)) + value
    text = str(value).encode()
    return out + bytes([STRING]) + struct.pack("!H", len(text)) + text


def message(headers: dict[str, Any], payload: bytes = b"") -> bytes:
    """One event-stream message: prelude (lengths and their CRC), headers, payload, message CRC."""
    return raw_message(b"".join(header(k, v) for k, v in headers.items()), payload)


def raw_message(head: bytes, payload: bytes = b"") -> bytes:
    """A message around headers given as bytes (well-formed or not), with correct lengths and CRCs."""
    prelude = struct.pack("!II", 16 + len(head) + len(payload), len(head))
    body = prelude + struct.pack("!I", zlib.crc32(prelude)) + head + payload
    return body + struct.pack("!I", zlib.crc32(body))


def event(event_type: str, payload: Any) -> bytes:
    """A Bedrock-style event message, headers in the order the real capture has them."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    return message({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}, data)


def exception(exception_type: str, payload: Any) -> bytes:
    data = json.dumps(payload, separators=(",", ":")).encode()
    return message({":message-type": "exception", ":exception-type": exception_type,
                    ":content-type": "application/json"}, data)


# botocore's positive vectors: (bytes, headers, payload)
POSITIVE = {
    "empty": (b"\x00\x00\x00\x10\x00\x00\x00\x00\x05\xc2H\xeb}\x98\xc8\xff", {}, b""),
    "int8": (b"\x00\x00\x00\x17\x00\x00\x00\x07)\x86\x01X\x04byte\x02\xff\xc2\xf8i\xdc", {"byte": -1}, b""),
    "int16": (b"\x00\x00\x00\x19\x00\x00\x00\tq\x0e\x92>\x05short\x03\xff\xff\xb2|\xb6\xcc", {"short": -1}, b""),
    "int32": (b"\x00\x00\x00\x1d\x00\x00\x00\r\x83\xe3\xf0\xe7\x07integer\x04\xff\xff\xff\xff\x8b\x8e\x12\xeb",
              {"integer": -1}, b""),
    "int64": (b"\x00\x00\x00\x1e\x00\x00\x00\x0e]J\xdb\x8d\x04long\x05\xff\xff\xff\xff\xff\xff\xff\xffK\xc22\xda",
              {"long": -1}, b""),
    "payload_no_headers": (b"\x00\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'}\xc3e96", {}, b"{'foo':'bar'}"),
    "payload_one_str_header": (
        b"\x00\x00\x00=\x00\x00\x00 \x07\xfd\x83\x96\x0ccontent-type\x07\x00\x10application/json{'foo':'bar'}\x8d\x9c\x08\xb1",
        {"content-type": "application/json"}, b"{'foo':'bar'}"),
    "all_header_types": (
        b"\x00\x00\x00\x62\x00\x00\x00\x52\x03\xb5\xcb\x9c"
        b"\x010\x00\x011\x01\x012\x02\x02\x013\x03\x00\x03"
        b"\x014\x04\x00\x00\x00\x04\x015\x05\x00\x00\x00\x00\x00\x00\x00\x05"
        b"\x016\x06\x00\x05bytes\x017\x07\x00\x04utf8"
        b"\x018\x08\x00\x00\x00\x00\x00\x00\x00\x08\x019\x090123456789abcdef"
        b"\x63\x35\x36\x71",
        {"0": True, "1": False, "2": 2, "3": 3, "4": 4, "5": 5, "6": b"bytes", "7": "utf8", "8": 8,
         "9": b"0123456789abcdef"}, b""),
}
ERROR_EVENT_MESSAGE = (b"\x00\x00\x00\x52\x00\x00\x00\x42\xbf\x23\x63\x7e"
                       b"\x0d:message-type\x07\x00\x05error"
                       b"\x0b:error-code\x07\x00\x04code"
                       b"\x0e:error-message\x07\x00\x07message"
                       b"\x6b\x6c\xea\x3d")

# botocore's negative vectors: (bytes, what our FrameError says)
NEGATIVE = {
    "corrupted_length": (b"\x01\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'}\xc3e96", "prelude CRC mismatch"),
    "corrupted_payload": (b"\x00\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'\x8d\xc3e96", "message CRC mismatch"),
    "corrupted_headers": (
        b"\x00\x00\x00=\x00\x00\x00 \x07\xfd\x83\x96\x0ccontent+type\x07\x00\x10application/json{'foo':'bar'}\x8d\x9c\x08\xb1",
        "message CRC mismatch"),
    "corrupted_header_length": (
        b"\x00\x00\x00=\xff\x00\x01\x02\x07\xfd\x83\x96\x0ccontent-type\x07\x00\x10application/json{'foo':'bar'}\x8d\x9c\x08\xb1",
        "prelude CRC mismatch"),
    "duplicate_header": (b"\x00\x00\x00\x24\x00\x00\x00\x14\x4b\xb9\x82\xd0\x04test\x04asdf\x04test\x04asdf\xf3\xf4\x75\x63",
                         "header 'test' appears twice"),
    "invalid_headers_length": (
        b"\x00\x00\x00\x3d\xff\x00\x01\x02\x15\x83\xf5\xc2\x0ccontent-type\x07\x00\x10application/json{'foo':'bar'}\x2f\x37\x7f\x5d",
        "headers length 4278190338 is over 131072"),
    # the 24 MiB payload botocore refuses: its prelude alone is enough for a decoder with a smaller cap
    "invalid_payload_length": (b"\x01\x80\x00\x21\x00\x00\x00\x00\xdd\x3f\x33\xb1",
                               "is 25165857 bytes, longer than max_frame_bytes"),
}

# A real ConverseStream body (eu.anthropic.claude-sonnet-4-6, captured 2026-08-18):
# vercel/ai@21efb5e4:packages/amazon-bedrock/src/__fixtures__/issue-18994-live-converse-stream.json
BEDROCK_LIVE = base64.b64decode(
    "AAAAtAAAAFIFAEFlCzpldmVudC10eXBlBwAMbWVzc2FnZVN0YXJ0DTpjb250ZW50LXR5cGUHABBhcHBsaWNhdGlvbi9qc29uDTptZXNzYWdlLXR5cGUHAAVldmVudHsicCI6ImFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIiLCJyb2xlIjoiYXNzaXN0YW50In2fX38tAAAAswAAAFfHSmn6CzpldmVudC10eXBlBwARY29udGVudEJsb2NrRGVsdGENOmNvbnRlbnQtdHlwZQcAEGFwcGxpY2F0aW9uL2pzb24NOm1lc3NhZ2UtdHlwZQcABWV2ZW50eyJjb250ZW50QmxvY2tJbmRleCI6MCwiZGVsdGEiOnsidGV4dCI6Ik9LIn0sInAiOiJhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3gifXbBTlwAAAC+AAAAVz/arUsLOmV2ZW50LXR5cGUHABFjb250ZW50QmxvY2tEZWx0YQ06Y29udGVudC10eXBlBwAQYXBwbGljYXRpb24vanNvbg06bWVzc2FnZS10eXBlBwAFZXZlbnR7ImNvbnRlbnRCbG9ja0luZGV4IjowLCJkZWx0YSI6eyJ0ZXh0IjoiLiJ9LCJwIjoiYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXpBQkNERUZHSElKIn2GXR0lAAAAhgAAAFbZjG6aCzpldmVudC10eXBlBwAQY29udGVudEJsb2NrU3RvcA06Y29udGVudC10eXBlBwAQYXBwbGljYXRpb24vanNvbg06bWVzc2FnZS10eXBlBwAFZXZlbnR7ImNvbnRlbnRCbG9ja0luZGV4IjowLCJwIjoiYWIiffM4iiAAAADZAAAAUf2royMLOmV2ZW50LXR5cGUHAAttZXNzYWdlU3RvcA06Y29udGVudC10eXBlBwAQYXBwbGljYXRpb24vanNvbg06bWVzc2FnZS10eXBlBwAFZXZlbnR7ImFkZGl0aW9uYWxNb2RlbFJlc3BvbnNlRmllbGRzIjp7ImRlbHRhIjp7InN0b3Bfc2VxdWVuY2UiOm51bGx9fSwicCI6ImFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3Iiwic3RvcFJlYXNvbiI6ImVuZF90dXJuIn0g4kjQAAABAQAAAE4CeknrCzpldmVudC10eXBlBwAIbWV0YWRhdGENOmNvbnRlbnQtdHlwZQcAEGFwcGxpY2F0aW9uL2pzb24NOm1lc3NhZ2UtdHlwZQcABWV2ZW50eyJtZXRyaWNzIjp7ImxhdGVuY3lNcyI6ODAyfSwicCI6ImFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6QUJDREVGR0hJSktMTU5PUFFSUyIsInVzYWdlIjp7ImlucHV0VG9rZW5zIjoxMiwib3V0cHV0VG9rZW5zIjo1LCJzZXJ2ZXJUb29sVXNhZ2UiOnt9LCJ0b3RhbFRva2VucyI6MTd9fa0jZVA="
)
# A real in-stream exception: vercel/ai@5f264fa2:packages/amazon-bedrock/src/__fixtures__/model-stream-error-exception.eventstream.base64.txt
BEDROCK_EXCEPTION = base64.b64decode(
    "AAAA3QAAAGfHkZB6DTptZXNzYWdlLXR5cGUHAAlleGNlcHRpb24POmV4Y2VwdGlvbi10eXBlBwAZbW9kZWxTdHJlYW1FcnJvckV4Y2VwdGlvbg06Y29udGVudC10eXBlBwAQYXBwbGljYXRpb24vanNvbnsibWVzc2FnZSI6Ik1vZGVsIFN0cmVhbSBFcnJvciIsIm9yaWdpbmFsU3RhdHVzQ29kZSI6NTAwLCJvcmlnaW5hbE1lc3NhZ2UiOiJUaGUgbW9kZWwgc3RyZWFtIGZhaWxlZC4ifVczQxM="
)
# The tool-use event sequence of vercel/ai@1de59129:packages/amazon-bedrock/src/__fixtures__/bedrock-tool-call.1.chunks.txt
# (ids and values as the research note encoded them; botocore decodes all six)
BEDROCK_TOOL_EVENTS = [
    ("contentBlockStart", {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_abc123", "name": "get_weather"}}}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"city":'}}}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '"Tokyo"}'}}}),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    ("messageStop", {"stopReason": "tool_use"}),
    ("metadata", {"usage": {"inputTokens": 125, "outputTokens": 45, "totalTokens": 170}, "metrics": {"latencyMs": 234}}),
]
