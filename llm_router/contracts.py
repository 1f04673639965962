"""Provider contracts: recorded exchanges replayed offline through the real engine.

A contract file (`providers.d/contracts/*.yaml` beside the provider files of any config dir,
schema `schemas/contract.schema.json`) holds one call, the requests it must send, the provider's
replies, and what the router must return. `llm-router test` replays each through an in-memory
transport: the requests are compared, the replies are served in order, and the result is
compared. Nothing touches the network. `llm-router record` writes one from a real call.
Contracts are never loaded by `Router.from_dir`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2

from .config.load import Doc, parse_yaml
from .config.model import Catalog, Limits, ProviderConfig
from .errors import Problem, RouterError
from .secrets import MASK, Redactor, Secret

REPLAY_KEY = "sk-contract-replay-key-000"
REPLY_BODIES = ("body", "text", "sse")
SUCCESS_FIELDS = ("content", "content_kind", "finish_reason", "usage", "cost", "chunks")


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
    diffs: list[str] = field(default_factory=list)
    seconds: float = 0.0

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
    from .config.schema import check

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
            found_here = check(doc, "contract")
            if not found_here:
                found_here = _check_shape(doc)
            if not found_here and catalog is not None:
                found_here = _check_refs(doc, catalog)
            problems += found_here
            if found_here:
                continue
            contract = Contract(data["name"], str(path), doc.where(())[1], data)
            if contract.name in in_this_dir:
                file, line = doc.where(("name",))
                problems.append(Problem(file, line, f"contract name {contract.name!r} is already used by "
                                                    f"{in_this_dir[contract.name].file}; names must be unique"))
                continue
            in_this_dir[contract.name] = found[contract.name] = contract
    return list(found.values()), problems


def _check_shape(doc: Doc) -> list[Problem]:
    """What the schema cannot say plainly: one body per reply, messages or a prompt, success or error."""
    data = doc.data
    problems = []
    for i, reply in enumerate(data["replies"]):
        given = [k for k in REPLY_BODIES if k in reply]
        if len(given) != 1:
            file, line = doc.where(("replies", i))
            got = f"got {', '.join(given)}" if given else "got none"
            problems.append(Problem(file, line, f"replies[{i}]: give exactly one of body, text, sse ({got})"))
    call = data["call"]
    if "messages" not in call and "prompt" not in call:
        file, line = doc.where(("call",))
        problems.append(Problem(file, line, "call: give messages (chat) or prompt (image)"))
    expect = data["expect"]
    if "error" in expect:
        clash = [k for k in SUCCESS_FIELDS if k in expect]
        if clash:
            file, line = doc.where(("expect", clash[0]))
            problems.append(Problem(file, line, f"expect: {', '.join(clash)} cannot be used with error "
                                                "(a call either succeeds or raises)"))
    if "chunks" in expect and not call.get("stream"):
        file, line = doc.where(("expect", "chunks"))
        problems.append(Problem(file, line, "expect.chunks needs call.stream: true"))
    return problems


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


def replay_env(catalog: Catalog) -> dict[str, str]:
    return {p.auth.env: REPLAY_KEY for p in catalog.providers.values() if p.auth is not None}


class _Replay:
    """Serves the recorded replies in order (the last one repeats) and keeps every request."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = replies
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        headers = dict(reply.get("headers", {}))
        status = reply.get("status", 200)
        if "sse" in reply:
            headers.setdefault("content-type", "text/event-stream")
            return httpx2.Response(status, headers=headers, content=sse_text(reply["sse"]).encode())
        if "text" in reply:
            return httpx2.Response(status, headers=headers, content=reply["text"].encode())
        return httpx2.Response(status, headers=headers, json=reply["body"])


def sse_text(events: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for event in events:
        data = event["data"]
        text = data if isinstance(data, str) else json.dumps(data)
        lines.append((f"event: {event['event']}\n" if "event" in event else "") + f"data: {text}\n\n")
    return "".join(lines)


async def _call(router: Any, call: Mapping[str, Any]) -> dict[str, Any]:
    """Make the contract's call; return what the router gave back (or the error it raised)."""
    kwargs = dict(call.get("params", {}))
    if "prompt" in call:
        kwargs["prompt"] = call["prompt"]
    outcome: dict[str, Any] = {}
    try:
        if call.get("stream"):
            chunks = []
            async for chunk in router.stream(call["model"], call.get("messages"), **kwargs):
                if chunk.is_final:
                    outcome.update(finish_reason=chunk.finish_reason, usage=chunk.usage, cost=chunk.cost)
                else:
                    chunks.append(chunk.delta)
            outcome.update(chunks=chunks, content="".join(chunks), content_kind="text")
        else:
            response = await router.query(call["model"], call.get("messages"), **kwargs)
            outcome.update(content=response.content, content_kind=response.content_kind,
                           finish_reason=response.finish_reason, usage=response.usage, cost=response.cost)
    except RouterError as exc:
        outcome["error"] = exc
    return outcome


async def run_contract(contract: Contract, catalog: Catalog) -> ContractResult:
    """Replay one contract; `catalog` should come from `replay_catalog`."""
    from .router import Router

    started = time.perf_counter()
    result = ContractResult(contract)
    replay = _Replay(contract.data["replies"])
    try:
        router = Router(catalog, replay_env(catalog), transport=httpx2.MockTransport(replay))
        async with router:
            async with asyncio.timeout(10):  # a contract that loops (a Pending repeated forever) must not hang CI
                outcome = await _call(router, contract.data["call"])
    except Exception as exc:  # noqa: BLE001 — a crash below the router's error hierarchy fails this contract, not the run
        result.diffs.append(f"the call crashed with {type(exc).__name__}: {exc}")
        result.seconds = time.perf_counter() - started
        return result
    data, sent = contract.data, replay.requests
    if "request" in data:
        result.diffs += _request_diffs("request", data["request"], sent[0]) if sent else ["request: nothing was sent"]
    if "poll_request" in data:
        if len(sent) < 2:
            result.diffs.append(f"poll_request: expected requests after the first, but {len(sent)} was sent")
        for i, request in enumerate(sent[1:], start=1):
            result.diffs += _request_diffs(f"requests[{i}]", data["poll_request"], request)
    result.diffs += _outcome_diffs(data["expect"], outcome, len(sent))
    result.seconds = time.perf_counter() - started
    return result


async def run_contracts(contracts: Sequence[Contract], catalog: Catalog) -> list[ContractResult]:
    catalog = replay_catalog(catalog)
    return [await run_contract(c, catalog) for c in contracts]


def replay_dirs(dirs: Sequence[str | Path], provider: str | None = None) -> ReplayReport:
    """Load the catalog and the contracts of `dirs` (layered) and replay every contract."""
    from .config import load_catalog

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


def _request_diffs(where: str, expected: Mapping[str, Any], request: httpx2.Request) -> list[str]:
    diffs = []
    url = urlsplit(str(request.url))
    if "method" in expected and expected["method"].upper() != request.method:
        diffs.append(f"{where}.method: expected {expected['method']}, got {request.method}")
    if "path" in expected and expected["path"] != url.path:
        diffs.append(f"{where}.path: expected {expected['path']}, got {url.path}")
    if "query" in expected:
        got_query = dict(parse_qsl(url.query, keep_blank_values=True))
        want_query = {k: v.replace(MASK, REPLAY_KEY) for k, v in expected["query"].items()}
        if got_query != want_query:
            diffs.append(f"{where}.query: expected {_masked(want_query)}, got {_masked(got_query)}")
    for name, value in expected.get("headers", {}).items():
        got = request.headers.get(name)
        if got != value.replace(MASK, REPLAY_KEY):
            diffs.append(f"{where}.headers.{name}: expected {value!r}, got {_masked(got)!r}")
    if "body" in expected:
        try:
            body = json.loads(request.content) if request.content else None
        except ValueError:
            body = request.content.decode(errors="replace")
        diffs += _value_diffs(f"{where}.body", expected["body"], body)
    return diffs


def _masked(value: Any) -> Any:
    return json.loads(json.dumps(value).replace(REPLAY_KEY, MASK)) if value is not None else None


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
        return [d for i, (e, g) in enumerate(zip(expected, got)) for d in _value_diffs(f"{where}[{i}]", e, g)]
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
    for key in ("content", "content_kind", "finish_reason", "chunks"):
        if key in expect and expect[key] != outcome.get(key):
            diffs.append(f"{key}: expected {_short(expect[key], 100)}, got {_short(outcome.get(key), 100)}")
    usage = outcome.get("usage")
    for key, value in expect.get("usage", {}).items():
        got = getattr(usage, key, None)
        if got != value:
            diffs.append(f"usage.{key}: expected {value}, got {got}")
    if "cost" in expect:
        want_cost, got_cost = expect["cost"], outcome.get("cost")
        if (want_cost is None) != (got_cost is None) or (
            want_cost is not None and got_cost is not None and not math.isclose(want_cost, got_cost, abs_tol=1e-9)
        ):
            diffs.append(f"cost: expected {want_cost}, got {got_cost}")
    return diffs


# --- recording ------------------------------------------------------------------------------------------

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
    from .config import load_catalog
    from .errors import ConfigurationError
    from .router import Router

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
        outcome = await _call(router, call)
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
    return _redacted(data, _redactor(catalog, env))


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
        try:
            out["body"] = json.loads(request.content)
        except ValueError:
            pass
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


def dump_contract(data: Mapping[str, Any]) -> str:
    import yaml

    header = "# yaml-language-server: $schema=../../schemas/contract.schema.json\n"
    return header + yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=120)
