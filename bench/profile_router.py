"""Where the router's own time goes: CPU per request against the mock, then cProfile (and
pyinstrument, when installed) over N calls.

    python bench/profile_router.py [-n 2000] [--in-flight 16] [--model openai/gpt-4o-mini] [--top 25]

"CPU per request" is process CPU time (user+sys) divided by requests, for the raw aiohttp call (the
client the router sends with) and for router.query in the same process, same mock, same
concurrency; the difference is what the router adds on top of the HTTP client.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import KEY, MESSAGES, MODEL, make_call, mock_server  # noqa: E402


async def drive(call: Callable[[], Awaitable[Any]], n: int, in_flight: int) -> None:
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    async with asyncio.timeout(120):
        await asyncio.gather(*(worker() for _ in range(in_flight)))


async def cpu_per_request(kind: str, url: str, n: int, in_flight: int) -> float:
    call, close = await make_call(kind, url)
    try:
        await drive(call, 200, in_flight)
        t0 = time.process_time()
        await drive(call, n, in_flight)
        return (time.process_time() - t0) / n
    finally:
        await close()


async def profiled(url: str, model: str, n: int, in_flight: int, top: int) -> None:
    from llm_router import Router

    router = Router.from_dir(env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": url + "/v1", "DEMO_BASE_URL": url + "/v1"})

    async def call() -> Any:
        return await router.query(model, MESSAGES)

    try:
        await drive(call, 200, in_flight)
        profile = cProfile.Profile()
        profile.enable()
        await drive(call, n, in_flight)
        profile.disable()
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profile, stream=out).strip_dirs().sort_stats(order).print_stats(top)
            text = out.getvalue()
            print(f"\n=== cProfile, {n} router.query calls, {in_flight} in flight, by {order} ===")
            print(text[text.find("   ncalls"):].rstrip())
        try:
            from pyinstrument import Profiler
        except ImportError:
            print("\n(pyinstrument not installed: pip install pyinstrument for a call tree)")
            return
        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        await drive(call, n, in_flight)
        profiler.stop()
        print(f"\n=== pyinstrument, {n} calls, {in_flight} in flight (time under llm_router frames) ===")
        print(profiler.output_text(unicode=False, color=False, show_all=False, flat=True)[:6000])
    finally:
        await router.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--model", default=f"openai/{MODEL}", help="a registered name or provider/upstream")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with mock_server() as url:
        raw = asyncio.run(cpu_per_request("raw", url, args.n, args.in_flight))
        routed = asyncio.run(cpu_per_request("router", url, args.n, args.in_flight))
        print(f"CPU per request, {args.n} calls, {args.in_flight} in flight:")
        print(f"  raw aiohttp + json  {raw * 1e6:8.0f} us")
        print(f"  router.query        {routed * 1e6:8.0f} us")
        print(f"  router's own work   {(routed - raw) * 1e6:8.0f} us  ({routed / raw:.2f}x raw)")
        print(json.dumps({"raw_us": raw * 1e6, "router_us": routed * 1e6}), file=sys.stderr)
        asyncio.run(profiled(url, args.model, args.n, args.in_flight, args.top))


if __name__ == "__main__":
    main()
