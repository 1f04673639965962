"""llm-router: a declarative router for LLM and image-generation APIs."""

from .errors import (
    AllAttemptsFailed,
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ConfigurationError,
    ContentFilterError,
    ContextLengthError,
    DeploymentsCoolingDown,
    InvalidRequestError,
    MissingCredentialError,
    NotFoundError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    RouterError,
    ServerError,
    StreamInterrupted,
    UnknownModelError,
    UnsupportedCapabilityError,
    UnsupportedParamError,
)
from .router import Router
from .state import StateUnavailableError
from .types import Attempt, LLMResponse, StreamChunk, ToolCall, ToolCallDelta, Usage

__version__ = "0.1.0"

__all__ = [
    "AllAttemptsFailed",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceeded",
    "ConfigurationError",
    "ContentFilterError",
    "ContextLengthError",
    "DeploymentsCoolingDown",
    "InvalidRequestError",
    "LLMResponse",
    "MissingCredentialError",
    "NotFoundError",
    "OverloadedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "RateLimitError",
    "Router",
    "RouterError",
    "ServerError",
    "StateUnavailableError",
    "StreamChunk",
    "StreamInterrupted",
    "ToolCall",
    "ToolCallDelta",
    "UnknownModelError",
    "UnsupportedCapabilityError",
    "UnsupportedParamError",
    "Usage",
]
