"""llm-router: a declarative router for LLM and image-generation APIs."""

from typing import TYPE_CHECKING, Any

from ._resources import catalog_dir
from .errors import (
    AllAttemptsFailed,
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ConfigurationError,
    ContentFilterError,
    ContextLengthError,
    DeploymentsCoolingDown,
    ErrorKind,
    InvalidReplyError,
    InvalidRequestError,
    MissingCredentialError,
    NotFoundError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    RouterClosedError,
    RouterError,
    ServerError,
    StreamInterrupted,
    UnknownModelError,
    UnsupportedCapabilityError,
    UnsupportedParamError,
)
from .files import FileInput
from .types import (
    Attempt,
    EmbeddingResponse,
    LLMResponse,
    OperationResponse,
    RankedDocument,
    RerankResponse,
    SpeechResponse,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    TranscriptionResponse,
    Usage,
    VideoResponse,
)

if TYPE_CHECKING:
    from .router import Router
    from .state import StateUnavailableError

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`Router` (with the engine, the HTTP client and the event loop machinery) loads on first use, so
    that importing a submodule (`llm_router.errors`, `llm_router.config.model`, the CLI) does not pay for it."""
    if name == "Router":
        from .router import Router

        return Router
    if name == "StateUnavailableError":
        from .state import StateUnavailableError

        return StateUnavailableError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
    "EmbeddingResponse",
    "ErrorKind",
    "FileInput",
    "InvalidReplyError",
    "InvalidRequestError",
    "LLMResponse",
    "MissingCredentialError",
    "NotFoundError",
    "OperationResponse",
    "OverloadedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "RankedDocument",
    "RateLimitError",
    "RerankResponse",
    "Router",
    "RouterClosedError",
    "RouterError",
    "ServerError",
    "SpeechResponse",
    "StateUnavailableError",
    "StreamChunk",
    "StreamInterrupted",
    "ToolCall",
    "ToolCallDelta",
    "TranscriptionResponse",
    "UnknownModelError",
    "UnsupportedCapabilityError",
    "UnsupportedParamError",
    "Usage",
    "VideoResponse",
    "catalog_dir",
]
