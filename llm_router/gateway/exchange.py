"""One request as the gateway handles it: its id, its caller's key and limits, its body (capped),
which models the key may reach, and the headers every answer carries."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.background import BackgroundTask
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from ..config.model import ModelConfig
from ..errors import UnknownModelError
from ..types import LLMResponse, OperationResponse
from .config import VirtualKey
from .errors import ApiError
from .keys import Admission
from .runtime import Runtime

ENDPOINTS = {"chat": "/v1/chat/completions", "image": "/v1/images/generations", "embed": "/v1/embeddings",
             "speech": "/v1/audio/speech", "transcribe": "/v1/audio/transcriptions"}  # by model kind

Answer = TypeVar("Answer", bound=LLMResponse | OperationResponse)

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(slots=True, eq=False)
class Exchange:
    runtime: Runtime
    request: Request
    request_id: str
    started: float  # time.perf_counter() when the gateway took the request
    key: VirtualKey | None = None
    admission: Admission | None = None
    reading_s: float = 0.0  # time spent waiting for the body to arrive: the client's, not the gateway's

    @classmethod
    def begin(cls, runtime: Runtime, request: Request) -> Exchange:
        """A client's own `x-request-id` is kept when it is a plain token; otherwise the gateway makes one."""
        given = request.headers.get("x-request-id", "")
        request_id = given if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex
        return cls(runtime, request, request_id, time.perf_counter())

    def authenticate(self) -> VirtualKey:
        """The calling key, from `Authorization: Bearer <key>` (or `x-api-key`); 401 when missing or unknown."""
        headers = self.request.headers
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        token = token or headers.get("x-api-key", "").strip()
        if not token:
            raise ApiError(401, "no API key given: send `Authorization: Bearer <key>`", "invalid_request_error", "missing_api_key")
        key = self.runtime.keys.authenticate(token)
        if key is None:
            raise ApiError(401, "invalid API key", "invalid_request_error", "invalid_api_key")
        self.key = key
        return key

    async def admit(self, key: VirtualKey, tokens: int) -> Admission:
        """Take room under the key's limits and budgets for a call estimated at `tokens` (429 when there is none)."""
        self.admission = await self.runtime.limiter.admit(key, tokens)
        return self.admission

    async def answered(self, call: Awaitable[Answer]) -> tuple[Answer, BackgroundTask]:
        """Await the router's call under the admission taken: it is settled at once, with nothing, when the
        call fails, and with the call's usage and cost by the returned task once the answer is sent."""
        limiter, admission = self.runtime.limiter, self.admission
        assert admission is not None  # admit() came first
        try:
            response = await call
        except BaseException:
            await limiter.settle(admission, None, None)
            raise
        return response, BackgroundTask(limiter.settle, admission, response.usage.total_tokens, response.cost)

    async def json_body(self) -> Any:
        """The body parsed as JSON; 413 past `max_request_bytes` (before reading it, when Content-Length says so)."""
        cap = self.runtime.config.max_request_bytes
        declared = self.request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise _too_large(cap)
        parts, size = [], 0
        reading = time.perf_counter()
        async for part in self.request.stream():
            size += len(part)
            if size > cap:
                raise _too_large(cap)
            parts.append(part)
        self.reading_s = time.perf_counter() - reading
        try:
            return json.loads(b"".join(parts))
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON", "invalid_request_error", "invalid_json") from None

    async def form_body(self) -> FormData:
        """A multipart/form-data body (a file and its fields): 411 without a Content-Length (the size is
        checked before anything is read), 413 past `max_upload_bytes`, 400 when it is not multipart or
        does not parse. The caller closes it (its files may be spooled to disk)."""
        headers = self.request.headers
        if not headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise ApiError(400, "the body must be multipart/form-data: the file and its fields", "invalid_request_error",
                           "invalid_body")
        cap = self.runtime.config.max_upload_bytes
        declared = headers.get("content-length", "")
        if not declared.isdigit():
            raise ApiError(411, "a multipart body needs a Content-Length header", "invalid_request_error", "length_required")
        if int(declared) > cap:
            raise _too_large(cap)
        try:
            return await self.request.form(max_files=1, max_fields=32)
        except (MultiPartException, HTTPException) as exc:  # Starlette raises the latter for the former inside an app
            detail = exc.message if isinstance(exc, MultiPartException) else exc.detail
            raise ApiError(400, f"the multipart body does not parse: {detail}", "invalid_request_error", "invalid_body") from None

    def model(self, name: str, field: str) -> ModelConfig:
        """The model `name`, when the key may use it: 403 when it may not (whether or not the model
        exists, so a key learns nothing of models outside its list), 404 when it may but there is none."""
        assert self.key is not None
        if not self.key.allows(name):
            raise ApiError(403, f"this API key may not use model {name!r}", "permission_error", "model_not_allowed", field)
        try:
            return self.runtime.router.resolve(name)
        except UnknownModelError as exc:
            close = [m for m in exc.close_matches if self.key.allows(m)]
            hint = f"; did you mean {', '.join(repr(m) for m in close)}?" if close else ""
            raise ApiError(404, f"the model {name!r} does not exist{hint}", "invalid_request_error", "model_not_found",
                           field) from None

    def models_for(self, name: str, fallback: str | None, kind: str) -> ModelConfig:
        """The requested model, when the key may use it and it is a `kind` model (else a 400 naming
        the endpoint that serves it), after checking the fallback model the same way."""
        model = self.model(name, "model")
        if model.kind != kind:
            serves = ENDPOINTS.get(model.kind)
            where = f"call {serves}" if serves else "the gateway has no endpoint for it (use the Python API)"
            raise ApiError(400, f"{name!r} is a{'n' if model.kind[0] in 'aeiou' else ''} {model.kind} model; {where}",
                           "invalid_request_error", "wrong_endpoint", "model")
        if fallback is not None:
            self.model(fallback, "fallback_model")
        return model

    def forwarded_headers(self) -> dict[str, str] | None:
        """The client's headers that gateway.yaml's forward_headers passes on upstream."""
        names = self.runtime.config.forward_headers
        found = {name: self.request.headers[name] for name in names if name in self.request.headers}
        return found or None

    def headers(self) -> dict[str, str]:
        headers = {"x-request-id": self.request_id}
        if self.admission is not None:
            headers |= self.admission.headers
        return headers

    def answer_headers(self, response: LLMResponse | OperationResponse) -> dict[str, str]:
        """Who answered, after how many attempts, at what cost, and the gateway's and router's own time:
        the time since the gateway took the request less the body's arrival and the attempts."""
        overhead_s = time.perf_counter() - self.started - self.reading_s - sum(a.latency for a in response.attempts)
        headers = self.headers() | {
            "x-llm-router-model": response.model_name,
            "x-llm-router-provider": response.provider,
            "x-llm-router-attempts": str(len(response.attempts)),
            "x-llm-router-overhead-ms": f"{max(overhead_s, 0.0) * 1000:.3f}",
        }
        if response.cost is not None:
            headers["x-llm-router-cost-usd"] = f"{response.cost:.8f}"
        return headers


def _too_large(cap: int) -> ApiError:
    return ApiError(413, f"the request body is larger than the gateway's limit of {cap} bytes", "invalid_request_error",
                    "request_too_large")
