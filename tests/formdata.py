"""Read a multipart/form-data or form-urlencoded request as a server would (the standard
library's MIME parser), for mocks that check what the engine wrote."""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass
from urllib.parse import parse_qsl


@dataclass(frozen=True)
class Part:
    name: str
    value: str | None = None  # a text field
    filename: str | None = None  # a file part
    content_type: str | None = None
    data: bytes = b""


def multipart(headers, body: bytes) -> list[Part]:
    """The parts in order; raises AssertionError if the body is not well-formed multipart/form-data."""
    content_type = headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary="), content_type
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    assert message.is_multipart() and not message.defects, message.defects
    boundary = content_type.split("boundary=", 1)[1]
    assert body.endswith(f"--{boundary}--\r\n".encode()), "the body must end with the closing boundary"
    parts = []
    for part in message.iter_parts():
        assert part.get_content_disposition() == "form-data"
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        filename = part.get_filename()
        if filename is None:
            parts.append(Part(name, data.decode("utf-8")))
        else:
            parts.append(Part(name, filename=filename, content_type=part.get_content_type(), data=data))
    return parts


def fields(headers, body: bytes) -> dict[str, object]:
    """Text fields by name (a repeated name: a list), files as Parts."""
    out: dict[str, object] = {}
    for part in multipart(headers, body):
        value = part if part.filename is not None else part.value
        if part.name in out:
            before = out[part.name]
            out[part.name] = [*before, value] if isinstance(before, list) else [before, value]
        else:
            out[part.name] = value
    return out


def form(headers, body: bytes) -> list[tuple[str, str]]:
    assert headers["content-type"].startswith("application/x-www-form-urlencoded"), headers["content-type"]
    return parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
