"""The error hierarchy every public call raises, and the one enumeration of error kinds. Every
message says what went wrong, where, and how to fix it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from .types import Attempt


class ErrorKind(StrEnum):
    """What went wrong, as one word: every error's `kind`, an `Attempt.error_kind`, what a provider's
    `errors.classify` rules name and what router.yaml's `fallback_on` lists. A member is its string
    (`ErrorKind.TIMEOUT == "timeout"`)."""

    # the provider's answer, or its absence
    AUTHENTICATION = "authentication"  # 401/403
    INVALID_REQUEST = "invalid_request"  # 400/422 from the provider, or a call refused before sending
    NOT_FOUND = "not_found"
    CONTEXT_LENGTH = "context_length"
    CONTENT_FILTER = "content_filter"
    RATE_LIMITED = "rate_limited"  # 429, or a local rpm/tpm limit, or every deployment cooling down
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    MISSING_CREDENTIAL = "missing_credential"
    INVALID_REPLY = "invalid_reply"  # a 2xx reply the operation cannot use
    PROVIDER_ERROR = "provider_error"  # any other provider failure
    STREAM_INTERRUPTED = "stream_interrupted"  # after chunks were delivered
    # the router's own
    ROUTER_ERROR = "router_error"
    CONFIGURATION = "configuration"
    UNKNOWN_MODEL = "unknown_model"
    UNSUPPORTED_PARAM = "unsupported_param"
    UNSUPPORTED_CAPABILITY = "unsupported_capability"
    BUDGET_EXCEEDED = "budget_exceeded"
    STATE_UNAVAILABLE = "state_unavailable"
    ALL_ATTEMPTS_FAILED = "all_attempts_failed"
    CLOSED = "closed"  # the router was closed
    CANCELLED = "cancelled"  # an attempt's record only: the caller cancelled the call or stopped reading its stream


_K = ErrorKind
# what router.yaml's `fallback_on` may list: a provider's failures that a stream has not yet delivered part of
FALLBACK_KINDS = frozenset({
    _K.RATE_LIMITED, _K.OVERLOADED, _K.SERVER_ERROR, _K.TIMEOUT, _K.CONNECTION, _K.AUTHENTICATION, _K.INVALID_REQUEST,
    _K.NOT_FOUND, _K.CONTEXT_LENGTH, _K.CONTENT_FILTER, _K.MISSING_CREDENTIAL, _K.INVALID_REPLY, _K.PROVIDER_ERROR,
})
# `fallback_on` when router.yaml does not say: the failures another model may not share
DEFAULT_FALLBACK_ON = frozenset({
    _K.RATE_LIMITED, _K.OVERLOADED, _K.SERVER_ERROR, _K.TIMEOUT, _K.CONNECTION, _K.INVALID_REPLY, _K.PROVIDER_ERROR,
})
# failures that say the deployment is in trouble (not the caller): they count towards a cooldown
COOLDOWN_KINDS = frozenset({_K.RATE_LIMITED, _K.OVERLOADED, _K.SERVER_ERROR, _K.TIMEOUT, _K.CONNECTION, _K.INVALID_REPLY})


class RouterError(Exception):
    """Base of every error the router raises; `kind` says what went wrong in one word (`ErrorKind`).

    An error raised by `Router.query`/`stream` after it tried at least one model carries
    `attempts`: every model tried, in order (see `Attempt`).
    """

    kind: ClassVar[ErrorKind] = ErrorKind.ROUTER_ERROR
    attempts: Sequence[Attempt] = ()


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about the config: where it is and what is wrong."""

    file: str
    line: int | None
    message: str
    severity: str = "error"  # "error" | "warning"
    key: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        label = "" if self.severity == "error" else "warning: "
        return f"{where}: {label}{self.message}"


class ConfigurationError(RouterError):
    """The config is invalid; `problems` lists every finding with its file and line."""

    kind = ErrorKind.CONFIGURATION

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"] or self.problems
        head = f"{len(errors)} problem(s) in the config:" if len(errors) > 1 else "invalid config:"
        super().__init__("\n".join([head, *(f"  {p}" for p in errors)]))

    @property
    def file(self) -> str | None:
        return self.problems[0].file if self.problems else None

    @property
    def line(self) -> int | None:
        return self.problems[0].line if self.problems else None


class UnknownModelError(RouterError, KeyError):
    kind = ErrorKind.UNKNOWN_MODEL

    def __init__(self, name: str, close_matches: Sequence[str]) -> None:
        self.name = name
        self.close_matches = list(close_matches)
        hint = f"; did you mean {', '.join(repr(m) for m in close_matches)}?" if close_matches else ""
        super().__init__(
            f"unknown model {name!r}{hint} (or use 'provider/upstream-name' to reach an "
            "unregistered model through a registered provider)"
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnsupportedParamError(RouterError, ValueError):
    kind = ErrorKind.UNSUPPORTED_PARAM

    def __init__(self, model: str, params: Sequence[str], allowed: Sequence[str]) -> None:
        self.model = model
        self.params = list(params)
        self.allowed = list(allowed)
        allowed_text = ", ".join(sorted(allowed)) or "none"
        super().__init__(
            f"model {model!r} does not accept param(s) {', '.join(sorted(params))}; "
            f"allowed: {allowed_text}. Add them to the model's `params` list or set "
            "`on_unsupported_param: drop`."
        )


class InvalidRequestError(RouterError, ValueError):
    """The call itself is malformed (messages, prompt or param types); nothing was sent."""

    kind = ErrorKind.INVALID_REQUEST


class UnsupportedCapabilityError(InvalidRequestError):
    """The model does not declare a capability the call needs (tools, vision, structured_output);
    the router skipped it without sending anything."""

    kind = ErrorKind.UNSUPPORTED_CAPABILITY

    def __init__(self, model: str, missing: Sequence[str], declared: Sequence[str]) -> None:
        self.model = model
        self.missing = tuple(missing)
        super().__init__(
            f"model {model!r} does not declare {', '.join(self.missing)} in its capabilities "
            f"(it declares: {', '.join(declared) or 'none'}); the call needs {' and '.join(self.missing)}"
        )


class ProviderError(RouterError):
    """The provider answered with an error, or its answer could not be used."""

    kind = ErrorKind.PROVIDER_ERROR

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model: str,
        status: int | None = None,
        body_excerpt: str = "",
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.message = message
        self.provider = provider
        self.model = model
        self.status = status
        self.body_excerpt = body_excerpt
        self.code = code
        self.retry_after_s = retry_after_s
        self.tries = 1
        super().__init__(self._text())

    def _text(self) -> str:
        status_text = f" HTTP {self.status}" if self.status else ""
        return f"{self.provider} ({self.model}){status_text}: {self.message}"

    def add_note_to_message(self, note: str) -> None:
        """Append to the message (and so to str(error)) while keeping the error's class and fields."""
        self.message += note
        self.args = (self._text(),)


class AuthenticationError(ProviderError):
    kind = ErrorKind.AUTHENTICATION


class BadRequestError(ProviderError):
    kind = ErrorKind.INVALID_REQUEST


class ContextLengthError(BadRequestError):
    kind = ErrorKind.CONTEXT_LENGTH


class ContentFilterError(BadRequestError):
    kind = ErrorKind.CONTENT_FILTER


class NotFoundError(BadRequestError):
    kind = ErrorKind.NOT_FOUND


class ServerError(ProviderError):
    kind = ErrorKind.SERVER_ERROR


class OverloadedError(ServerError):
    kind = ErrorKind.OVERLOADED


class RateLimitError(ProviderError):
    """The provider (or a local limit) refused the call for now; `retry_after_s` says when to retry."""

    kind = ErrorKind.RATE_LIMITED


class DeploymentsCoolingDown(RateLimitError):
    """Every deployment of the model is cooling down after repeated failures; `retry_after_s`
    says when the earliest one may be tried again."""


class ProviderTimeout(ProviderError, TimeoutError):
    kind = ErrorKind.TIMEOUT


class ProviderConnectionError(ProviderError, ConnectionError):
    kind = ErrorKind.CONNECTION


class MissingCredentialError(ProviderError):
    kind = ErrorKind.MISSING_CREDENTIAL


class InvalidReplyError(ProviderError):
    """The provider answered 2xx but the reply is not what the operation expects (not JSON, too
    deep, nothing at the declared path). The request was served and may be billed, so it is not
    retried on the same deployment; the router may still fall back."""

    kind = ErrorKind.INVALID_REPLY


class StreamInterrupted(ProviderError):
    """A stream failed after chunks were delivered (the message says how much arrived); never
    falls back, since the caller already holds part of an answer."""

    kind = ErrorKind.STREAM_INTERRUPTED


class RouterClosedError(RouterError):
    """The router was closed (`aclose()`): a call after it is refused, and calls still in flight end with this."""

    kind = ErrorKind.CLOSED


class BudgetExceeded(RouterError):
    """A spend budget (router.yaml `budgets:`) is used up for its period; nothing was sent."""

    kind = ErrorKind.BUDGET_EXCEEDED

    def __init__(self, scope: str, name: str | None, period: str, period_id: str, limit_usd: float, spent_usd: float,
                 on_exceed: str = "raise") -> None:
        self.scope = scope
        self.name = name
        self.period = period
        self.period_id = period_id
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.on_exceed = on_exceed
        what = "the router's budget" if scope == "router" else f"the budget of {scope} {name!r}"
        self.message = (f"{what} for {period_id} (UTC {period}) is used up: ${spent_usd:.4f} spent of ${limit_usd:g}; "
                        "raise `limit_usd` in router.yaml or wait for the next period")
        super().__init__(self.message)


class StateUnavailableError(RouterError):
    """The shared state store (Redis) failed and its policy is `on_error: fail`: the call is refused."""

    kind = ErrorKind.STATE_UNAVAILABLE


class AllAttemptsFailed(RouterError):
    """Every model in the chain failed. `attempts` holds each one (model, provider, status, the
    error message); `errors` the error each raised, in the same order."""

    kind = ErrorKind.ALL_ATTEMPTS_FAILED

    def __init__(self, attempts: Sequence[Attempt], errors: Sequence[RouterError]) -> None:
        self.attempts = list(attempts)
        self.errors = list(errors)
        lines = [
            f"  {a.model} via {a.deployment or a.provider}: {'HTTP ' + str(a.status) + ' ' if a.status else ''}{a.error}"
            for a in self.attempts
        ]
        super().__init__("every attempt failed:\n" + "\n".join(lines))
