"""Per-request cost of the state backends: `Router.query` of a model with `limits: {rpm: 10_000_000}`
(so every call takes a slot, never waits) with its limits on `LocalState` vs `RedisState`, next
to a raw aiohttp call, at 16 in flight, against the loopback mock.

    python bench/bench_state.py                      # 2000 requests / 10 s per kind, 3 rounds
    python bench/bench_state.py --quick              # 300 requests / 3 s, 1 round

Starts bench/mock_openai.py (its own process) and a redis-server of its own (127.0.0.1, free
port, persistence off). Kinds run interleaved in rounds in one process; each cell is the median
over rounds. It also counts the Redis commands each routed call cost (INFO commandstats), which
is the number of extra loopback round trips (one per script call).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
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
sys.path.insert(0, str(HERE))

from run import KEY, MESSAGES, load, make_call, mock_server  # noqa: E402  (run.py is found through sys.path above)

KINDS = ("raw", "router-local", "router-redis")
MODELS_YAML = """\
models:
  bench-limited:
    provider: openai
    upstream: gpt-4o-mini
    pricing: unknown
    limits: {rpm: 10000000}
"""


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (Debian: apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--port", str(port),
                             "--daemonize", "no", "--loglevel", "warning"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


def router_on(state: Any, site: Path, url: str) -> Any:
    """A Router whose limits live in `state`."""
    from llm_router import Router
    from llm_router._resources import catalog_dir

    env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": url + "/v1"}
    return Router.from_dir(catalog_dir(), site, env=env, state=state)


async def redis_commands(url: str) -> int:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    # commands a client sent (a script's own calls are counted too, but are no round trips)
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith(("cmdstat_eval", "cmdstat_script", "cmdstat_mget")))


async def make_kind(kind: str, mock_url: str, redis_url: str, site: Path) -> tuple[Callable[[], Awaitable[Any]],
                                                                                      Callable[[], Awaitable[None]]]:
    if kind == "raw":
        return await make_call("raw", mock_url)
    from llm_router.state import LocalState

    if kind == "router-local":
        state: Any = LocalState()
    else:
        from llm_router.state.redis import RedisState

        state = RedisState(redis_url, key_prefix="bench:", on_error="fail")
    router = router_on(state, site, mock_url)

    async def routed() -> Any:
        return (await router.query("bench-limited", MESSAGES)).content

    async def close() -> None:
        await router.aclose()
        await state.aclose()

    return routed, close


async def bench(mock_url: str, redis_url: str, site: Path, args: argparse.Namespace) -> None:
    rows: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    commands_per_call: list[float] = []
    for _ in range(args.repeat):
        for kind in KINDS:
            call, close = await make_kind(kind, mock_url, redis_url, site)
            try:
                await load(call, 4, args.warmup, args.seconds)
                before = await redis_commands(redis_url)
                row = await load(call, args.in_flight, args.count, args.seconds)
                if kind == "router-redis":
                    commands_per_call.append((await redis_commands(redis_url) - before) / row["n"])
                rows[kind].append(row)
            finally:
                await close()
    raw_rps = statistics.median(r["rps"] for r in rows["raw"])
    print(f"\n{args.in_flight} in flight, median of {args.repeat} round(s)\n")
    print("| kind | req/s | x raw | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for kind in KINDS:
        rps = statistics.median(r["rps"] for r in rows[kind])
        p50 = statistics.median(r["p50_ms"] for r in rows[kind])
        p99 = statistics.median(r["p99_ms"] for r in rows[kind])
        print(f"| {kind} | {rps:.0f} | {rps / raw_rps:.2f} | {p50:.2f} | {p99:.2f} |")
    print(f"\nRedis commands (= loopback round trips) per routed call: {statistics.median(commands_per_call):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="state backend cost per request (see bench/README.md)")
    parser.add_argument("--count", type=int, default=2000, help="requests per kind and round (cap)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time cap per kind and round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each cell is the median")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="300 requests / 3 s, one round")
    args = parser.parse_args()
    if args.quick:
        args.count, args.seconds, args.repeat, args.warmup = 300, 3.0, 1, 50
    with tempfile.TemporaryDirectory() as tmp, mock_server() as mock_url, redis_server() as redis_url:
        site = Path(tmp)
        (site / "models.d").mkdir()
        (site / "models.d" / "bench.yaml").write_text(MODELS_YAML)
        asyncio.run(bench(mock_url, redis_url, site, args))


if __name__ == "__main__":
    main()
