"""Provider contracts: recorded exchanges replayed offline through the real engine.

A contract file (`providers.d/contracts/*.yaml` beside the provider files of any config dir, schema `schemas/contract.schema.json`)
holds one call, the request it must render, the provider's replies, and what the router must
return. `llm-router test` replays each through an in-memory transport: the request is compared,
the replies are served in order, and the result is compared. Nothing touches the network.
Contracts are never loaded by `Router.from_dir`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2

from .config.load import Doc, parse_yaml
from .config.model import Catalog, ProviderConfig
from .errors import Problem, RouterError
from .secrets import MASK

REPLAY_KEY = "sk-contract-replay-key-000"


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


def contract_files(directory: Path) -> list[Path]:
    folder = directory / "providers.d" / "contracts"
    return sorted([*folder.glob("**/*.yaml"), *folder.glob("**/*.yml")])


def load_contracts(dirs: Iterable[Path], catalog: Catalog) -> tuple[list[Contract], list[Problem]]:
    """Parse and check every contract file; a later dir's contract replaces one of the same name."""
    from .config.schema import check

    problems: list[Problem] = []
    found: dict[str, Contract] = {}
    for directory in dirs:
        for path in contract_files(Path(directory)):
            parsed = parse_yaml(path, problems)
            if parsed is None:
                continue
            data, marks = parsed
            doc = Doc(str(path), data, str(path), marks)
            schema_problems = check(doc, "contract")
            problems += schema_problems
            if schema_problems or not isinstance(data, dict):
                continue
            contract = Contract(data["name"], str(path), marks.get((), (str(path), 1))[1], data)
            problems += _check_refs(contract, doc, catalog)
            found[contract.name] = contract
    return list(found.values()), problems


def _check_refs(contract: Contract, doc: Doc, catalog: Catalog) -> list[Problem]:
    problems = []
    provider = catalog.providers.get(contract.provider)
    if provider is None or provider.abstract:
        file, line = doc.where(("provider",))
        problems.append(Problem(file, line, f"contract {contract.name!r} names unknown provider {contract.provider!r}"))
    model = contract.data["call"]["model"]
    if model not in catalog.models and "/" not in model:
        file, line = doc.where(("call", "model"))
        problems.append(Problem(file, line, f"contract {contract.name!r} calls unknown model {model!r}"))
    return problems


def replay_catalog(catalog: Catalog) -> Catalog:
    """The same catalog with every wait removed: timing is not part of a contract."""
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
    return dataclasses.replace(catalog, providers=providers)


def replay_env(catalog: Catalog) -> dict[str, str]:
    return {p.auth.env: REPLAY_KEY for p in catalog.providers.values() if p.auth is not None}


class _Replay:
    """Serves the recorded replies in order and keeps every request it saw."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = replies
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        headers = dict(reply.get("headers", {}))
        if "sse" in reply:
            lines = []
            for event in reply["sse"]:
                data = event["data"]
                text = data if isinstance(data, str) else json.dumps(data)
                lines.append((f"event: {event['event']}\n" if "event" in event else "") + f"data: {text}\n\n")
            headers.setdefault("content-type", "text/event-stream")
            return httpx2.Response(reply.get("status", 200), headers=headers, content="".join(lines).encode())
        if "text" in reply:
            return httpx2.Response(reply.get("status", 200), headers=headers, content=reply["text"].encode())
        return httpx2.Response(reply.get("status", 200), headers=headers, json=reply.get("body"))


async def run_contract(contract: Contract, catalog: Catalog) -> ContractResult:
    from .router import Router

    started = time.perf_counter()
    result = ContractResult(contract)
    replay = _Replay(contract.data["replies"])
    router = Router(catalog, replay_env(catalog), transport=httpx2.MockTransport(replay))
    call = contract.data["call"]
    expect = contract.data["expect"]
    outcome: dict[str, Any] = {}
    try:
        async with router:
            kwargs = dict(call.get("params", {}))
            if "prompt" in call:
                kwargs["prompt"] = call["prompt"]
            if call.get("stream"):
                chunks = []
                async for chunk in router.stream(call["model"], call.get("messages"), **kwargs):
                    if chunk.is_final:
                        outcome.update(finish_reason=chunk.finish_reason, usage=chunk.usage, cost=chunk.cost)
                    else:
                        chunks.append(chunk.delta)
                outcome["chunks"] = chunks
                outcome["content"] = "".join(chunks)
            else:
                response = await router.query(call["model"], call.get("messages"), **kwargs)
                outcome.update(content=response.content, content_kind=response.content_kind,
                               finish_reason=response.finish_reason, usage=response.usage, cost=response.cost)
    except RouterError as exc:
        outcome["error"] = exc
    if replay.requests and "request" in contract.data:
        result.diffs += _request_diffs(contract.data["request"], replay.requests[0])
    elif "request" in contract.data:
        result.diffs.append("request: nothing was sent")
    result.diffs += _outcome_diffs(expect, outcome)
    result.seconds = time.perf_counter() - started
    return result


def _request_diffs(expected: Mapping[str, Any], request: httpx2.Request) -> list[str]:
    diffs = []
    url = urlsplit(str(request.url))
    if "method" in expected and expected["method"].upper() != request.method:
        diffs.append(f"request.method: expected {expected['method']}, got {request.method}")
    if "path" in expected and expected["path"] != url.path:
        diffs.append(f"request.path: expected {expected['path']}, got {url.path}")
    if "query" in expected:
        got_query = dict(parse_qsl(url.query, keep_blank_values=True))
        want_query = {k: v.replace(MASK, REPLAY_KEY) for k, v in expected["query"].items()}
        if got_query != want_query:
            diffs.append(f"request.query: expected {_masked(want_query)}, got {_masked(got_query)}")
    for name, value in expected.get("headers", {}).items():
        got = request.headers.get(name)
        if got != value.replace(MASK, REPLAY_KEY):
            diffs.append(f"request.headers.{name}: expected {value!r}, got {_masked(got)!r}")
    if "body" in expected:
        body = json.loads(request.content) if request.content else None
        diffs += _value_diffs("request.body", expected["body"], body)
    return diffs


def _masked(value: Any) -> Any:
    return json.loads(json.dumps(value).replace(REPLAY_KEY, MASK)) if value is not None else None


def _value_diffs(where: str, expected: Any, got: Any) -> list[str]:
    if isinstance(expected, dict) and isinstance(got, dict):
        diffs = []
        for key in expected.keys() | got.keys():
            if key not in got:
                diffs.append(f"{where}.{key}: missing (expected {json.dumps(expected[key])[:80]})")
            elif key not in expected:
                diffs.append(f"{where}.{key}: unexpected (got {json.dumps(got[key])[:80]})")
            else:
                diffs += _value_diffs(f"{where}.{key}", expected[key], got[key])
        return sorted(diffs)
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{where}: expected {len(expected)} item(s), got {len(got)}"]
        return [d for i, (e, g) in enumerate(zip(expected, got)) for d in _value_diffs(f"{where}[{i}]", e, g)]
    if expected != got or type(expected) is not type(got) and not (_number(expected) and _number(got)):
        return [f"{where}: expected {json.dumps(expected)[:80]}, got {json.dumps(got)[:80]}"]
    return []


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _outcome_diffs(expect: Mapping[str, Any], outcome: Mapping[str, Any]) -> list[str]:
    error = outcome.get("error")
    if "error" in expect:
        want = expect["error"]
        if error is None:
            return [f"expected {want['type']}, but the call succeeded"]
        names = {cls.__name__ for cls in type(error).__mro__}
        diffs = [] if want["type"] in names else [f"error: expected {want['type']}, got {type(error).__name__}: {error}"]
        if "message_contains" in want and want["message_contains"] not in str(error):
            diffs.append(f"error message: expected to contain {want['message_contains']!r}, got {str(error)!r}")
        return diffs
    if error is not None:
        return [f"the call raised {type(error).__name__}: {error}"]
    diffs = []
    for key in ("content", "content_kind", "finish_reason", "chunks"):
        if key in expect and expect[key] != outcome.get(key):
            diffs.append(f"{key}: expected {json.dumps(expect[key])[:100]}, got {json.dumps(outcome.get(key))[:100]}")
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
