"""Provider contracts: recorded exchanges replayed offline through the real engine.

A contract file (`providers.d/contracts/*.yaml` beside the provider files of any config dir,
schema `schemas/contract.schema.json`) holds one call, the requests it must send, the provider's
replies, and what the router must return. `llm-router test` replays each through an in-memory
transport (the engine's seam, `engine/transport.py`): the requests are compared, the replies are
served in order, and the result is compared. Nothing touches the network. `recording.py` writes one from a real call.
Contracts are never loaded by `Router.from_dir`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import email.parser
import email.policy
import functools
import json
import math
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from multidict import CIMultiDict

from .config import load_catalog
from .config.load import Doc, parse_yaml
from .config.model import Catalog, Limits, ProviderConfig
from .config.schema import check
from .errors import Problem, RouterError
from .types import (
    CostBreakdown,
    EmbeddingResponse,
    RerankResponse,
    SpeechResponse,
    ToolCall,
    TranscriptionResponse,
    VideoResponse,
)

if TYPE_CHECKING:  # `validate` imports this module: it must not load the router or the engine
    from .engine.request import PreparedRequest
    from .engine.transport import ClientSettings, Reply
    from .router import Router

REPLAY_KEY = "sk-contract-replay-key-000"
REPLAY_AWS_KEY_ID = "AKIACONTRACTREPLAY00"
REPLY_BODIES = ("body", "text", "sse", "base64")
SUCCESS_FIELDS = ("content", "content_kind", "finish_reason", "native_finish_reason", "tool_calls", "message",
                  "reasoning", "usage", "cost", "cost_breakdown", "chunks", "tool_call_deltas", "media_type", "id", "extra")
CALL_INPUTS = ("messages", "prompt", "input", "query", "text", "file")  # what a call gives, by kind
STREAM_ONLY_FIELDS = ("chunks", "tool_call_deltas")
CALL_OPTIONS = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "prompt_cache")  # router keyword args, not params
COST_PARTS = ("input", "cached_input", "cache_write", "output", "reasoning", "fees")  # CostBreakdown's fields


@dataclass
class Contract:
    name: str
    file: str
    line: int
    data: dict[str, Any]

    @property
    def provider(self) -> str:
        return str(self.data["provider"])


@dataclass
class ContractResult:
    contract: Contract
    diffs: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.diffs


@dataclass
class ReplayReport:
    """What `llm-router test` found: config problems (which fail the run) and one result per contract."""

    results: list[ContractResult]
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors and all(r.ok for r in self.results)


# --- loading and checking -----------------------------------------------------------------------------


def contract_files(directory: Path) -> list[Path]:
    folder = directory / "providers.d" / "contracts"
    return sorted([*folder.glob("**/*.yaml"), *folder.glob("**/*.yml")])


def load_contracts(dirs: Iterable[str | Path], catalog: Catalog | None) -> tuple[list[Contract], list[Problem]]:
    """Parse and check every contract file; a later dir's contract replaces one of the same name.

    `catalog` None skips the checks against providers and models (the catalog itself is broken,
    and every contract would repeat that)."""
    problems: list[Problem] = []
    found: dict[str, Contract] = {}
    for directory in dirs:
        in_this_dir: dict[str, Contract] = {}
        for path in contract_files(Path(directory)):
            parsed = parse_yaml(path, problems)
            if parsed is None:
                continue
            data, marks = parsed
            doc = Doc(str(path), data, str(path), marks)
            found_here = check(doc, "contract") or _check_shape(doc) or (
                _check_refs(doc, catalog) if catalog is not None else [])
            if found_here:
                problems += found_here
                continue
            contract = Contract(data["name"], str(path), doc.where()[1], data)
            if contract.name in in_this_dir:
                file, line = doc.where(("name",))
                problems.append(Problem(file, line, f"contract name {contract.name!r} is already used by "
                                                    f"{in_this_dir[contract.name].file}; names must be unique"))
                continue
            in_this_dir[contract.name] = found[contract.name] = contract
    return list(found.values()), problems


def check_dirs(dirs: Sequence[str | Path], env: Mapping[str, str]) -> tuple[list[Problem], int]:
    """What `llm-router validate` reports: every problem of the config and its contracts, and the
    number of files read."""
    catalog, problems = load_catalog(dirs, env)
    broken = any(p.severity == "error" for p in problems)
    _, contract_problems = load_contracts(dirs, None if broken else catalog)
    files = len(catalog.files) + sum(len(contract_files(Path(d))) for d in dirs)
    return problems + contract_problems, files


def _check_shape(doc: Doc) -> list[Problem]:
    """What the schema cannot say plainly: one body per reply, messages or a prompt, success or error."""
    data = doc.data
    problems = []
    for i, reply in enumerate(data["replies"]):
        given = [k for k in REPLY_BODIES if k in reply]
        if len(given) != 1:
            file, line = doc.where(("replies", i))
            got = f"got {', '.join(given)}" if given else "got none"
            problems.append(Problem(file, line, f"replies[{i}]: give exactly one of {', '.join(REPLY_BODIES)} ({got})"))
        elif given == ["base64"]:
            try:
                _binary_body(reply["base64"])
            except binascii.Error as exc:
                file, line = doc.where(("replies", i, "base64"))
                problems.append(Problem(file, line, f"replies[{i}].base64 is not base64 ({exc}); encode the body's bytes "
                                                    "with RFC 4648's alphabet (A-Z a-z 0-9 + /) and = padding"))
    call = data["call"]
    if not any(k in call for k in CALL_INPUTS) or ("query" in call) != ("documents" in call):
        file, line = doc.where(("call",))
        problems.append(Problem(file, line, "call: give messages (chat), prompt (image, video), input (embed), "
                                            "query and documents (rerank), text (speech) or file (transcribe)"))
    expect = data["expect"]
    if "error" in expect:
        clash = [k for k in SUCCESS_FIELDS if k in expect]
        if clash:
            file, line = doc.where(("expect", clash[0]))
            problems.append(Problem(file, line, f"expect: {', '.join(clash)} cannot be used with error "
                                                "(a call either succeeds or raises)"))
    for key in STREAM_ONLY_FIELDS:
        if key in expect and not call.get("stream"):
            file, line = doc.where(("expect", key))
            problems.append(Problem(file, line, f"expect.{key} needs call.stream: true"))
    return problems


def _binary_body(text: str) -> bytes:
    """A `base64:` reply body's bytes (whitespace, as a folded YAML string may hold, is ignored)."""
    return base64.b64decode("".join(text.split()), validate=True)


def _check_refs(doc: Doc, catalog: Catalog) -> list[Problem]:
    data = doc.data
    name, provider_name = data["name"], data["provider"]
    provider = catalog.providers.get(provider_name)
    if provider is None or provider.abstract:
        file, line = doc.where(("provider",))
        known = ", ".join(sorted(n for n, p in catalog.providers.items() if not p.abstract))
        return [Problem(file, line, f"contract {name!r} names unknown provider {provider_name!r}; known: {known}")]
    model = data["call"]["model"]
    model_config = catalog.models.get(model)
    owner = model_config.provider if model_config else model.partition("/")[0] if "/" in model else None
    file, line = doc.where(("call", "model"))
    if owner is None:
        return [Problem(file, line, f"contract {name!r} calls unknown model {model!r}")]
    if owner != provider_name:
        return [Problem(file, line, f"contract {name!r} is for provider {provider_name!r}, but model {model!r} "
                                    f"is served by {owner!r}")]
    kind = model_config.kind if model_config else None
    if kind is not None and kind not in provider.operations:
        return [Problem(file, line, f"provider {provider_name!r} has no {kind!r} operation for model {model!r}")]
    return []


# --- replay -------------------------------------------------------------------------------------------


def replay_catalog(catalog: Catalog) -> Catalog:
    """The same catalog with every wait and every fallback removed: a contract tests one
    provider, and timing is not part of it."""
    providers: dict[str, ProviderConfig] = {}
    for name, provider in catalog.providers.items():
        retry = dataclasses.replace(
            provider.errors.retry,
            backoff=dataclasses.replace(provider.errors.retry.backoff, initial_s=0, max_s=0),
            retry_after=(),
        )
        operations = {}
        for kind, op in provider.operations.items():
            poll = dataclasses.replace(op.poll, interval_s=0, backoff=None) if op.poll else None
            operations[kind] = dataclasses.replace(op, poll=poll)
        providers[name] = dataclasses.replace(
            provider, errors=dataclasses.replace(provider.errors, retry=retry), operations=operations
        )
    models = {n: dataclasses.replace(m, fallbacks=(), limits=Limits()) for n, m in catalog.models.items()}
    return dataclasses.replace(catalog, providers=providers, models=models)


class _Replay:
    """A transport for every provider: serves the recorded replies in order (the last one repeats)
    and keeps every request."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = replies
        self.requests: list[PreparedRequest] = []

    def __call__(self, settings: ClientSettings) -> _Replay:
        return self

    async def send(self, request: PreparedRequest) -> Reply:
        from .engine.transport import Reply

        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        headers = CIMultiDict(reply.get("headers", {}))
        if "sse" in reply:
            headers.setdefault("content-type", "text/event-stream")
            body = _sse_text(reply["sse"]).encode()
        elif "text" in reply:
            body = reply["text"].encode()
        elif "base64" in reply:
            body = _binary_body(reply["base64"])
        else:
            headers.setdefault("content-type", "application/json")
            body = json.dumps(reply["body"], ensure_ascii=False, separators=(",", ":")).encode()
        return Reply(reply.get("status", 200), headers, body)

    @asynccontextmanager
    async def stream(self, request: PreparedRequest) -> AsyncIterator[_Served]:
        yield _Served(await self.send(request))

    async def aclose(self) -> None:
        return None


class _Served:
    """A replayed reply, read as a stream, one event a read (see EventReads)."""

    def __init__(self, reply: Reply) -> None:
        self.status, self.headers, self._body = reply.status, reply.headers, reply.body

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        reads = EventReads(self.headers.get("content-type", ""))
        for piece in [*reads.split(self._body), reads.rest()]:
            if piece:
                yield piece

    async def read(self) -> bytes:
        return self._body


class EventReads:
    """A stream's bytes cut where its events end (after each line; after each message of an AWS
    event stream), so each read holds one event at most, as a provider flushes them. Replay and
    `llm-router record` read streams this way, so a recorded stream's chunks replay as they were
    recorded, however the network happened to group them."""

    def __init__(self, content_type: str) -> None:
        from .engine.framing import MEDIA_TYPES  # the engine, only once a stream is replayed (`validate` reads contracts)

        self._binary = content_type.partition(";")[0].strip().lower() in MEDIA_TYPES["aws_eventstream"]
        self._pending = b""

    def split(self, chunk: bytes) -> list[bytes]:
        if not self._binary:
            return chunk.splitlines(keepends=True)  # a line cut short ends, and its event with it, in a later read
        pending, reads = self._pending + chunk, []
        while len(pending) >= 4 and len(pending) >= (length := int.from_bytes(pending[:4], "big") or len(pending)):
            reads.append(pending[:length])  # a message's prelude leads with its length
            pending = pending[length:]
        self._pending = pending
        return reads

    def rest(self) -> bytes:
        """What no whole message holds, at the body's end."""
        return self._pending


def _sse_text(events: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for event in events:
        data = event["data"]
        text = data if isinstance(data, str) else json.dumps(data)
        lines.append((f"event: {event['event']}\n" if "event" in event else "") + f"data: {text}\n\n")
    return "".join(lines)


async def make_call(router: Router, call: Mapping[str, Any]) -> dict[str, Any]:
    """Make a contract's call; return what the router gave back (or the error it raised).

    A stream's outcome holds its text deltas (`chunks`, the empty deltas of tool-call-only chunks
    left out), its tool-call fragments (`tool_call_deltas`), and what its last chunk carries."""
    kwargs = dict(call.get("params", {}))
    kwargs.update({k: call[k] for k in CALL_OPTIONS if k in call})
    if "prompt" in call:
        kwargs["prompt"] = call["prompt"]
    outcome: dict[str, Any] = {}
    try:
        operation = _operation_call(router, call, call.get("params", {}))
        if operation is not None:
            outcome.update(_operation_outcome(await operation))
        elif call.get("stream"):
            chunks: list[str] = []
            deltas: list[dict[str, Any]] = []
            reasoning: list[str] = []
            async for chunk in router.stream(call["model"], call.get("messages"), **kwargs):
                if chunk.is_final:
                    outcome.update(finish_reason=chunk.finish_reason, native_finish_reason=chunk.native_finish_reason,
                                   usage=chunk.usage, cost=chunk.cost, cost_breakdown=chunk.cost_breakdown,
                                   tool_calls=chunk.tool_calls, message=chunk.message)
                    continue
                if chunk.delta:
                    chunks.append(chunk.delta)
                if chunk.reasoning_delta:
                    reasoning.append(chunk.reasoning_delta)
                deltas += [{"index": d.index, "id": d.id, "name": d.name, "arguments": d.arguments}
                           for d in chunk.tool_call_deltas]
            outcome.update(chunks=chunks, content="".join(chunks), content_kind="text", tool_call_deltas=deltas,
                           reasoning="".join(reasoning) if reasoning else None)
        else:
            response = await router.query(call["model"], call.get("messages"), **kwargs)
            content = response.content
            outcome.update(content=base64.b64encode(content).decode() if isinstance(content, bytes) else content,
                           content_kind=response.content_kind, media_type=response.media_type, id=response.id,
                           extra=response.extra,
                           finish_reason=response.finish_reason, native_finish_reason=response.native_finish_reason,
                           usage=response.usage, cost=response.cost, cost_breakdown=response.cost_breakdown,
                           tool_calls=response.tool_calls, message=response.message, reasoning=response.reasoning)
    except RouterError as exc:
        outcome["error"] = exc
    return outcome


def _operation_call(router: Router, call: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    """The call of a kind other than chat and image (by the input it gives), or None."""
    model = call["model"]
    if "input" in call:
        return router.embed(model, call["input"], **params)
    if "query" in call:
        return router.rerank(model, call["query"], call["documents"], **params)
    if "text" in call:
        return router.speak(model, call["text"], **params)
    if "file" in call:
        file = call["file"]
        return router.transcribe(model, base64.b64decode(file["base64"]), filename=file.get("filename"),
                                 media_type=file.get("media_type"), **params)
    known = router.models.get(model)
    if "prompt" in call and known is not None and known.kind == "video":
        return router.generate_video(model, call["prompt"], **params)
    return None


def _operation_outcome(response: Any) -> dict[str, Any]:
    """A typed response's result in the contract's terms: `content`, `content_kind`, `media_type`."""
    content: Any
    if isinstance(response, EmbeddingResponse):
        content, kind = response.vectors, "vectors"
    elif isinstance(response, RerankResponse):
        content, kind = [{"index": r.index, "score": r.score} for r in response.ranking], "ranking"
    elif isinstance(response, SpeechResponse):
        content, kind = base64.b64encode(response.audio).decode(), "bytes"
    elif isinstance(response, TranscriptionResponse):
        content, kind = response.text, "text"
    else:
        assert isinstance(response, VideoResponse)
        url = response.url
        content, kind = (url, "url") if url is not None else (base64.b64encode(response.video or b"").decode(), "bytes")
    return dict(content=content, content_kind=kind, media_type=getattr(response, "media_type", None), usage=response.usage,
                cost=response.cost, cost_breakdown=response.cost_breakdown, id=response.id, extra=response.extra)


async def run_contract(contract: Contract, catalog: Catalog) -> ContractResult:
    """Replay one contract; `catalog` should come from `replay_catalog`."""
    started = time.perf_counter()
    diffs = await _replay_diffs(contract.data, catalog)
    return ContractResult(contract, diffs, time.perf_counter() - started)


async def _replay_diffs(data: Mapping[str, Any], catalog: Catalog) -> list[str]:
    from .engine.auth import display_headers
    from .router import Router

    replay = _Replay(data["replies"])
    with tempfile.TemporaryDirectory(prefix="llm-router-replay-") as scratch:
        env = {**replay_credentials(catalog, Path(scratch)), **data.get("env", {})}
        try:
            async with Router(catalog, env, transport=replay) as router:
                async with asyncio.timeout(10):  # a contract that loops (a Pending repeated forever) must not hang CI
                    outcome = await make_call(router, data["call"])
        except Exception as exc:  # a crash below the router's error hierarchy fails this contract, not the run
            return [f"the call crashed with {type(exc).__name__}: {exc}"]
    mask = _Mask(router._engine.redact, display_headers(catalog.providers[data["provider"]].auth))
    sent = replay.requests
    diffs = []
    first = 0
    if "token_request" in data:
        diffs += _request_diffs("token_request", data["token_request"], sent[0], mask) if sent else ["token_request: nothing was sent"]
        first = 1
    if "request" in data:
        diffs += _request_diffs("request", data["request"], sent[first], mask) if len(sent) > first else ["request: nothing was sent"]
    if "poll_request" in data:
        if len(sent) < first + 2:
            diffs.append(f"poll_request: expected requests after the first, but {len(sent) - first} was sent")
        for i, request in enumerate(sent[first + 1:], start=first + 1):
            diffs += _request_diffs(f"requests[{i}]", data["poll_request"], request, mask)
    return diffs + _outcome_diffs(data["expect"], outcome, len(sent))


def replay_credentials(catalog: Catalog, scratch: Path) -> dict[str, str]:
    """Every credential the catalog's providers read, set to a replay value: keys and client secrets,
    AWS keys, and a throwaway service-account key file (written in `scratch`)."""
    env: dict[str, str] = {}
    for provider in catalog.providers.values():
        auth = provider.auth
        if auth is None:
            continue
        if auth.env:
            env[auth.env] = REPLAY_KEY
        if auth.aws_sigv4 is not None:
            env.update(AWS_ACCESS_KEY_ID=REPLAY_AWS_KEY_ID, AWS_SECRET_ACCESS_KEY=REPLAY_KEY)
        if auth.google_service_account is not None:
            path = scratch / "service-account.json"
            if not path.exists():
                path.write_text(json.dumps(_replay_service_account()), encoding="utf-8")
            env[auth.google_service_account.credentials_env] = str(path)
    return env


@functools.cache
def _replay_service_account() -> dict[str, str]:
    """A service-account key made up for replays (one RSA key per process), with Google's token_uri."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {"type": "service_account", "client_email": "contract-replay@replay.iam.gserviceaccount.com",
            "private_key": pem.decode(), "token_uri": "https://oauth2.googleapis.com/token"}


@dataclass(frozen=True)
class _Mask:
    """A request's values as a contract states them: secrets the router knew masked, and the
    credential headers of a token or a signature masked whole."""

    redact: Callable[[str], str]
    credential_headers: Mapping[str, str]

    def header(self, name: str, value: str | None) -> str | None:
        if value is None:
            return None
        shown = next((v for k, v in self.credential_headers.items() if k.lower() == name.lower()), None)
        return shown if shown is not None else self.redact(value)


async def run_contracts(contracts: Sequence[Contract], catalog: Catalog) -> list[ContractResult]:
    catalog = replay_catalog(catalog)
    return [await run_contract(c, catalog) for c in contracts]


def replay_dirs(dirs: Sequence[str | Path], provider: str | None = None) -> ReplayReport:
    """Load the catalog and the contracts of `dirs` (layered) and replay every contract."""
    catalog, problems = load_catalog(dirs, {})
    problems = [p for p in problems if p.severity == "error"]  # unset keys do not matter here
    contracts, contract_problems = load_contracts(dirs, None if problems else catalog)
    problems += contract_problems
    if provider is not None:
        contracts = [c for c in contracts if c.provider == provider]
    if problems:
        return ReplayReport([], problems)
    return ReplayReport(asyncio.run(run_contracts(contracts, catalog)), [])


# --- comparing ------------------------------------------------------------------------------------------


def sent_query(request: PreparedRequest) -> dict[str, str]:
    """Every query parameter a request sends: those in its URL and those the engine adds (a key)."""
    return {**dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True)), **request.query}


def _request_diffs(where: str, expected: Mapping[str, Any], request: PreparedRequest, mask: _Mask) -> list[str]:
    """Only the parts the contract gives; values compared as masked (a key or token is `***`)."""
    diffs = []
    path = urlsplit(request.url).path
    method = request.method.upper()
    if "method" in expected and expected["method"].upper() != method:
        diffs.append(f"{where}.method: expected {expected['method']}, got {method}")
    if "path" in expected and expected["path"] != path:
        diffs.append(f"{where}.path: expected {expected['path']}, got {path}")
    if "query" in expected:
        got_query = {k: mask.redact(v) for k, v in sent_query(request).items()}
        if got_query != expected["query"]:
            diffs.append(f"{where}.query: expected {expected['query']}, got {got_query}")
    headers = CIMultiDict(request.headers)
    for name, value in expected.get("headers", {}).items():
        got = mask.header(name, headers.get(name))
        if got != value:
            diffs.append(f"{where}.headers.{name}: expected {value!r}, got {got!r}")
    if "body" in expected:
        diffs += _value_diffs(f"{where}.body", expected["body"], _body(request, mask))
    return diffs


def _body(request: PreparedRequest, mask: _Mask) -> Any:
    """The request's body as a contract gives it: JSON as it is; multipart and form bodies as their
    fields (a repeated one as a list, a secret the router knew masked), a file part as
    {filename, media_type, bytes}."""
    content = request.content or b""
    content_type = CIMultiDict(request.headers).get("content-type", "")
    fields: list[tuple[str, Any]] | None = None
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + content)
        fields = []
        for part in message.iter_parts():
            data = part.get_payload(decode=True)
            assert isinstance(data, bytes)
            name, filename = str(part.get_param("name", header="content-disposition")), part.get_filename()
            fields.append((name, mask.redact(data.decode("utf-8", "replace")) if filename is None else
                           {"filename": filename, "media_type": part.get_content_type(), "bytes": len(data)}))
    elif content_type.startswith("application/x-www-form-urlencoded"):
        fields = [(k, mask.redact(v)) for k, v in parse_qsl(content.decode(errors="replace"), keep_blank_values=True)]
    if fields is not None:
        grouped: dict[str, Any] = {}
        for name, value in fields:
            grouped[name] = [*grouped[name], value] if isinstance(grouped.get(name), list) else (
                [grouped[name], value] if name in grouped else value)
        return grouped
    try:
        return json.loads(content) if content else None
    except ValueError:
        return content.decode(errors="replace")


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value_diffs(where: str, expected: Any, got: Any) -> list[str]:
    if isinstance(expected, dict) and isinstance(got, dict):
        diffs = []
        for key in sorted(expected.keys() | got.keys()):
            if key not in got:
                diffs.append(f"{where}.{key}: missing (expected {_short(expected[key])})")
            elif key not in expected:
                diffs.append(f"{where}.{key}: unexpected (got {_short(got[key])})")
            else:
                diffs += _value_diffs(f"{where}.{key}", expected[key], got[key])
        return diffs
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{where}: expected {len(expected)} item(s), got {len(got)}: {_short(got)}"]
        return [d for i, (e, g) in enumerate(zip(expected, got, strict=True)) for d in _value_diffs(f"{where}[{i}]", e, g)]
    if expected != got or (type(expected) is not type(got) and not (_number(expected) and _number(got))):
        return [f"{where}: expected {_short(expected)}, got {_short(got)}"]
    return []


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _outcome_diffs(expect: Mapping[str, Any], outcome: Mapping[str, Any], sent: int) -> list[str]:
    diffs = []
    if "requests" in expect and expect["requests"] != sent:
        diffs.append(f"requests: expected {expect['requests']} request(s), {sent} were sent")
    error = outcome.get("error")
    if "error" in expect:
        want = expect["error"]
        if error is None:
            return [*diffs, f"error: expected {want['type']}, but the call succeeded with {_short(outcome.get('content'))}"]
        names = {cls.__name__ for cls in type(error).__mro__}
        if want["type"] not in names:
            diffs.append(f"error: expected {want['type']}, got {type(error).__name__}: {error}")
        if "message_contains" in want and want["message_contains"] not in str(error):
            diffs.append(f"error.message: expected to contain {want['message_contains']!r}, got {str(error)!r}")
        for key in ("status", "kind"):
            if key in want and getattr(error, key, None) != want[key]:
                diffs.append(f"error.{key}: expected {want[key]!r}, got {getattr(error, key, None)!r}")
        return diffs
    if error is not None:
        return [*diffs, f"the call raised {type(error).__name__}: {error}"]
    for key in ("content", "content_kind", "finish_reason", "native_finish_reason", "reasoning", "chunks", "media_type", "id"):
        if key in expect and expect[key] != outcome.get(key):
            diffs.append(f"{key}: expected {_short(expect[key], 100)}, got {_short(outcome.get(key), 100)}")
    for name, value in expect.get("extra", {}).items():
        got = (outcome.get("extra") or {}).get(name)
        if value != got:
            diffs.append(f"extra.{name}: expected {_short(value)}, got {_short(got)}")
    if "tool_calls" in expect:
        diffs += _tool_call_diffs(expect["tool_calls"], outcome.get("tool_calls") or [])
    if "message" in expect:
        diffs += _message_diffs(expect["message"], outcome.get("message"))
    if "tool_call_deltas" in expect:
        diffs += _delta_diffs(expect["tool_call_deltas"], outcome.get("tool_call_deltas") or [])
    usage = outcome.get("usage")
    for key, value in expect.get("usage", {}).items():
        got = getattr(usage, key, None)
        if got != value:
            diffs.append(f"usage.{key}: expected {value}, got {got}")
    if "cost" in expect and not _same_cost(expect["cost"], outcome.get("cost")):
        diffs.append(f"cost: expected {expect['cost']}, got {outcome.get('cost')}")
    if "cost_breakdown" in expect:
        diffs += _breakdown_diffs(expect["cost_breakdown"], outcome.get("cost_breakdown"))
    return diffs


def _breakdown_diffs(expected: Mapping[str, float] | None, got: CostBreakdown | None) -> list[str]:
    """The cost by what was billed: only the parts the contract gives, each to 1e-9 like cost."""
    if expected is None and got is None:
        return []
    if expected is None or got is None:
        return [f"cost_breakdown: expected {_short(expected)}, got {_short(dataclasses.asdict(got)) if got else 'null'}"]
    return [f"cost_breakdown.{part}: expected {expected[part]}, got {getattr(got, part)}"
            for part in COST_PARTS if part in expected and not _same_cost(expected[part], getattr(got, part))]


def _tool_call_diffs(expected: Sequence[Mapping[str, Any]], got: Sequence[ToolCall]) -> list[str]:
    """Calls in order: the name, the id when the contract gives one, and the arguments as JSON
    (both sides parsed, so key order and whitespace do not matter; text that does not parse is
    compared as text)."""
    if len(expected) != len(got):
        names = [call.name for call in got]
        return [f"tool_calls: expected {len(expected)} call(s), got {len(got)}: {_short(names)}"]
    diffs = []
    for i, (want, call) in enumerate(zip(expected, got, strict=True)):
        where = f"tool_calls[{i}]"
        if want["name"] != call.name:
            diffs.append(f"{where}.name: expected {want['name']!r}, got {call.name!r}")
        if "id" in want and want["id"] != call.id:
            diffs.append(f"{where}.id: expected {want['id']!r}, got {call.id!r}")
        if "arguments" in want:
            want_args, got_args = _json_or_text(want["arguments"]), _json_or_text(call.arguments)
            diffs += _value_diffs(f"{where}.arguments", want_args, got_args)
    return diffs


def _json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # a contract may give the arguments as a mapping
    try:
        return json.loads(value) if value.strip() else {}
    except ValueError:
        return value


def _message_diffs(expected: Mapping[str, Any] | None, got: Mapping[str, Any] | None) -> list[str]:
    """The canonical assistant message: only the keys the contract gives are compared, each exactly."""
    if expected is None or got is None:
        return [] if expected is got else [f"message: expected {_short(expected)}, got {_short(got)}"]
    diffs = []
    for key, value in expected.items():
        if key not in got:
            diffs.append(f"message.{key}: missing (expected {_short(value)})")
        else:
            diffs += _value_diffs(f"message.{key}", value, got[key])
    return diffs


def _delta_diffs(expected: Sequence[Mapping[str, Any]], got: Sequence[Mapping[str, Any]]) -> list[str]:
    """The stream's tool-call fragments in order; in each, only the keys the contract gives are compared."""
    if len(expected) != len(got):
        return [f"tool_call_deltas: expected {len(expected)} fragment(s), got {len(got)}: {_short(got, 120)}"]
    diffs = []
    for i, (want, delta) in enumerate(zip(expected, got, strict=True)):
        for key, value in want.items():
            if value != delta.get(key):
                diffs.append(f"tool_call_deltas[{i}].{key}: expected {_short(value)}, got {_short(delta.get(key))}")
    return diffs


def _same_cost(want: float | None, got: float | None) -> bool:
    if want is None or got is None:
        return want is got
    return math.isclose(want, got, abs_tol=1e-9)
