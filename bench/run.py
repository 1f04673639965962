"""Throughput and latency of one chat call, side by side, against the loopback mock.

    python bench/run.py                    # every client kind, 1/16/64 in flight, plus streaming
    python bench/run.py --quick            # fewer requests
    python bench/run.py --only router,raw  # a subset
    python bench/run.py --repeat 3         # three rounds, the median of each cell

Each client kind runs in its own subprocess (so imports don't interfere: LiteLLM pulls in httpx
and aiohttp, the openai SDK its own client stack); the mock server runs in another. Every run is
capped by count and by time. Ratios compare each kind with the raw aiohttp call (`raw`, the
client the router sends with) in the same round. `raw-*` kinds are the other raw clients; one
that is not installed is reported as not measured. `transport` is the router's own transport with the
work of a routed call written out by hand (`floor_call`): the floor under the router.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's llm_router (workers get it through PYTHONPATH)
RAW_KINDS = ("raw", "raw-httpx2", "raw-httpx2-aiohttp", "raw-pyreqwest", "raw-rnet")
KINDS = (*RAW_KINDS, "transport", "router", "router-catalog", "openai", "litellm", "litellm-router")
STREAM_KINDS = ("stream-raw", "stream-router")
CONCURRENCY = (1, 16, 64)
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello in one sentence."}]
MODEL = "gpt-4o-mini"
KEY = "sk-bench"


# --- the mock, in its own process ------------------------------------------------------------------

def cores() -> tuple[set[int], set[int]] | None:
    """(the clients' CPUs, the mock's CPU): the mock on a core of its own, where there are two or more."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return (set(usable[:-1]), {usable[-1]}) if len(usable) >= 2 else None


def pinned(which: int) -> Callable[[], None] | None:
    """A preexec_fn that keeps a child process on its CPUs (0: a client, 1: the mock)."""
    split = cores()
    return None if split is None else (lambda: os.sched_setaffinity(0, split[which]))


@contextmanager
def mock_server(python: str = sys.executable, *args: str) -> Iterator[str]:
    proc = subprocess.Popen([python, str(HERE / "mock_openai.py"), "--until-stdin-closes", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=pinned(1))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"mock server did not start: {line!r}")
        yield line.split()[1]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- one client kind, in a worker subprocess --------------------------------------------------------

async def make_call(kind: str, url: str) -> tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    """(one request, close) for a client kind; the request returns the reply text."""
    body = {"model": MODEL, "messages": MESSAGES}
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    endpoint = url + "/v1/chat/completions"
    if kind in ("raw", "stream-raw"):
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100), timeout=aiohttp.ClientTimeout(total=30))

        async def raw() -> Any:
            async with session.post(endpoint, data=json.dumps(body).encode(), headers=headers) as response:
                response.raise_for_status()
                return json.loads(await response.read())["choices"][0]["message"]["content"]

        async def raw_stream() -> Any:
            stream_body = json.dumps(body | {"stream": True, "stream_options": {"include_usage": True}}).encode()
            parts, tail = [], b""
            async with session.post(endpoint, data=stream_body, headers=headers) as response:
                response.raise_for_status()
                async for chunk in response.content.iter_any():  # a minimal SSE reader: data lines, blank-line framed
                    *lines, tail = (tail + chunk).split(b"\n")
                    for line in lines:
                        if not line.startswith(b"data: ") or line == b"data: [DONE]":
                            continue
                        choices = json.loads(line[6:])["choices"]
                        if choices and choices[0]["delta"].get("content"):
                            parts.append(choices[0]["delta"]["content"])
                            yield_first()
            return "".join(parts)

        return (raw_stream if kind == "stream-raw" else raw), session.close
    if kind == "raw-httpx2":
        import httpx2

        client = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=100, max_keepalive_connections=100),
                                    timeout=30, trust_env=False)

        async def raw_httpx2() -> Any:
            response = await client.post(endpoint, content=json.dumps(body).encode(), headers=headers)
            response.raise_for_status()
            return json.loads(response.content)["choices"][0]["message"]["content"]

        return raw_httpx2, client.aclose
    if kind == "raw-httpx2-aiohttp":
        import aiohttp
        import httpx2

        httpx2.alias_httpx()
        from httpx_aiohttp import AiohttpTransport

        client = httpx2.AsyncClient(timeout=30, transport=AiohttpTransport(
            client=lambda: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))))

        async def raw_bridge() -> Any:
            response = await client.post(endpoint, content=json.dumps(body).encode(), headers=headers)
            response.raise_for_status()
            return json.loads(response.content)["choices"][0]["message"]["content"]

        return raw_bridge, client.aclose
    if kind == "raw-pyreqwest":
        from pyreqwest.client import ClientBuilder

        reqwest = ClientBuilder().max_connections(100).build()

        async def raw_reqwest() -> Any:
            async with reqwest.post(endpoint).body_bytes(json.dumps(body).encode()).headers(headers).build_streamed() as response:
                data = bytes(await response.bytes())
            return json.loads(data)["choices"][0]["message"]["content"]

        async def reqwest_close() -> None:
            closing = reqwest.close()
            if inspect.isawaitable(closing):
                await closing

        return raw_reqwest, reqwest_close
    if kind == "raw-rnet":
        import rnet

        rclient = rnet.Client()

        async def raw_rnet() -> Any:
            response = await rclient.post(endpoint, json=body, headers=headers)  # as /work/shared/bench/http_clients.py does
            return (await response.json())["choices"][0]["message"]["content"]

        async def rnet_close() -> None:
            return None

        return raw_rnet, rnet_close
    if kind == "transport":
        return floor_call(endpoint, headers)
    if kind in ("router", "router-catalog", "stream-router"):
        from llm_router import Router

        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": url + "/v1", "DEMO_BASE_URL": url + "/v1"}
        name = f"openai/{MODEL}"
        if kind == "router-catalog":
            # A registered model: allow-list, pricing, totals, and an rpm limit (one local acquire per call)
            # set high enough that the bench never hits it (the bundled gpt-4o-mini allows 500 a minute).
            from llm_router._resources import catalog_dir

            site = Path(tempfile.mkdtemp(prefix="llm-router-bench-"))
            (site / "models.d").mkdir()
            (site / "models.d" / "bench.yaml").write_text(
                "models:\n  bench-4o-mini:\n    provider: openai\n    upstream: gpt-4o-mini\n"
                "    pricing: {input_per_million: 0.15, output_per_million: 0.6}\n"
                "    params: [temperature, max_tokens]\n    limits: {rpm: 10000000}\n")
            router = Router.from_dir(catalog_dir(), site, env=env)
            name = "bench-4o-mini"
        else:
            router = Router.from_dir(env=env)

        async def routed() -> Any:
            return (await router.query(name, MESSAGES)).content

        async def routed_stream() -> Any:
            parts = []
            async for chunk in router.stream(name, MESSAGES):
                if chunk.delta:
                    parts.append(chunk.delta)
                    yield_first()
            return "".join(parts)

        return (routed_stream if kind == "stream-router" else routed), router.aclose
    if kind == "openai":
        import openai

        oai = openai.AsyncOpenAI(api_key=KEY, base_url=url + "/v1", max_retries=0)

        async def official() -> Any:
            return (await oai.chat.completions.create(model=MODEL, messages=MESSAGES)).choices[0].message.content  # type: ignore[arg-type]

        return official, oai.close
    if kind in ("litellm", "litellm-router"):
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        if kind == "litellm":
            async def lite() -> Any:
                reply = await litellm.acompletion(model=f"openai/{MODEL}", messages=MESSAGES, api_base=url + "/v1",
                                                  api_key=KEY, num_retries=0)
                return reply.choices[0].message.content

            async def lite_close() -> None:
                return None

            return lite, lite_close
        params = {"model": f"openai/{MODEL}", "api_base": url + "/v1", "api_key": KEY}
        lrouter = litellm.Router(
            model_list=[{"model_name": "primary", "litellm_params": params},
                        {"model_name": "backup", "litellm_params": params}],
            fallbacks=[{"primary": ["backup"]}], num_retries=0,
        )

        async def lite_routed() -> Any:
            return (await lrouter.acompletion(model="primary", messages=MESSAGES)).choices[0].message.content

        async def lrouter_close() -> None:
            return None

        return lite_routed, lrouter_close
    raise SystemExit(f"unknown kind {kind!r}; kinds: {', '.join(KINDS + STREAM_KINDS)}")


def floor_call(endpoint: str, headers: dict[str, str]) -> tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    """The router's own transport, with the work every routed call does written out by hand for this one
    wire format: check the messages, encode, send, decode, read the text, finish reason and usage, price
    them, keep a total, return an LLMResponse. What the router adds over this is its reading of config
    (templates, paths, the chain and its leases), which is where its CPU over raw aiohttp goes."""
    from llm_router.config.model import Timeouts
    from llm_router.engine.errors import decode_json
    from llm_router.engine.request import PreparedRequest
    from llm_router.engine.transport import ClientSettings
    from llm_router.engine.transport_aiohttp import AiohttpTransport
    from llm_router.types import Attempt, LLMResponse, Usage

    transport = AiohttpTransport(ClientSettings(Timeouts(), 100))
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
    totals: dict[str, list[float]] = {}

    async def floor() -> Any:
        started = time.perf_counter()
        for message in MESSAGES:
            if not (type(message) is dict and type(message.get("content")) is str and message.get("role") in (
                    "system", "user", "assistant")):
                raise ValueError("a malformed message")
        body = {"model": MODEL, "messages": MESSAGES}
        reply = await transport.send(PreparedRequest("POST", endpoint, dict(headers), {}, body, encode(body).encode()))
        if reply.status >= 300:
            raise RuntimeError(f"status {reply.status}")
        data = decode_json(reply.body)
        choice = data["choices"][0]
        text = choice["message"].get("content")
        counts = data.get("usage") or {}
        usage = Usage(counts.get("prompt_tokens"), counts.get("completion_tokens"),
                      (counts.get("prompt_tokens_details") or {}).get("cached_tokens"))
        cost = ((usage.input_tokens or 0) * 0.15 + (usage.output_tokens or 0) * 0.6) / 1e6
        total = totals.setdefault(MODEL, [0, 0.0])
        total[0] += 1
        total[1] += cost
        latency = time.perf_counter() - started
        attempt = Attempt(MODEL, "openai", True, reply.status, tries=1, latency=latency, usage=usage, cost=cost)
        return LLMResponse(text, MODEL, "openai", usage, cost, latency, choice.get("finish_reason"), [attempt], data,
                           id=data.get("id"), message={"role": "assistant", "content": text}).content

    return floor, transport.aclose


_first_chunk_at: contextvars.ContextVar[list[float]] = contextvars.ContextVar("first_chunk_at")


def yield_first() -> None:
    """Note when a stream's first content chunk reached the caller (per task: a ContextVar)."""
    seen = _first_chunk_at.get()
    if not seen:
        seen.append(time.perf_counter())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def load(call: Callable[[], Awaitable[Any]], in_flight: int, count: int, seconds: float) -> dict[str, float]:
    """`in_flight` workers share a budget of `count` requests; stop at whichever of count or time comes first."""
    latencies: list[float] = []
    remaining = count
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            t0 = time.perf_counter()
            if not await call():
                raise RuntimeError("empty reply")
            latencies.append(time.perf_counter() - t0)

    started, cpu = time.perf_counter(), time.process_time()
    async with asyncio.timeout(seconds + 30):
        await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"in_flight": in_flight, "n": len(latencies), "rps": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 0.50) * 1e3, "p99_ms": percentile(latencies, 0.99) * 1e3,
            "cpu_us": cpu / max(1, len(latencies)) * 1e6}


async def stream_load(call: Callable[[], Awaitable[Any]], in_flight: int, count: int, seconds: float) -> dict[str, float]:
    """Time to first chunk and total per stream; with several in flight, each task times its own."""
    firsts: list[float] = []
    totals: list[float] = []
    chunks = 0
    remaining = count
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        seen: list[float] = []
        _first_chunk_at.set(seen)
        nonlocal chunks
        t0 = time.perf_counter()
        text = await call()
        if not text:
            raise RuntimeError("empty stream")
        chunks += text.count("tok")
        totals.append(time.perf_counter() - t0)
        firsts.append(seen[0] - t0)

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            await asyncio.create_task(one())  # a task of its own, so its ContextVar is its own

    async with asyncio.timeout(seconds + 30):
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"in_flight": in_flight, "n": len(totals), "streams_s": len(totals) / elapsed, "chunks_s": chunks / elapsed,
            "ttfc_p50_ms": percentile(firsts, 0.5) * 1e3, "total_p50_ms": percentile(totals, 0.5) * 1e3,
            "total_p99_ms": percentile(totals, 0.99) * 1e3, "cpu_us_per_chunk": cpu / max(1, chunks) * 1e6}


async def worker_main(kind: str, url: str, count: int, seconds: float, warmup: int) -> list[dict[str, float]]:
    call, close = await make_call(kind, url)
    try:
        streaming = kind.startswith("stream-")
        runner = stream_load if streaming else load
        await runner(call, 4, warmup, seconds)  # connections open, caches warm
        levels = (1, 16) if streaming else CONCURRENCY
        return [await runner(call, c, count, seconds) for c in levels]
    finally:
        await close()


# --- the driver ------------------------------------------------------------------------------------

def worker_env() -> dict[str, str]:
    """A worker's environment: the checkout's llm_router, whatever is installed; LiteLLM offline and quiet."""
    path = os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", PYTHONPATH=path)


def run_worker(python: str, kind: str, url: str, count: int, seconds: float, warmup: int) -> list[dict[str, float]] | str:
    env = worker_env()
    cmd = [python, str(Path(__file__).resolve()), "--worker", kind, "--url", url, "--count", str(count),
           "--seconds", str(seconds), "--warmup", str(warmup)]
    budget = (seconds + 30) * 4 + 120
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, env=env, preexec_fn=pinned(0))
    except subprocess.TimeoutExpired:
        return "timed out"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0:
        if lines and lines[-1].startswith("[{"):  # rnet 2.4 sometimes segfaults as the interpreter exits, after its run
            print(f"  ({kind} exited with {done.returncode} after printing its figures; kept)", file=sys.stderr)
            return list(json.loads(lines[-1]))
        return (done.stderr.strip().splitlines() or [f"failed (exit {done.returncode})"])[-1][:100]
    return list(json.loads(lines[-1]))


def median_rows(rounds: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    return [{k: statistics.median(r[i][k] for r in rounds) for k in rounds[0][i]} for i in range(len(rounds[0]))]


def main() -> None:
    parser = argparse.ArgumentParser(description="llm-router throughput/latency benchmark (see bench/README.md)")
    parser.add_argument("--only", help=f"comma-separated kinds: {','.join(KINDS + STREAM_KINDS)}, or 'stream'")
    parser.add_argument("--quick", action="store_true", help="fewer requests (300 per level, 3 s cap)")
    parser.add_argument("--count", type=int, default=2000, help="requests per concurrency level (cap)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time cap per concurrency level")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; each cell is the median over rounds")
    parser.add_argument("--others-python", default=sys.executable,
                        help="interpreter for the openai/litellm kinds (e.g. a venv holding bench/requirements.txt)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=200, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(asyncio.run(worker_main(args.worker, args.url, args.count, args.seconds, args.warmup))))
        return
    if args.quick:
        args.count, args.seconds, args.warmup = 300, 3.0, 50
    kinds = list(KINDS + STREAM_KINDS)
    if args.only:
        wanted = set(args.only.split(","))
        if "stream" in wanted:
            wanted |= set(STREAM_KINDS)
        kinds = [k for k in kinds if k in wanted]
    stream_count = max(20, args.count // 10)

    results: dict[str, list[list[dict[str, float]]]] = {k: [] for k in kinds}
    errors: dict[str, str] = {}
    with mock_server() as url:
        split = cores()
        where = f"clients on CPU {sorted(split[0])}, the mock on CPU {sorted(split[1])}" if split else "one CPU: not pinned"
        print(f"mock at {url}; {len(kinds)} kinds x {args.repeat} round(s); "
              f"cap {args.count} requests or {args.seconds:g} s per level; {where}", file=sys.stderr)
        for round_no in range(args.repeat):
            for kind in kinds:
                python = args.others_python if kind in ("openai", "litellm", "litellm-router") else sys.executable
                count = stream_count if kind.startswith("stream-") else args.count
                started = time.perf_counter()
                result = run_worker(python, kind, url, count, args.seconds, args.warmup)
                print(f"  round {round_no + 1} {kind:15s} {time.perf_counter() - started:5.1f}s"
                      f"{'' if not isinstance(result, str) else '  ERROR ' + result}", file=sys.stderr)
                if isinstance(result, str):
                    errors[kind] = result
                else:
                    results[kind].append(result)

    table = {k: median_rows(v) for k, v in results.items() if v}
    request_kinds = [k for k in kinds if not k.startswith("stream-") and k in table]
    if request_kinds:
        base = {row["in_flight"]: row for row in table.get("raw", [])}
        print(f"\nchat calls, median of {args.repeat} round(s): x raw = req/s over raw aiohttp's at the same in-flight"
              " count; CPU = process CPU per request; +CPU = that minus raw aiohttp's")
        print(f"{'kind':20s}{'in flight':>10s}{'req/s':>9s}{'x raw':>7s}{'CPU us':>8s}{'+CPU us':>9s}{'p50 ms':>9s}"
              f"{'p99 ms':>9s}{'n':>7s}")
        for kind in request_kinds:
            for row in table[kind]:
                ref = base.get(row["in_flight"])
                ratio = f"{row['rps'] / ref['rps']:.2f}" if ref else "-"
                extra = f"{row['cpu_us'] - ref['cpu_us']:.0f}" if ref else "-"
                print(f"{kind:20s}{row['in_flight']:>10.0f}{row['rps']:>9.0f}{ratio:>7s}{row['cpu_us']:>8.0f}{extra:>9s}"
                      f"{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['n']:>7.0f}")
    stream_kinds = [k for k in kinds if k.startswith("stream-") and k in table]
    if stream_kinds:
        base = {row["in_flight"]: row for row in table.get("stream-raw", [])}
        print(f"\n200-chunk streams, median of {args.repeat} round(s): x raw = over stream-raw (aiohttp + a minimal SSE"
              " reader) at the same in-flight count; first = time to the first content chunk")
        print(f"{'kind':16s}{'in flight':>10s}{'streams/s':>11s}{'chunks/s':>10s}{'x raw':>7s}{'first ms':>10s}"
              f"{'raw/first':>10s}{'total p50':>11s}{'total p99':>11s}{'CPU us/chunk':>14s}")
        for kind in stream_kinds:
            for row in table[kind]:
                ref = base.get(row["in_flight"])
                ratio = f"{row['chunks_s'] / ref['chunks_s']:.2f}" if ref else "-"
                first = f"{ref['ttfc_p50_ms'] / row['ttfc_p50_ms']:.2f}" if ref else "-"
                print(f"{kind:16s}{row['in_flight']:>10.0f}{row['streams_s']:>11.1f}{row['chunks_s']:>10.0f}{ratio:>7s}"
                      f"{row['ttfc_p50_ms']:>10.2f}{first:>10s}{row['total_p50_ms']:>11.2f}{row['total_p99_ms']:>11.2f}"
                      f"{row['cpu_us_per_chunk']:>14.1f}")
    for kind, message in errors.items():
        print(f"\n{kind}: not measured ({message})")


if __name__ == "__main__":
    main()
