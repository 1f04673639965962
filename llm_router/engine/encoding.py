"""Request bodies that are not JSON: multipart/form-data and application/x-www-form-urlencoded.

The rendered body's top-level keys are the fields. A string or number is a text field; true and
false are "true" and "false"; a list is one field per item (named `name` or `name[]`, as the
operation's `arrays` says); an object is its JSON text; a file (`FileInput`) is a file part with
its file name and media type. The engine writes the multipart boundary and the content type; a
content type the provider declares must name the same encoding.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

from ..config.model import Operation
from ..errors import InvalidRequestError
from ..files import FileInput
from ..wire import CONTENT_TYPES

_QUOTED = {'"': "%22", "\r": "%0D", "\n": "%0A"}  # how browsers escape a field or file name (WHATWG)


def check_files(operation: Operation, values: Mapping[str, Any], where: str) -> None:
    """Every file a call sends here is within the operation's `max_file_bytes`."""
    for name, value in values.items():
        size = value.size if isinstance(value, FileInput) else None
        if size is not None and size > operation.max_file_bytes:
            raise InvalidRequestError(f"{where}: {name} holds {size} bytes; this operation takes files of at most "
                                      f"{operation.max_file_bytes} bytes (`max_file_bytes`)")


def encode(operation: Operation, body: Any, headers: dict[str, str], where: str) -> bytes:
    """The body in the operation's (non-JSON) encoding; sets the content-type header."""
    if not isinstance(body, dict):
        raise InvalidRequestError(f"{where}: a {operation.encoding} body must be an object of fields, "
                                  f"the template gave {type(body).__name__}")
    declared = next((name for name in headers if name.lower() == "content-type"), None)
    pattern, expected, _ = CONTENT_TYPES[operation.encoding]
    if declared is not None:
        value = headers.pop(declared)
        if not pattern.fullmatch(value):
            raise InvalidRequestError(f"{where}: the content-type header {value!r} does not match the operation's "
                                      f"encoding ({expected})")
        if operation.encoding == "form":
            headers[declared] = value  # a declared charset is kept; a multipart boundary is always the engine's
    fields = list(_fields(body, operation.arrays, where))
    if operation.encoding == "form":
        files = [name for name, value in fields if isinstance(value, FileInput)]
        if files:
            raise InvalidRequestError(f"{where}: {files[0]} is a file, and a form body cannot carry files "
                                      "(use encoding: multipart)")
        headers.setdefault("content-type", expected)
        return urlencode(fields).encode("ascii")
    boundary, content = _multipart(fields)
    headers["content-type"] = f"{expected}; boundary={boundary}"
    return content


def shown(body: Any) -> Any:
    """The body as `render` shows it: each file as its name, media type and size."""
    if isinstance(body, FileInput):
        return {"file": body.filename, "media_type": body.media_type, "bytes": body.size, "url": body.url}
    if isinstance(body, dict):
        return {k: shown(v) for k, v in body.items()}
    if isinstance(body, list):
        return [shown(v) for v in body]
    return body


def _fields(body: Mapping[str, Any], arrays: str, where: str) -> Iterator[tuple[str, str | FileInput]]:
    for key, value in body.items():
        if isinstance(value, list):
            name = f"{key}[]" if arrays == "brackets" else key
            for item in value:
                yield name, _field_value(item, f"{where}: {key}")
        else:
            yield key, _field_value(value, f"{where}: {key}")


def _field_value(value: Any, where: str) -> str | FileInput:
    if isinstance(value, (str, FileInput)):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, dict, list)) or value is None:
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidRequestError(f"{where} is not JSON data: {exc}") from None
    raise InvalidRequestError(f"{where} is a {type(value).__name__}; a field is text, a number, true/false, "
                              "a list, an object or a file")


def _quoted(name: str) -> str:
    return re.sub(r'["\r\n]', lambda m: _QUOTED[m.group()], name)


def _multipart(fields: list[tuple[str, str | FileInput]]) -> tuple[str, bytes]:
    parts = []
    for name, value in fields:
        if isinstance(value, FileInput):
            data = value.require_bytes()
            head = (f'Content-Disposition: form-data; name="{_quoted(name)}"; filename="{_quoted(value.filename)}"\r\n'
                    f"Content-Type: {_quoted(value.media_type)}\r\n\r\n")
        else:
            data = value.encode("utf-8")
            head = f'Content-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'
        parts.append((head.encode("utf-8"), data))
    while True:  # a boundary that occurs in no part (128 random bits: the first one always does)
        boundary = f"llm-router-{secrets.token_hex(16)}"
        marker = boundary.encode("ascii")
        if not any(marker in data for _, data in parts):
            break
    out = bytearray()
    for part_head, part_data in parts:
        out += b"--" + marker + b"\r\n" + part_head + part_data + b"\r\n"
    out += b"--" + marker + b"--\r\n"
    return boundary, bytes(out)
