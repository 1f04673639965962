"""`llm-router record`: one real call, every request and reply kept, written as a contract
(see `contracts.py`) with every secret masked."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import httpx2
import yaml

from .config import load_catalog
from .config.model import Catalog, ProviderConfig
from .contracts import make_call
from .errors import ConfigurationError, RouterError
from .router import Router
from .secrets import Redactor, Secret

# Transport-level headers that say nothing about the provider's API.
_NOISE_HEADERS = frozenset({"host", "content-length", "user-agent", "accept-encoding", "connection", "accept",
                            "date", "server", "transfer-encoding", "keep-alive", "vary", "set-cookie", "cf-ray",
                            "alt-svc", "strict-transport-security", "x-request-id", "request-id", "via", "content-encoding"})


@dataclass
class Exchange:
    request: httpx2.Request
    status: int
    headers: list[tuple[str, str]]
    content: bytes


class RecordingTransport(httpx2.AsyncBaseTransport):
    """Sends through `inner` and keeps each request and reply (the reply body read in full)."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        await response.aclose()
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-encoding"]
        self.exchanges.append(Exchange(request, response.status_code, headers, content))
        return httpx2.Response(response.status_code, headers=headers, content=content, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def record(
    dirs: Sequence[str | Path], env: Mapping[str, str], model: str, prompt: str, params: Mapping[str, Any],
    stream: bool = False, name: str = "recorded", transport: httpx2.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """Make one real call and return it as contract data, every secret masked."""
    catalog, problems = load_catalog(dirs, env)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ConfigurationError(errors)
    recorder = RecordingTransport(transport or httpx2.AsyncHTTPTransport())
    router = Router(catalog, env, transport=recorder)
    config = router.resolve(model)
    call: dict[str, Any] = {"model": model}
    if config.kind == "image":
        call["prompt"] = prompt
    else:
        call["messages"] = [{"role": "user", "content": prompt}]
    if params:
        call["params"] = dict(params)
    if stream:
        call["stream"] = True
    async with router:
        outcome = await make_call(router, call)
    if not recorder.exchanges:
        error = outcome.get("error")
        raise error if error is not None else RouterError("the call sent no request; nothing to record")
    provider = catalog.providers[config.provider]
    data: dict[str, Any] = {
        "name": name,
        "provider": config.provider,
        "source": f"recorded with `llm-router record` on {time.strftime('%Y-%m-%d')}",
        "call": call,
        "request": _recorded_request(recorder.exchanges[0].request, provider, env),
    }
    if len(recorder.exchanges) > 1 and config.kind == "image":
        later = _recorded_request(recorder.exchanges[-1].request, provider, env)
        data["poll_request"] = {k: later[k] for k in ("method", "path", "headers") if k in later}
    data["replies"] = [_recorded_reply(x) for x in recorder.exchanges]
    data["expect"] = _recorded_expect(outcome, len(recorder.exchanges))
    return cast(dict[str, Any], _redacted(data, _redactor(catalog, env)))


def _redactor(catalog: Catalog, env: Mapping[str, str]) -> Redactor:
    """Every key the catalog's providers would send, from their auth declarations."""
    return Redactor(Secret(env[p.auth.env]) for p in catalog.providers.values() if p.auth and env.get(p.auth.env))


def _redacted(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, redact) for v in value]
    return value


def _recorded_request(request: httpx2.Request, provider: ProviderConfig, env: Mapping[str, str]) -> dict[str, Any]:
    url = urlsplit(str(request.url))
    out: dict[str, Any] = {"method": request.method, "path": _config_path(url.path, provider, env)}
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    if query:
        out["query"] = query
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in _NOISE_HEADERS}
    if headers:
        out["headers"] = headers
    if request.content:
        with contextlib.suppress(ValueError):  # a body that is not JSON (a form, multipart) is not recorded
            out["body"] = json.loads(request.content)
    return out


def _config_path(path: str, provider: ProviderConfig, env: Mapping[str, str]) -> str:
    """The path as the configured base URL would give it, when the call went to a base-URL
    override (a proxy, a mock): replay uses the configured base URL."""
    override = env.get(provider.base_url_env) if provider.base_url_env else None
    if not override:
        return path
    sent_base = urlsplit(override).path.rstrip("/")
    if sent_base and not path.startswith(sent_base + "/"):
        return path
    return urlsplit(provider.base_url).path.rstrip("/") + path[len(sent_base):]


def _recorded_reply(exchange: Exchange) -> dict[str, Any]:
    reply: dict[str, Any] = {"status": exchange.status}
    headers = {k.lower(): v for k, v in exchange.headers if k.lower() not in _NOISE_HEADERS}
    content_type = headers.get("content-type", "")
    if content_type.startswith("text/event-stream"):
        headers.pop("content-type")
        reply["sse"] = _parse_sse(exchange.content.decode(errors="replace"))
    else:
        try:
            reply["body"] = json.loads(exchange.content)
            if content_type.startswith("application/json"):
                headers.pop("content-type")
        except ValueError:
            reply["text"] = exchange.content.decode(errors="replace")
    keep = {k: v for k, v in headers.items() if k == "content-type" or k.startswith("retry-after")}
    if keep:
        reply["headers"] = keep
    return reply


def _parse_sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in re.split(r"\r?\n\r?\n", text):
        event: dict[str, Any] = {}
        data_lines = []
        for line in block.splitlines():
            if line.startswith("event:"):
                event["event"] = line[6:].strip()
            elif line.startswith("data:"):
                data_lines.append(line[5:].removeprefix(" "))
        if not data_lines:
            continue
        data = "\n".join(data_lines)
        try:
            event["data"] = json.loads(data)
        except ValueError:
            event["data"] = data
        events.append(event)
    return events


def _recorded_expect(outcome: Mapping[str, Any], sent: int) -> dict[str, Any]:
    error = outcome.get("error")
    if error is not None:
        want: dict[str, Any] = {"type": type(error).__name__, "message_contains": getattr(error, "message", None) or str(error)}
        if getattr(error, "status", None) is not None:
            want["status"] = error.status
        return {"error": want, "requests": sent}
    expect: dict[str, Any] = {}
    for key in ("content", "content_kind", "finish_reason"):
        if outcome.get(key) is not None:
            expect[key] = outcome[key]
    if "chunks" in outcome:
        expect["chunks"] = outcome["chunks"]
    usage = outcome.get("usage")
    counts = {k: getattr(usage, k) for k in getattr(usage, "__slots__", ()) if getattr(usage, k) is not None}
    if counts:
        expect["usage"] = counts
    expect["cost"] = outcome.get("cost")
    expect["requests"] = sent
    return expect


def contract_name(out: Path) -> str:
    """A contract name from the file it is written to: `acme-chat.yaml` → `acme-chat`."""
    return re.sub(r"[^a-z0-9_.-]+", "-", out.stem.lower()).strip("-.") or "recorded"


def dump_contract(data: Mapping[str, Any]) -> str:
    header = "# yaml-language-server: $schema=../../schemas/contract.schema.json\n"
    return header + yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=120)
