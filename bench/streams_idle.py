"""Memory per open idle stream: N streams opened at once, each read to its first delta and then
left open (the mock sends nothing more), for router.stream and for a raw aiohttp SSE read.

    python bench/streams_idle.py [--streams 10000] [--only router,raw]

Each kind runs in its own process against the mock (`mock_openai.py --hold`, its own process):
RSS after one warm-up stream, then after N streams are open; the difference over N is the
memory per open stream (client side: the socket buffers in the kernel are not counted).
Needs N + a few hundred file descriptors in each process (`ulimit -n`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import KEY, MESSAGES, MODEL, mock_server  # noqa: E402

PROVIDER = """\
extends: openai-compatible
name: bench-idle
base_url: http://127.0.0.1:9/v1
base_url_env: BENCH_IDLE_BASE_URL
auth: {header: Authorization, scheme: Bearer, env: OPENAI_API_KEY}
hosts: [127.0.0.1]
max_connections: 100000
timeouts: {read_s: 600, total_s: 3600, connect_s: 30, pool_s: 60}
"""


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def opener(kind: str, url: str) -> tuple[Any, Any]:
    """(open one stream and return its iterator once the first delta arrived, close)."""
    if kind == "raw":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=3600))
        body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True}).encode()
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

        async def deltas() -> AsyncIterator[str]:
            async with session.post(url + "/v1/chat/completions", data=body, headers=headers) as response:
                tail = b""
                async for chunk in response.content.iter_any():
                    *lines, tail = (tail + chunk).split(b"\n")
                    for line in lines:
                        if line.startswith(b"data: {"):
                            choices = json.loads(line[6:])["choices"]
                            if choices and choices[0]["delta"].get("content"):
                                yield choices[0]["delta"]["content"]

        return deltas, session.close
    from llm_router import Router
    from llm_router._resources import catalog_dir

    site = Path(tempfile.mkdtemp(prefix="llm-router-idle-"))
    (site / "providers.d").mkdir()
    (site / "providers.d" / "bench-idle.yaml").write_text(PROVIDER)
    router = Router.from_dir(catalog_dir(), site, env={"OPENAI_API_KEY": KEY, "BENCH_IDLE_BASE_URL": url + "/v1"})

    async def routed() -> AsyncIterator[str]:
        async for chunk in router.stream(f"bench-idle/{MODEL}", MESSAGES):
            if chunk.delta:
                yield chunk.delta

    return routed, router.aclose


async def worker(kind: str, url: str, streams: int) -> dict[str, float]:
    make, close = await opener(kind, url)
    warm = make()
    await anext(warm)
    await warm.aclose()
    gc.collect()
    before = rss_mb()
    gate = asyncio.Semaphore(500)  # the mock's accept backlog
    opened: list[Any] = []

    async def open_one() -> None:
        async with gate:
            stream = make()
            await anext(stream)
            opened.append(stream)

    started = time.perf_counter()
    await asyncio.gather(*(open_one() for _ in range(streams)))
    seconds = time.perf_counter() - started
    gc.collect()
    after = rss_mb()
    for stream in opened:
        await stream.aclose()
    await close()
    return {"streams": streams, "rss_before_mb": before, "rss_after_mb": after, "open_s": seconds,
            "kb_per_stream": (after - before) * 1024 / streams}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--only", default="raw,router")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(args.worker, args.url, args.streams))))
        return
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.streams + 200:
        raise SystemExit(f"needs {args.streams + 200} file descriptors, the limit is {soft}: ulimit -n {args.streams + 200}")
    path = os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH", "")) if p)
    print(f"{'kind':8s}{'streams':>9s}{'open s':>8s}{'RSS before MB':>15s}{'RSS after MB':>14s}{'KB per stream':>15s}")
    with mock_server(sys.executable, "--hold") as url:
        for kind in args.only.split(","):
            done = subprocess.run([sys.executable, __file__, "--worker", kind, "--url", url, "--streams", str(args.streams)],
                                  capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=path))
            if done.returncode != 0:
                print(f"{kind:8s} failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:120]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{kind:8s}{r['streams']:>9d}{r['open_s']:>8.1f}{r['rss_before_mb']:>15.1f}{r['rss_after_mb']:>14.1f}"
                  f"{r['kb_per_stream']:>15.1f}")


if __name__ == "__main__":
    main()
