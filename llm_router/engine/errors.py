"""Map an HTTP error reply to the error hierarchy: the engine's table, then the provider's rules."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..config.model import ErrorPolicy
from ..errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilterError,
    ContextLengthError,
    ErrorKind,
    NotFoundError,
    OverloadedError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from ..paths import JSONPath

_K = ErrorKind
# The kinds an error reply may be classified as (the provider schema's `error_kind`), and their classes.
KIND_CLASSES: dict[str, type[ProviderError]] = {
    _K.AUTHENTICATION: AuthenticationError,
    _K.INVALID_REQUEST: BadRequestError,
    _K.NOT_FOUND: NotFoundError,
    _K.CONTEXT_LENGTH: ContextLengthError,
    _K.CONTENT_FILTER: ContentFilterError,
    _K.RATE_LIMITED: RateLimitError,
    _K.OVERLOADED: OverloadedError,
    _K.SERVER_ERROR: ServerError,
}
# Retried on the same deployment. Not `invalid_reply`: that request was served (and maybe billed).
RETRYABLE_KINDS = frozenset({_K.RATE_LIMITED, _K.OVERLOADED, _K.SERVER_ERROR, _K.TIMEOUT, _K.CONNECTION})
_DEFAULT_MESSAGE_PATHS = tuple(JSONPath(p) for p in ("$.error.message", "$.message", "$.detail", "$.error"))
EXCERPT_CHARS = 500


def default_kind(status: int) -> ErrorKind:
    if status in (401, 403):
        return _K.AUTHENTICATION
    if status == 404:
        return _K.NOT_FOUND
    if status == 429:
        return _K.RATE_LIMITED
    if status in (408, 409) or status >= 500:
        return _K.SERVER_ERROR
    return _K.INVALID_REQUEST


# Deeper than any real reply, and far enough under the interpreter's recursion limit (1000) that code
# walking an accepted reply recursively (repr, json.dumps) cannot hit it.
MAX_JSON_DEPTH = 512
_DECODER = json.JSONDecoder()
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]  # set in __init__


class NotJSON(ValueError):
    """A body that is not JSON this engine accepts; the message says why."""


def decode_json(content: bytes | str) -> Any:
    """JSON in UTF-8 nested at most MAX_JSON_DEPTH deep, or NotJSON. (`NaN` and `Infinity` are read
    as Python reads them: where a count should be, extraction ignores them.)"""
    try:
        text = content.decode() if isinstance(content, bytes) else content  # UTF-8, as RFC 8259 says
        if text[:1] == "\ufeff":  # a BOM, tolerated
            text = text[1:]
        try:  # the scanner itself: a stream decodes hundreds of small events, and decode() is Python around it
            data, end = _SCAN(text, 0)
        except StopIteration:  # leading whitespace, or nothing that starts a value
            data, end = _DECODER.decode(text), len(text)
        if end != len(text) and text[end:].strip(" \t\n\r"):
            raise NotJSON("not valid JSON (more after the value)")
    except RecursionError:
        raise NotJSON(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, NotJSON):
            raise
        raise NotJSON("not valid JSON") from None
    if len(content) > MAX_JSON_DEPTH:  # shorter, it cannot open more than MAX_JSON_DEPTH values
        openers = content.count(b"[") + content.count(b"{") if isinstance(content, bytes) else content.count("[") + content.count("{")
        if openers > MAX_JSON_DEPTH and _deeper_than(data, MAX_JSON_DEPTH):  # a cheap count first: most replies stop there
            raise NotJSON(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def _deeper_than(data: Any, limit: int) -> bool:
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def parse_body(content: bytes) -> Any:
    """The body as JSON, or None when it is not JSON this engine accepts (an error reply's text is kept as text)."""
    try:
        return decode_json(content)
    except NotJSON:
        return None


def excerpt(content: bytes) -> str:
    text = content[: EXCERPT_CHARS * 4].decode("utf-8", "replace")
    if "<html" in text.lower() or "<!doctype" in text.lower():
        text = re.sub(r"<[^>]+>", " ", text)
    text = " ".join(text.split())
    return text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")


def message_of(policy: ErrorPolicy, data: Any, content: bytes) -> str:
    paths = (policy.message,) if policy.message is not None else _DEFAULT_MESSAGE_PATHS
    for path in paths:
        value = path.first(data) if data is not None else None
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and value:  # FastAPI-style detail lists
            return "; ".join(str(v.get("msg", v)) if isinstance(v, dict) else str(v) for v in value)
    return excerpt(content) or "(empty body)"


def classify(policy: ErrorPolicy, status: int, data: Any) -> str:
    for rule in policy.classify:
        if status in rule.status and (rule.when is None or rule.when.path.first(data) in rule.when.in_):
            return rule.kind
    return default_kind(status)


def retry_after_s(headers: Mapping[str, str], names: tuple[str, ...]) -> float | None:
    for name in names:
        value = headers.get(name)
        if not value:
            continue
        try:
            seconds = float(value)
            return max(0.0, seconds / 1000 if name == "retry-after-ms" else seconds)
        except ValueError:
            pass
        try:
            import email.utils  # here: an HTTP-date Retry-After is rare, and the email package costs ~7 ms to import

            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return max(0.0, when.timestamp() - time.time())
    return None


def error_from_reply(
    policy: ErrorPolicy, status: int, headers: Mapping[str, str], content: bytes, provider: str, model: str, redact: Any
) -> ProviderError:
    data = parse_body(content)
    kind = classify(policy, status, data)
    code = policy.code.first(data) if policy.code is not None and data is not None else None
    return KIND_CLASSES[kind](
        redact(message_of(policy, data, content)),
        provider=provider,
        model=model,
        status=status,
        body_excerpt=redact(excerpt(content)),
        code=None if code is None else redact(str(code)),
        retry_after_s=retry_after_s(headers, policy.retry.retry_after),
    )
