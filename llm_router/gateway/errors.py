"""Errors as OpenAI's envelope, `{"error": {"message", "type", "param", "code"}}`, with the HTTP status
the openai SDKs turn into their exception classes. An upstream authentication failure says only that
the gateway's credentials were refused: the provider's own text (which may quote part of a key) is
logged, never sent."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import (
    AllAttemptsFailed,
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ContentFilterError,
    ContextLengthError,
    InvalidRequestError,
    MissingCredentialError,
    NotFoundError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    RouterError,
    UnknownModelError,
    UnsupportedCapabilityError,
    UnsupportedParamError,
)
from ..state import StateUnavailableError

log = logging.getLogger("llm_router.gateway")


class ApiError(Exception):
    """An error the gateway answers with; `retry_after_s` becomes Retry-After (and retry-after-ms)."""

    def __init__(self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None,
                 retry_after_s: float | None = None, extra_headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s
        self.extra_headers = extra_headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return self.extra_headers
        seconds = max(self.retry_after_s, 0.0)
        return {**self.extra_headers, "retry-after": str(max(1, math.ceil(seconds))),
                "retry-after-ms": str(math.ceil(seconds * 1000))}


def seconds_left_in(period: str) -> float:
    """Seconds until the current UTC day or month ends (when a budget of that period starts afresh)."""
    now = datetime.now(UTC)
    if period == "day":
        end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    else:
        end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return (end - now).total_seconds()


def budget_error(message: str, period: str) -> ApiError:
    return ApiError(429, message, "insufficient_quota", "budget_exceeded", retry_after_s=seconds_left_in(period))


def from_router_error(exc: RouterError) -> ApiError:
    """The answer for an error the router raised."""
    if isinstance(exc, UnknownModelError):
        return ApiError(404, f"the model {exc.name!r} does not exist", "invalid_request_error", "model_not_found", "model")
    if isinstance(exc, UnsupportedParamError):
        return ApiError(400, str(exc), "invalid_request_error", "unsupported_parameter", exc.params[0] if exc.params else None)
    if isinstance(exc, UnsupportedCapabilityError):
        return ApiError(400, str(exc), "invalid_request_error", "unsupported_capability")
    if isinstance(exc, InvalidRequestError):
        return ApiError(400, str(exc), "invalid_request_error", "invalid_request")
    if isinstance(exc, BudgetExceeded):
        return budget_error(exc.message, exc.period)
    if isinstance(exc, StateUnavailableError):
        log.error("shared state unavailable: %s", exc)
        return ApiError(503, "the gateway's shared state is unavailable; retry shortly", "server_error", "state_unavailable",
                        retry_after_s=1.0)
    if isinstance(exc, AllAttemptsFailed):
        return _all_failed(exc)
    if isinstance(exc, ProviderError):
        return _provider_error(exc)
    log.error("unexpected router error: %r", exc)
    return ApiError(500, "the gateway failed to handle the request", "server_error", "internal_error")


def _provider_error(exc: ProviderError) -> ApiError:
    if isinstance(exc, MissingCredentialError | AuthenticationError):
        log.error("upstream credentials refused or missing: %s", exc)
        what = "has no credentials for" if isinstance(exc, MissingCredentialError) else "had its credentials refused by"
        return ApiError(502, f"the gateway {what} provider {exc.provider!r} (model {exc.model!r}); "
                        "its operator must fix the provider key", "upstream_error", "upstream_authentication")
    if isinstance(exc, RateLimitError):
        return ApiError(429, str(exc), "rate_limit_error", "rate_limit_exceeded",
                        retry_after_s=exc.retry_after_s if exc.retry_after_s is not None else 1.0)
    if isinstance(exc, ProviderTimeout):
        return ApiError(504, str(exc), "timeout_error", "upstream_timeout")
    if isinstance(exc, ContextLengthError):
        return ApiError(400, str(exc), "invalid_request_error", "context_length_exceeded", "messages")
    if isinstance(exc, ContentFilterError):
        return ApiError(400, str(exc), "invalid_request_error", "content_filter")
    if isinstance(exc, NotFoundError):
        return ApiError(404, str(exc), "invalid_request_error", "upstream_not_found")
    if isinstance(exc, BadRequestError):
        return ApiError(400, str(exc), "invalid_request_error", "upstream_bad_request")
    return ApiError(502, str(exc), "upstream_error", exc.kind)


def _all_failed(exc: AllAttemptsFailed) -> ApiError:
    """Every model of the chain failed: 429 when all were rate limits, 504 when all timed out, else 502."""
    if exc.errors and all(isinstance(e, RateLimitError) for e in exc.errors):
        waits = [e.retry_after_s for e in exc.errors if isinstance(e, RateLimitError) and e.retry_after_s is not None]
        retry = min(waits) if waits else 1.0
        return ApiError(429, _attempts_text(exc), "rate_limit_error", "rate_limit_exceeded", retry_after_s=retry)
    if exc.errors and all(isinstance(e, ProviderTimeout) for e in exc.errors):
        return ApiError(504, _attempts_text(exc), "timeout_error", "upstream_timeout")
    return ApiError(502, _attempts_text(exc), "upstream_error", "all_attempts_failed")


def _attempts_text(exc: AllAttemptsFailed) -> str:
    parts = []
    for attempt, error in zip(exc.attempts, exc.errors, strict=False):
        if isinstance(error, MissingCredentialError | AuthenticationError):
            log.error("upstream credentials refused or missing: %s", error)
            detail = "the gateway's credentials were refused"
        else:
            detail = attempt.error or attempt.error_kind or "failed"
        parts.append(f"{attempt.model} via {attempt.provider}: {detail}")
    return "every attempt failed: " + "; ".join(parts)
