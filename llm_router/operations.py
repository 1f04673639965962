"""The operation kinds beyond chat and image: embed, rerank, speech, transcribe, video.

Each kind checks its caller's input before anything is sent, names the template variables its
provider operations render (`input`, `query` and `documents`, `text`, `file`, `prompt`), and
builds its typed response from what the engine read. Every kind routes like `router.query`: the
model's allow-list and defaults, fallbacks, deployments, limits, budgets, hooks (`Router.embed`,
`rerank`, `speak`, `transcribe` and `generate_video` are thin calls into `run`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config.model import ModelConfig, ProviderConfig
from .engine import Call, EngineResult
from .errors import InvalidRequestError
from .files import as_file
from .inputs import MAX_INPUT_CHARS, check_params
from .types import (
    EmbeddingResponse,
    OperationResponse,
    RankedDocument,
    RerankResponse,
    SpeechResponse,
    TranscriptionResponse,
    Usage,
    VideoResponse,
)

if TYPE_CHECKING:
    from .router import Router
    from .routing.lease import Planned

METHODS = {"embed": "embed", "rerank": "rerank", "speech": "speak", "transcribe": "transcribe", "video": "generate_video"}


@dataclass(frozen=True, slots=True)
class Inputs:
    """A call's input: the template variables, and the text the tpm limit estimates tokens from."""

    variables: Mapping[str, Any]
    text: str = ""


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"{where} must be a non-empty string, got {_shown(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(f"{where} is not valid UTF-8 text (lone surrogates)") from None
    return value


def _texts(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidRequestError(f"{where} must be a string or a non-empty list of strings, got {_shown(value)}")
    texts = [_text(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if sum(map(len, texts)) > MAX_INPUT_CHARS:
        raise InvalidRequestError(f"{where} holds more than the {MAX_INPUT_CHARS} characters the router accepts")
    return texts


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) and not value.strip() else type(value).__name__


def embed_inputs(input: Any) -> Inputs:
    texts = _texts(input, "input")
    return Inputs({"input": texts}, "\n".join(texts))


def rerank_inputs(query: Any, documents: Any) -> Inputs:
    query, documents = _text(query, "query"), _texts(documents, "documents")
    return Inputs({"query": query, "documents": documents}, "\n".join([query, *documents]))


def speech_inputs(text: Any) -> Inputs:
    text = _text(text, "text")
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidRequestError(f"text holds more than the {MAX_INPUT_CHARS} characters the router accepts")
    return Inputs({"text": text}, text)


def transcribe_inputs(file: Any, filename: str | None, media_type: str | None) -> Inputs:
    if filename is not None and not isinstance(filename, str):
        raise InvalidRequestError(f"filename must be a string, got {type(filename).__name__}")
    if media_type is not None and (not isinstance(media_type, str) or "/" not in media_type):
        raise InvalidRequestError(f"media_type must be a media type such as 'audio/mpeg', got {media_type!r}")
    return Inputs({"file": as_file(file, "file", filename, media_type)})


def video_inputs(prompt: Any) -> Inputs:
    prompt = _text(prompt, "prompt")
    return Inputs({"prompt": prompt}, prompt)


# --- routing one call -----------------------------------------------------------------------------


def _resolve(router: Router, name: Any, kind: str) -> ModelConfig:
    """The model, which must be of `kind`; a 'provider/upstream' name reaches the provider's `kind` operation."""
    if not isinstance(name, str):
        raise InvalidRequestError(f"model_name must be a string, got {type(name).__name__}")
    model = router.models.get(name)
    if model is None:
        provider_name, sep, upstream = name.partition("/")
        provider = router.providers.get(provider_name) if sep and upstream else None
        if provider is not None and kind in provider.operations:
            model = ModelConfig(name=name, provider=provider_name, upstream=upstream, pricing=None, kind=kind)
        else:
            model = router.resolve(name)  # UnknownModelError with close matches, or a model of another kind
    if model.kind != kind:
        raise InvalidRequestError(f"{model.name!r} is a{'n' if model.kind[0] in 'aeiou' else ''} {model.kind} model; "
                                  f"router.{METHODS[kind]}() needs a{'n' if kind[0] in 'aeiou' else ''} {kind} model")
    return model


def read_files(router: Router, model: ModelConfig, params: Mapping[str, Any]) -> Mapping[str, Any]:
    """The params the model's provider operations take as files, read into FileInputs (bytes, a
    path, a URL); the others as given."""
    if not params:
        return params
    named = router._file_params.get(model.name) if model.name in router.models else file_params(router.providers, model)
    if not named:
        return params
    return {k: as_file(v, f"param {k!r}") if model.rename.get(k, k) in named else v for k, v in params.items()}


def file_params(providers: Mapping[str, ProviderConfig], model: ModelConfig) -> frozenset[str]:
    """The `file_params` of every operation that serves the model."""
    served_by = [providers.get(d.provider) for d in model.deployments] or [providers.get(model.provider)]
    return frozenset().union(*(p.operations[model.kind].file_params for p in served_by
                               if p is not None and model.kind in p.operations))


def plan(router: Router, kind: str, model_name: str, params: Mapping[str, Any], fallback_model: str | None,
         fallback_config: Mapping[str, Any] | None) -> list[Planned]:
    """The chain with each model's params, as `router.query` plans it."""
    if fallback_model is not None and not isinstance(fallback_model, str):
        raise InvalidRequestError(f"fallback_model must be a model name, got {type(fallback_model).__name__}")
    if fallback_config is not None and not isinstance(fallback_config, Mapping):
        raise InvalidRequestError(f"fallback_config must be a mapping of params, got {type(fallback_config).__name__}")
    primary = _resolve(router, model_name, kind)
    params = read_files(router, primary, params)
    check_params(params)
    planned = [router._params_for(primary, params, strict=True)]
    for model in router._chain(primary, fallback_model)[1:]:
        given = read_files(router, model, fallback_config or {})
        check_params(given, "fallback_config param")
        planned.append(router._params_for(model, given, strict=False))
    return planned


async def run(router: Router, kind: str, model_name: str, inputs: Inputs, params: Mapping[str, Any],
              fallback_model: str | None, fallback_config: Mapping[str, Any] | None) -> OperationResponse:
    """Walk the chain, one lease per deployment tried, until one answers: its response, typed by `kind`."""
    started = time.perf_counter()
    with router._calls.inside():
        walk = router._leases.walk(plan(router, kind, model_name, params, fallback_model, fallback_config), None, inputs.text)
        while (lease := await walk.next()) is not None:
            async with lease:
                target = lease.target
                call = Call(target.provider, kind, target.context, None, None, lease.planned.params, target.credentials,
                            inputs=inputs.variables)
                result = await router._engine.execute(call)
                counted(kind, result.usage, inputs)
                lease.succeeded(result.usage, result.status, result.tries)
            if lease.ok:
                breakdown = lease.breakdown
                response = BUILDERS[kind](result, inputs, dict(
                    model_name=lease.planned.model.name, provider=lease.target.provider, usage=lease.usage,
                    cost=breakdown.total if breakdown is not None else None, latency=time.perf_counter() - started,
                    attempts=walk.attempts, raw=result.raw, id=result.id, deployment=lease.target.deployment,
                    extra=result.turn.extra if result.turn is not None else {}, cost_breakdown=breakdown))
                await router._hooks.emit("on_success", response)
                return response
        raise await walk.exhausted()


def counted(kind: str, usage: Usage, inputs: Inputs) -> None:
    """What the request itself says was used, where the reply does not: the characters of speech."""
    if kind == "speech" and usage.characters is None:
        usage.characters = len(inputs.variables["text"])


# --- the responses ------------------------------------------------------------------------------------


def _embedding(result: EngineResult, inputs: Inputs, common: dict[str, Any]) -> OperationResponse:
    return EmbeddingResponse(vectors=result.content, **common)


def _rerank(result: EngineResult, inputs: Inputs, common: dict[str, Any]) -> OperationResponse:
    documents: Sequence[str] = inputs.variables["documents"]
    return RerankResponse(ranking=[RankedDocument(i, score, documents[i]) for i, score in result.content], **common)


def _speech(result: EngineResult, inputs: Inputs, common: dict[str, Any]) -> OperationResponse:
    return SpeechResponse(audio=result.content, media_type=result.media_type, **common)


def _transcription(result: EngineResult, inputs: Inputs, common: dict[str, Any]) -> OperationResponse:
    return TranscriptionResponse(text=result.content, **common)


def _video(result: EngineResult, inputs: Inputs, common: dict[str, Any]) -> OperationResponse:
    if result.content_kind == "url":
        return VideoResponse(url=result.content, **common)
    return VideoResponse(video=result.content, media_type=result.media_type, **common)


BUILDERS: dict[str, Callable[[EngineResult, Inputs, dict[str, Any]], OperationResponse]] = {
    "embed": _embedding, "rerank": _rerank, "speech": _speech, "transcribe": _transcription, "video": _video,
}
