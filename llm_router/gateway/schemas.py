"""Request bodies, the boundary where untrusted JSON arrives: pydantic models of the OpenAI shapes the
gateway accepts. A body that does not fit is a 400 naming the field (`messages[0].role: ...`).

Fields a request may carry beyond the declared ones (`temperature`, `max_tokens`, `size`, ...) are the
call's params: the router checks them against the model's allow-list. The models validate; the
gateway passes the body's own dicts (messages, tools) on to the router."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ApiError

# keyword arguments of Router.query that a body's extra fields must not reach as params
RESERVED = frozenset({"prompt", "model_name", "messages"})


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class FunctionDef(_Closed):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Closed):
    type: Literal["function"]
    function: FunctionDef


class CalledFunction(_Open):
    name: str
    arguments: str


class MessageToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: CalledFunction


class Message(_Open):
    """One turn; extra fields (provider state from an earlier reply, `reasoning_content`) ride along."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Any = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _content(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(p, dict) and isinstance(p.get("type"), str) for p in value):
            return value
        raise ValueError("must be a string, a list of content parts ({'type': ..., ...}), or null")


class StreamOptions(_Closed):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # accepted, not used: the gateway adds no obfuscation field


class ResponseFormat(_Closed):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class _Routed(_Open):
    """The router's own extras, accepted as extra body fields (the SDKs' `extra_body=`)."""

    model: str = Field(min_length=1)
    fallback_model: str | None = Field(default=None, min_length=1)
    fallback_config: dict[str, Any] | None = None
    n: int | None = None
    user: str | None = None  # accepted, not sent upstream

    @field_validator("n")
    @classmethod
    def _one(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError("only n=1 is supported")
        return value

    # declared fields that are the call's params when given (checked here, then by the model's allow-list)
    PARAM_FIELDS: ClassVar[tuple[str, ...]] = ()

    def params(self) -> dict[str, Any]:
        extra = self.model_extra or {}
        reserved = RESERVED.intersection(extra)
        if reserved:
            name = sorted(reserved)[0]
            raise ApiError(400, f"{name}: not a field of this endpoint", "invalid_request_error", "unknown_parameter", name)
        given = {name: value for name in self.PARAM_FIELDS if (value := getattr(self, name)) is not None}
        return extra | given if given else extra


class ChatCompletionRequest(_Routed):
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None


class ImageGenerationRequest(_Routed):
    prompt: str = Field(min_length=1)
    response_format: Literal["url", "b64_json"] | None = None


class EmbeddingRequest(_Routed):
    """OpenAI's embeddings body: texts only (token arrays are refused); the vectors come back as
    floats, or as base64 float32 when asked (the openai SDKs ask by default)."""

    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] | None = None


class SpeechRequest(_Routed):
    """OpenAI's speech body (`client.audio.speech.create`): the text is `input`; voice, format, speed and
    instructions are params the model's allow-list checks. The reply is the audio itself."""

    input: str = Field(min_length=1)
    voice: str | None = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] | None = None
    speed: float | None = Field(default=None, ge=0.25, le=4.0)
    instructions: str | None = None
    PARAM_FIELDS = ("voice", "response_format", "speed", "instructions")


class TranscriptionRequest(_Routed):
    """OpenAI's transcription form fields (`client.audio.transcriptions.create`), the file apart:
    language, prompt and temperature are params the model's allow-list checks; the answer is JSON
    (`{"text": ...}`) or, with `response_format: text`, the text itself."""

    language: str | None = None
    prompt: str | None = None
    response_format: Literal["json", "text"] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    PARAM_FIELDS = ("language", "prompt", "temperature")


Body = TypeVar("Body", bound=BaseModel)


def parse(model: type[Body], data: Any) -> Body:
    """Validate a parsed JSON body; a misfit is an ApiError(400) naming the first field at fault."""
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_request_error", "invalid_body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        param = field_path(errors[0]["loc"])
        text = "; ".join(_describe(e) for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ApiError(400, text + more, "invalid_request_error", "invalid_value", param or None) from None


def field_path(loc: tuple[int | str, ...]) -> str:
    """('messages', 0, 'role') → 'messages[0].role'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(error: Any) -> str:
    where = field_path(error["loc"])
    if error["type"] == "missing":
        return f"{where}: required"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown field"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
