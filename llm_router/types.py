"""What a call returns: plain slotted dataclasses with obvious fields."""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING, Any, ClassVar

from ._records import record


@record
class Usage:
    input_tokens: int | None = None  # all input tokens, cached ones included
    output_tokens: int | None = None  # reasoning tokens included
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    # what other operation kinds are billed by
    search_units: int | None = None  # rerank
    characters: int | None = None  # speech: characters of the text sent
    audio_seconds: float | None = None  # transcription: seconds of audio
    video_seconds: float | None = None  # video: seconds of video generated
    if TYPE_CHECKING:
        __slots__: ClassVar[tuple[str, ...]]  # made by @record, from the fields above

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


@record(frozen=True)
class CostBreakdown:
    """What a call cost, in USD, by what was billed; `total` is the call's `cost`."""

    # other kinds: embed input tokens, rerank search units, speech characters and transcribed
    # audio are `input`; video seconds are `output`
    input: float = 0.0  # uncached input tokens
    cached_input: float = 0.0
    cache_write: float = 0.0
    output: float = 0.0  # output tokens other than reasoning; image models: the images
    reasoning: float = 0.0
    fees: float = 0.0  # per-request fees

    @property
    def total(self) -> float:
        return self.input + self.cached_input + self.cache_write + self.output + self.reasoning + self.fees


@record(frozen=True)
class Attempt:
    """One deployment tried during a call (or a model none of whose deployments could be tried):
    what happened there, how long it took, and what it used and cost."""

    model: str
    provider: str
    ok: bool
    status: int | None = None
    error: str | None = None
    error_kind: str | None = None  # an ErrorKind; None when ok
    tries: int = 1
    latency: float = 0.0
    deployment: str | None = None  # which deployment served the attempt (None: a model without `deployments`)
    # what the attempt used and cost: a success's, and a stream's that delivered part of an answer
    # before it failed or its caller stopped reading (counts the provider had not reported yet are
    # estimated, 4 characters a token); None for an attempt that delivered nothing
    usage: Usage | None = None
    cost: float | None = None


@record(frozen=True)
class ToolCall:
    """A call the model asked for: `arguments` is the JSON text it wrote, `parsed` that text parsed
    (None when it does not parse, or parses to something other than an object)."""

    id: str
    name: str
    arguments: str
    parsed: dict[str, Any] | None = None

    def to_message(self) -> dict[str, Any]:
        """The call in the canonical (OpenAI Chat Completions) message form."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@record(frozen=True)
class ToolCallDelta:
    """A fragment of a streamed tool call. `index` is the call's place among this turn's calls;
    `id` and `name` come with the call's first fragment, `arguments` is the next piece of its JSON text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@record
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
    content_kind: str = "text"  # "text" | "url" | "base64" | "bytes" (a binary reply: `media_type` says what)
    id: str | None = None
    deployment: str | None = None  # the deployment that answered (None: a model without `deployments`)
    tool_calls: list[ToolCall] = field(default_factory=list)
    message: dict[str, Any] | None = None  # the assistant turn, canonical, ready to append to `messages`
    native_finish_reason: str | None = None  # the provider's own; `finish_reason` is normalised
    reasoning: str | None = None  # the reasoning text or summary, where the provider returns one
    extra: dict[str, Any] = field(default_factory=dict)  # values of the provider's declared `extra:` paths
    cost_breakdown: CostBreakdown | None = None  # None exactly when cost is None
    media_type: str | None = None  # content_kind "bytes": the reply's content type (image/png, ...)


@record
class StreamChunk:
    delta: str
    model_name: str
    provider: str
    finish_reason: str | None = None  # normalised, on the last chunk
    usage: Usage | None = None  # on the last chunk
    cost: float | None = None  # on the last chunk
    is_final: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    tool_call_deltas: list[ToolCallDelta] = field(default_factory=list)
    reasoning_delta: str = ""
    # on the last chunk: the turn assembled
    tool_calls: list[ToolCall] = field(default_factory=list)
    message: dict[str, Any] | None = None
    native_finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    cost_breakdown: CostBreakdown | None = None


# --- what the other operation kinds return ------------------------------------------------------------


@record(kw_only=True)
class OperationResponse:
    """What every operation kind's response holds besides its result: who answered, what it used
    and cost, how long it took, and every attempt made."""

    model_name: str
    provider: str
    usage: Usage
    cost: float | None
    latency: float
    attempts: list[Attempt] = field(default_factory=list)
    raw: Any = None  # the reply's JSON (None for a binary reply)
    id: str | None = None
    deployment: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # values of the provider's declared `extra:` paths or headers
    cost_breakdown: CostBreakdown | None = None  # None exactly when cost is None


@record(kw_only=True)
class EmbeddingResponse(OperationResponse):
    """`router.embed(...)`: one vector per input, in the order of the inputs."""

    vectors: list[list[float]]

    @property
    def dimensions(self) -> int:
        return len(self.vectors[0]) if self.vectors else 0


@record(frozen=True)
class RankedDocument:
    index: int  # its place in the `documents` the call gave
    score: float
    document: str


@record(kw_only=True)
class RerankResponse(OperationResponse):
    """`router.rerank(...)`: the documents the provider ranked, most relevant first."""

    ranking: list[RankedDocument]


@record(kw_only=True)
class SpeechResponse(OperationResponse):
    """`router.speak(...)`: the audio, as the provider encoded it (`media_type`, e.g. audio/mpeg)."""

    audio: bytes = field(repr=False)
    media_type: str | None = None


@record(kw_only=True)
class TranscriptionResponse(OperationResponse):
    """`router.transcribe(...)`: the text of the audio."""

    text: str


@record(kw_only=True)
class VideoResponse(OperationResponse):
    """`router.generate_video(...)`: where the video is (`url`), or the video itself (`video`, `media_type`)."""

    url: str | None = None
    video: bytes | None = field(default=None, repr=False)
    media_type: str | None = None
