"""llm-router: a declarative router for LLM and image-generation APIs."""

from .errors import (
    AllAttemptsFailed,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InvalidRequestError,
    MissingCredentialError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    RouterError,
    StreamInterrupted,
    UnknownModelError,
    UnsupportedParamError,
)
from .router import Router
from .types import Attempt, LLMResponse, StreamChunk, Usage

__version__ = "0.1.0"

__all__ = [
    "AllAttemptsFailed",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "InvalidRequestError",
    "LLMResponse",
    "MissingCredentialError",
    "ProviderError",
    "ProviderTimeout",
    "RateLimitError",
    "Router",
    "RouterError",
    "StreamChunk",
    "StreamInterrupted",
    "UnknownModelError",
    "UnsupportedParamError",
    "Usage",
]
