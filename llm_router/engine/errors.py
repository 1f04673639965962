"""Map an HTTP error reply to the error hierarchy: the engine's table, then the provider's rules."""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping
from typing import Any

from ..config.model import ErrorPolicy
from ..errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilterError,
    ContextLengthError,
    NotFoundError,
    OverloadedError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from ..paths import JSONPath

KIND_CLASSES: dict[str, type[ProviderError]] = {
    "authentication": AuthenticationError,
    "invalid_request": BadRequestError,
    "not_found": NotFoundError,
    "context_length": ContextLengthError,
    "content_filter": ContentFilterError,
    "rate_limited": RateLimitError,
    "overloaded": OverloadedError,
    "server_error": ServerError,
}
RETRYABLE_KINDS = frozenset({"rate_limited", "overloaded", "server_error"})
_DEFAULT_MESSAGE_PATHS = tuple(JSONPath(p) for p in ("$.error.message", "$.message", "$.detail", "$.error"))
EXCERPT_CHARS = 500


def default_kind(status: int) -> str:
    if status in (401, 403):
        return "authentication"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status in (408, 409) or status >= 500:
        return "server_error"
    return "invalid_request"


def parse_body(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
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
        code=None if code is None else str(code),
        retry_after_s=retry_after_s(headers, policy.retry.retry_after),
    )
