"""What a reply holds besides chat text: vectors (embed), a ranking (rerank), text or a URL or
base64 data (image, speech, transcribe, video), a binary body, and values from reply headers.

Each reader checks what the operation promises its caller (one vector per input, every ranked
index within the documents, base64 that decodes to float32 values) and raises `ReplyShapeError`
saying what is wrong; the engine turns it into an InvalidReplyError naming the provider.
"""

from __future__ import annotations

import array
import base64
import binascii
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config.model import Extraction, Operation, RankingPaths, VectorPaths
from ..types import Usage
from .extract import text_or_none, usage_of
from .reply import Turn, extras_of, joined, normalise

DECODED = ("speech", "video")  # kinds whose base64 content is returned as bytes (images keep the text)


class ReplyShapeError(ValueError):
    """A 2xx reply that does not hold what the operation declares."""


@dataclass(slots=True)
class Result:
    """One kind's result read from a reply (the engine's EngineResult is built from it)."""

    content: Any
    content_kind: str
    finish_reason: str | None
    usage: Usage
    id: str | None
    native_finish_reason: str | None = None
    media_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def read_json(operation: Operation, spec: Extraction, data: Any, headers: Mapping[str, str], count: int) -> Result:
    """The result of a JSON reply for any kind but chat. `count`: the inputs an embed call sent,
    the documents a rerank call sent."""
    if spec.vectors is not None:
        content: Any = vectors_of(spec.vectors, data, count)
        kind = "vectors"
    elif spec.ranking is not None:
        content, kind = ranking_of(spec.ranking, data, count), "ranking"
    else:
        assert spec.content is not None
        kind = spec.content_kind
        content = joined(spec.content, data) if kind == "text" else spec.content.first(data)
        if content is None or (content == "" and kind != "text"):  # an empty transcript is one (silence)
            raise ReplyShapeError(f"the reply has nothing at {spec.content.expr}")
        if kind != "text" and not isinstance(content, str):
            raise ReplyShapeError(f"the reply's {spec.content.expr} is a {type(content).__name__}, not a {kind} string")
        if kind == "base64" and operation.kind in DECODED:
            content, kind = _decoded(content, spec.content.expr), "bytes"
    native = _header(spec, headers, "finish_reason") or text_or_none(spec.finish_reason, data)
    return Result(
        content, kind, operation.finish_reasons.get(native, native) if native is not None else None, usage_of(spec.usage, data),
        _header(spec, headers, "id") or text_or_none(spec.id, data), native,
        extra={**extras_of(spec.extra, data), **header_extras(spec, headers)},
    )


def read_binary(operation: Operation, spec: Extraction, body: bytes, headers: Mapping[str, str]) -> Result:
    """The result of a reply whose body is the result (audio, an image, a video)."""
    media_type = (headers.get("content-type") or "").split(";", 1)[0].strip().lower() or None
    if media_type is not None and (media_type == "application/json" or media_type.endswith("+json")):
        raise ReplyShapeError(f"the reply is JSON ({media_type}), and the operation expects a binary body "
                              "(check the request's accept header, or declare `content` instead of `binary`)")
    if not body:
        raise ReplyShapeError("the reply body is empty")
    native = _header(spec, headers, "finish_reason")
    return Result(body, "bytes", operation.finish_reasons.get(native, native) if native is not None else None, Usage(),
                  _header(spec, headers, "id"), native, media_type, header_extras(spec, headers))


def _decoded(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ReplyShapeError(f"the reply's {where} is not valid base64") from None


def _header(spec: Extraction, headers: Mapping[str, str], name: str) -> str | None:
    header = spec.headers.get(name)
    return headers.get(header) if header is not None else None


def turn_headers(turn: Turn, operation: Operation, spec: Extraction, headers: Mapping[str, str]) -> str | None:
    """A chat turn's values read from reply headers (finish reason, extras); the reply id, if one is read there."""
    native = _header(spec, headers, "finish_reason")
    if native is not None:
        turn.native_finish_reason = native
        turn.finish_reason = normalise(operation, native, bool(turn.tool_calls))
    turn.extra.update(header_extras(spec, headers))
    return _header(spec, headers, "id")


def header_extras(spec: Extraction, headers: Mapping[str, str]) -> dict[str, Any]:
    """The `extra` values config reads from reply headers."""
    found = {}
    for name, header in spec.headers.items():
        if name.startswith("extra.") and header in headers:
            found[name[6:]] = headers[header]
    return found


def vectors_of(spec: VectorPaths, data: Any, count: int) -> list[list[float]]:
    """One vector per input, in the order of the inputs, all of one length."""
    items = spec.items.all(data)
    if len(items) != count:
        raise ReplyShapeError(f"the reply has {len(items)} vector(s) at {spec.items.expr} for {count} input(s)")
    vectors: list[list[float] | None] = [None] * count
    for position, item in enumerate(items):
        index = spec.index.first(item) if spec.index is not None else position
        if type(index) is not int or not 0 <= index < count or vectors[index] is not None:
            raise ReplyShapeError(f"vector {position} has index {index!r}: not one of 0..{count - 1}, or given twice")
        vectors[index] = _vector(spec.vector.first(item), spec, position)
    found = [v for v in vectors if v is not None]
    if len({len(v) for v in found}) > 1:
        raise ReplyShapeError(f"the vectors differ in length ({', '.join(str(len(v)) for v in found)})")
    return found


def _vector(value: Any, spec: VectorPaths, position: int) -> list[float]:
    where = f"vector {position} ({spec.vector.expr})"
    if spec.encoding == "base64_f32le":
        if not isinstance(value, str):
            raise ReplyShapeError(f"{where} is a {type(value).__name__}, not base64 text (encoding: base64_f32le)")
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ReplyShapeError(f"{where} is not valid base64") from None
        if len(raw) % 4:
            raise ReplyShapeError(f"{where} decodes to {len(raw)} bytes, not a whole number of float32 values")
        floats = array.array("f", raw)
        if sys.byteorder == "big":
            floats.byteswap()
        numbers = floats.tolist()
    else:
        if not isinstance(value, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in value):
            raise ReplyShapeError(f"{where} is not a list of numbers (encoding: float)")
        numbers = [float(x) for x in value]
    if not numbers:
        raise ReplyShapeError(f"{where} is empty")
    if not all(math.isfinite(x) for x in numbers):
        raise ReplyShapeError(f"{where} holds NaN or infinity")
    return numbers


def ranking_of(spec: RankingPaths, data: Any, count: int) -> list[tuple[int, float]]:
    """(index into the documents, score) per ranked document, in the reply's order."""
    items = spec.items.all(data)
    if not items:
        raise ReplyShapeError(f"the reply has no ranked documents at {spec.items.expr}")
    ranking: list[tuple[int, float]] = []
    seen: set[int] = set()
    for position, item in enumerate(items):
        index, score = spec.index.first(item), spec.score.first(item)
        if type(index) is not int or not 0 <= index < count or index in seen:
            raise ReplyShapeError(f"ranked document {position} has index {index!r}: not one of the {count} document(s) "
                                  "sent, or given twice")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ReplyShapeError(f"ranked document {position} has score {score!r} at {spec.score.expr}, not a number")
        seen.add(index)
        ranking.append((index, float(score)))
    return ranking
