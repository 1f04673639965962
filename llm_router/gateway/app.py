"""The HTTP routes of one runtime: chat completions (`chat`), images, embeddings, speech, transcription, models,
health; the error envelope every route answers with; CORS when configured. One Starlette app per loaded config."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..errors import RouterError
from ..inputs import estimate_tokens
from .chat import chat_completions
from .convert import dumps, embedding_list, image, model_json
from .errors import ApiError, from_router_error
from .exchange import Exchange
from .runtime import Runtime
from .schemas import EmbeddingRequest, ImageGenerationRequest, SpeechRequest, TranscriptionRequest, parse

log = logging.getLogger("llm_router.gateway")
access = logging.getLogger("llm_router.gateway.access")

EXPOSED_HEADERS = [
    "x-request-id", "x-llm-router-model", "x-llm-router-provider", "x-llm-router-attempts", "x-llm-router-cost-usd",
    "x-llm-router-overhead-ms", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
    "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "retry-after", "retry-after-ms",
]

Handler = Callable[[Exchange], Awaitable[Response]]


def endpoint(runtime: Runtime, handler: Handler, log_level: int = logging.INFO) -> Callable[[Request], Awaitable[Response]]:
    """A route that answers every failure in OpenAI's error envelope, with the request id, and logs one line."""

    async def run(request: Request) -> Response:
        ex = Exchange.begin(runtime, request)
        try:
            response = await handler(ex)
        except ApiError as exc:
            response = error_response(ex, exc)
        except RouterError as exc:
            response = error_response(ex, from_router_error(exc))
        except Exception:
            log.exception("request %s failed", ex.request_id)
            response = error_response(ex, ApiError(500, f"the gateway failed to handle request {ex.request_id}",
                                                   "server_error", "internal_error"))
        if access.isEnabledFor(log_level):
            access.log(log_level, "%s %s %s %d key=%s model=%s %.1fms", ex.request_id, request.method, request.scope["path"],
                       response.status_code, ex.key.name if ex.key else "-",
                       response.headers.get("x-llm-router-model", "-"), (time.perf_counter() - ex.started) * 1000)
        return response

    return run


def error_response(ex: Exchange, error: ApiError) -> Response:
    return Response(dumps(error.body()), status_code=error.status, media_type="application/json",
                    headers=ex.headers() | error.headers())


async def images_generations(ex: Exchange) -> Response:
    key = ex.authenticate()
    body = await ex.json_body()
    request = parse(ImageGenerationRequest, body)
    model = ex.models_for(request.model, request.fallback_model, "image")
    params = image_params(request, model.params)
    await ex.admit(key, estimate_tokens(None, request.prompt, params))
    response, settle = await ex.answered(ex.runtime.router.query(
        request.model, prompt=request.prompt, fallback_model=request.fallback_model,
        fallback_config=request.fallback_config, extra_headers=ex.forwarded_headers(), **params))
    return Response(dumps(image(response, int(time.time()))), media_type="application/json",
                    headers=ex.answer_headers(response), background=settle)


async def embeddings(ex: Exchange) -> Response:
    key = ex.authenticate()
    request = parse(EmbeddingRequest, await ex.json_body())
    ex.models_for(request.model, request.fallback_model, "embed")
    params = request.params()
    texts = [request.input] if isinstance(request.input, str) else request.input
    await ex.admit(key, estimate_tokens(None, "\n".join(texts), params))
    response, settle = await ex.answered(ex.runtime.router.embed(
        request.model, texts, fallback_model=request.fallback_model, fallback_config=request.fallback_config, **params))
    return Response(dumps(embedding_list(response, request.encoding_format == "base64")), media_type="application/json",
                    headers=ex.answer_headers(response), background=settle)


async def audio_speech(ex: Exchange) -> Response:
    key = ex.authenticate()
    request = parse(SpeechRequest, await ex.json_body())
    ex.models_for(request.model, request.fallback_model, "speech")
    params = request.params()
    await ex.admit(key, estimate_tokens(None, request.input, params))
    response, settle = await ex.answered(ex.runtime.router.speak(
        request.model, request.input, fallback_model=request.fallback_model, fallback_config=request.fallback_config,
        **params))
    return Response(response.audio, media_type=response.media_type or "application/octet-stream",
                    headers=ex.answer_headers(response), background=settle)


async def audio_transcriptions(ex: Exchange) -> Response:
    key = ex.authenticate()
    form = await ex.form_body()
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "file: required, the audio as a file part", "invalid_request_error", "invalid_value", "file")
        fields = {name: value for name, value in form.multi_items() if name != "file"}  # text: one file at most
        request = parse(TranscriptionRequest, fields)
        ex.models_for(request.model, request.fallback_model, "transcribe")
        audio, filename, media_type = await upload.read(), upload.filename, upload.content_type
    finally:
        await form.close()
    params = request.params()
    await ex.admit(key, estimate_tokens(None, request.prompt or "", params))
    response, settle = await ex.answered(ex.runtime.router.transcribe(
        request.model, audio, filename=filename, media_type=media_type, fallback_model=request.fallback_model,
        fallback_config=request.fallback_config, **params))
    if request.response_format == "text":
        return PlainTextResponse(response.text, headers=ex.answer_headers(response), background=settle)
    return Response(dumps({"text": response.text}), media_type="application/json", headers=ex.answer_headers(response),
                    background=settle)


def image_params(request: ImageGenerationRequest, accepted: frozenset[str]) -> dict[str, Any]:
    """The call's params: OpenAI's `size: WxH` becomes `width`/`height` for a model that takes those
    instead; `response_format` goes only to a model that takes it (others answer in their own form)."""
    params = dict(request.params())
    size = params.get("size")
    if isinstance(size, str) and "size" not in accepted and {"width", "height"} <= accepted:
        width, sep, height = size.partition("x")
        if not (sep and width.isdigit() and height.isdigit()):
            raise ApiError(400, f"size must be WIDTHxHEIGHT, e.g. 1024x768 (got {size!r})", "invalid_request_error",
                           "invalid_value", "size")
        del params["size"]
        params |= {"width": int(width), "height": int(height)}
    if request.response_format is not None and "response_format" in accepted:
        params["response_format"] = request.response_format
    return params


async def list_models(ex: Exchange) -> Response:
    key = ex.authenticate()
    runtime = ex.runtime
    data = [model_json(m, runtime.loaded_at) for name, m in sorted(runtime.router.models.items()) if key.allows(name)]
    return Response(dumps({"object": "list", "data": data}), media_type="application/json", headers=ex.headers())


async def get_model(ex: Exchange) -> Response:
    key = ex.authenticate()
    name = ex.request.path_params["model_id"]
    model = ex.runtime.router.models.get(name)
    if model is None or not key.allows(name):  # the same answer either way: a key learns nothing of other models
        raise ApiError(404, f"the model {name!r} does not exist or this API key may not use it", "invalid_request_error",
                       "model_not_found", "model")
    return Response(dumps(model_json(model, ex.runtime.loaded_at)), media_type="application/json", headers=ex.headers())


async def healthz(ex: Exchange) -> Response:
    return JSONResponse({"status": "ok"}, headers=ex.headers())


async def readyz(ex: Exchange) -> Response:
    checks = await ex.runtime.readiness()
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503, headers=ex.headers())


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "unknown_path", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = f"no route for {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
    body = ApiError(exc.status_code, message, "invalid_request_error", code).body()
    return Response(dumps(body), status_code=exc.status_code, media_type="application/json", headers=exc.headers)


def build_app(runtime: Runtime) -> Starlette:
    routes = [
        Route("/v1/chat/completions", endpoint(runtime, chat_completions), methods=["POST"]),
        Route("/v1/images/generations", endpoint(runtime, images_generations), methods=["POST"]),
        Route("/v1/embeddings", endpoint(runtime, embeddings), methods=["POST"]),
        Route("/v1/audio/speech", endpoint(runtime, audio_speech), methods=["POST"]),
        Route("/v1/audio/transcriptions", endpoint(runtime, audio_transcriptions), methods=["POST"]),
        Route("/v1/models", endpoint(runtime, list_models), methods=["GET"]),
        Route("/v1/models/{model_id:path}", endpoint(runtime, get_model), methods=["GET"]),
        Route("/healthz", endpoint(runtime, healthz, logging.DEBUG), methods=["GET"]),
        Route("/readyz", endpoint(runtime, readyz, logging.DEBUG), methods=["GET"]),
    ]
    middleware = []
    if runtime.config.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(runtime.config.cors_origins),
                                     allow_methods=["GET", "POST"], allow_headers=["*"], expose_headers=EXPOSED_HEADERS,
                                     max_age=600))
    return Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: _http_error})
