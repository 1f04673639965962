"""Instructions per request (or per stream), counted by valgrind against the loopback mock: a figure
that does not drift with the host's speed, as CPU time does (bench/README.md).

    python bench/instructions.py                          # raw, transport, router at 16 in flight
    python bench/instructions.py --kinds router --in-flight 1
    python bench/instructions.py --kinds stream-raw,stream-router --small 8 --large 24   # per 200-chunk stream

Each kind runs twice under `valgrind --tool=callgrind` (apt-get install valgrind), with `--small` and
`--large` requests; the difference of the two counts over the difference of the requests is what
one request costs, start-up and warm-up cancelling out. The mock runs outside valgrind, on its own core.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  # the kinds and the mock of bench/run.py


async def _requests(kind: str, url: str, count: int, in_flight: int) -> None:
    call, close = await bench.make_call(kind, url)
    bench._first_chunk_at.set([])  # where a stream notes its first chunk (each worker task copies it)
    try:
        for _ in range(20):  # connections open, caches warm
            await call()

        async def worker() -> None:
            for _ in range(count // in_flight):
                await call()

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    finally:
        await close()


def _counted(kind: str, url: str, count: int, in_flight: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__, "--worker", kind,
               "--url", url, "--count", str(count), "--in-flight", str(in_flight)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=bench.worker_env(),
                          preexec_fn=bench.pinned(0))
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{kind}: valgrind run failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return int(found[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="raw,transport,router", help="comma-separated kinds of bench/run.py")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--small", type=int, default=320, help="requests in the first run")
    parser.add_argument("--large", type=int, default=1280, help="requests in the second run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(_requests(args.worker, args.url, args.count, args.in_flight))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    with bench.mock_server() as url:
        base = None
        for kind in args.kinds.split(","):
            small = _counted(kind, url, args.small, args.in_flight)
            large = _counted(kind, url, args.large, args.in_flight)
            each = (large - small) / (args.large - args.small)
            base = base if base is not None else each
            unit = "stream" if kind.startswith("stream-") else "request"
            print(f"{kind:16s} {args.in_flight:3d} in flight  {each:10,.0f} instructions per {unit}"
                  f"  ({each - base:+,.0f} over {args.kinds.split(',')[0]})")


if __name__ == "__main__":
    main()
