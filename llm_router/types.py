"""What a call returns: plain slotted dataclasses with obvious fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Usage:
    input_tokens: int | None = None  # all input tokens, cached ones included
    output_tokens: int | None = None  # reasoning tokens included
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)

    def update(self, other: Usage) -> None:
        """Take every count `other` reports (streams report usage across several events)."""
        for name in Usage.__slots__:
            value = getattr(other, name)
            if value is not None:
                setattr(self, name, value)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One model tried during a call: what happened there and how long it took."""

    model: str
    provider: str
    ok: bool
    status: int | None = None
    error: str | None = None
    error_kind: str | None = None
    tries: int = 1
    latency: float = 0.0
    deployment: str | None = None  # which deployment served the attempt (None: a model without `deployments`)


@dataclass(slots=True)
class LLMResponse:
    content: Any
    model_name: str
    provider: str
    usage: Usage
    cost: float | None
    latency: float
    finish_reason: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    raw: Any = None
    content_kind: str = "text"  # "text" | "url" | "base64"
    id: str | None = None
    deployment: str | None = None  # the deployment that answered (None: a model without `deployments`)


@dataclass(slots=True)
class StreamChunk:
    delta: str
    model_name: str
    provider: str
    finish_reason: str | None = None
    usage: Usage | None = None  # on the last chunk
    cost: float | None = None  # on the last chunk
    is_final: bool = False
    attempts: list[Attempt] = field(default_factory=list)
