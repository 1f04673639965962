"""`llm-router record`: one real call, every request and reply kept, written as a contract
(see `contracts.py`) with every secret masked."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import yaml

from .config import load_catalog
from .config.model import Catalog, ProviderConfig
from .contracts import EventReads, make_call, sent_query
from .engine import TransportOption
from .engine.auth import SIGV4_HEADERS, display_headers, takes_token
from .engine.request import PreparedRequest
from .engine.transport import ClientSettings, Reply, StreamingReply, Transport, TransportFactory, transport_factory
from .errors import ConfigurationError, RouterError
from .router import Router
from .secrets import Redactor, Secret

# Transport-level headers that say nothing about the provider's API.
_NOISE_HEADERS = frozenset({"host", "content-length", "user-agent", "accept-encoding", "connection", "accept",
                            "date", "server", "transfer-encoding", "keep-alive", "vary", "set-cookie", "cf-ray",
                            "alt-svc", "strict-transport-security", "x-request-id", "request-id", "via", "content-encoding"})


@dataclass
class Exchange:
    request: PreparedRequest
    status: int
    headers: list[tuple[str, str]]
    content: bytes


class Recorder:
    """A transport factory: each transport sends through the one `inner` makes and keeps every
    request and reply (a streamed body as it was read), in the order the exchanges end."""

    def __init__(self, inner: TransportFactory) -> None:
        self._inner = inner
        self.exchanges: list[Exchange] = []

    def __call__(self, settings: ClientSettings) -> Transport:
        return _Recording(self._inner(settings), self.exchanges)


class _Recording:
    def __init__(self, inner: Transport, exchanges: list[Exchange]) -> None:
        self._inner = inner
        self._exchanges = exchanges

    def _keep(self, request: PreparedRequest, status: int, headers: Mapping[str, str], body: bytes) -> None:
        # the body was decompressed on the way in: its content-encoding no longer applies
        kept = [(k, v) for k, v in headers.items() if k.lower() != "content-encoding"]
        self._exchanges.append(Exchange(request, status, kept, body))

    async def send(self, request: PreparedRequest) -> Reply:
        reply = await self._inner.send(request)
        self._keep(request, reply.status, reply.headers, reply.body)
        return reply

    @asynccontextmanager
    async def stream(self, request: PreparedRequest) -> AsyncIterator[StreamingReply]:
        async with self._inner.stream(request) as reply:
            kept = _Kept(reply)
            try:
                yield kept
            finally:
                self._keep(request, reply.status, reply.headers, b"".join(kept.parts))

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Kept:
    """A streamed reply whose chunks are kept as they are read."""

    def __init__(self, reply: StreamingReply) -> None:
        self._reply = reply
        self.status, self.headers = reply.status, reply.headers
        self.parts: list[bytes] = []

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        reads = EventReads(self.headers.get("content-type", ""))  # one event a read, as the replay serves them
        async with contextlib.aclosing(self._reply.chunks()) as chunks:
            async for chunk in chunks:
                self.parts.append(chunk)
                for piece in reads.split(chunk):
                    yield piece
        if rest := reads.rest():
            yield rest

    async def read(self) -> bytes:
        body = await self._reply.read()
        self.parts.append(body)
        return body


async def record(
    dirs: Sequence[str | Path], env: Mapping[str, str], model: str, prompt: str, params: Mapping[str, Any],
    stream: bool = False, name: str = "recorded", transport: TransportOption = None,
) -> dict[str, Any]:
    """Make one real call and return it as contract data, every secret masked."""
    catalog, problems = load_catalog(dirs, env)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ConfigurationError(errors)
    recorder = Recorder(transport_factory(transport))
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
    }
    used_vars = {v: env[v] for var in provider.vars.values() for v in var.env if env.get(v)}
    if used_vars:  # non-secret by declaration; the replay needs them
        data["env"] = used_vars
    data["call"] = call
    exchanges = recorder.exchanges
    first = 1 if takes_token(provider.auth) and len(exchanges) > 1 else 0
    if first:
        data["token_request"] = _recorded_request(exchanges[0].request, provider, {})
    data["request"] = _recorded_request(exchanges[first].request, provider, env)
    if len(exchanges) > first + 1 and config.kind == "image":
        later = _recorded_request(exchanges[-1].request, provider, env)
        data["poll_request"] = {k: later[k] for k in ("method", "path", "headers") if k in later}
    static = _redactor(catalog, env)
    engine = router._engine.redact  # every key, token, assertion and AWS key the router actually used

    def redact(text: str) -> str:
        return engine(static(text))

    data["replies"] = [_recorded_reply(x, redact) for x in exchanges]
    data["expect"] = _recorded_expect(outcome, len(exchanges))
    return cast(dict[str, Any], _redacted(data, redact))


def _redactor(catalog: Catalog, env: Mapping[str, str]) -> Redactor:
    """Every secret a call could send: each provider's `auth.env`, each deployment's own `key_env`, and
    the `user:password@` of a base URL (a provider's or a deployment's override, or the file's own)."""
    names = {p.auth.env for p in catalog.providers.values() if p.auth is not None and p.auth.env}
    names |= {d.key_env for m in catalog.models.values() for d in m.deployments if d.key_env}
    redactor = Redactor(Secret(env[name]) for name in sorted(names) if env.get(name))
    urls = [p.base_url for p in catalog.providers.values()]
    urls += [env.get(n, "") for n in {p.base_url_env for p in catalog.providers.values()}
             | {d.base_url_env for m in catalog.models.values() for d in m.deployments} if n]
    for url in urls:
        redactor.add_url(url)
    return redactor


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, redact) for v in value]
    return value


def _recorded_request(request: PreparedRequest, provider: ProviderConfig, env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"method": request.method.upper(), "path": _config_path(urlsplit(request.url).path, provider, env)}
    query = sent_query(request)
    if query:
        out["query"] = query
    masked = {k.lower(): v for k, v in display_headers(provider.auth).items()}  # a token or a signature: masked whole
    # a signature's date and session token change with every request: not part of a contract
    skip = _NOISE_HEADERS | (SIGV4_HEADERS - masked.keys() if provider.auth and provider.auth.aws_sigv4 else frozenset())
    headers = {k.lower(): masked.get(k.lower(), v) for k, v in request.headers.items() if k.lower() not in skip}
    if headers:
        out["headers"] = headers
    if {k.lower(): v for k, v in request.headers.items()}.get("content-type") == "application/x-www-form-urlencoded" \
            and request.content:  # a token request
        out["body"] = dict(parse_qsl(request.content.decode(errors="replace"), keep_blank_values=True))
    elif request.content:
        with contextlib.suppress(ValueError):  # a body that is not JSON (multipart) is not recorded
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


def _recorded_reply(exchange: Exchange, redact: Callable[[str], str]) -> dict[str, Any]:
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
            text = _printable(exchange.content)
            if text is not None:
                reply["text"] = text
            else:  # binary (an AWS event stream): kept byte for byte, as base64 of its bytes with any secret masked
                masked = redact(exchange.content.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
                reply["base64"] = base64.b64encode(masked).decode("ascii")
    keep = {k: v for k, v in headers.items() if k == "content-type" or k.startswith("retry-after")}
    if keep:
        reply["headers"] = keep
    return reply


def _printable(content: bytes) -> str | None:
    """The body as text, when it is UTF-8 of printable characters and line breaks (so YAML keeps it as is)."""
    try:
        text = content.decode()
    except UnicodeDecodeError:
        return None
    return text if all(c.isprintable() or c in "\t\n\r" for c in text) else None


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
