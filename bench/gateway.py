"""What `llm-router serve` adds: one chat call through the gateway vs the same call through the library
in-process, both against the loopback mock, at 1, 16 and 64 requests in flight.

    python bench/gateway.py                # 2000 requests / 10 s per level
    python bench/gateway.py --quick        # 300 requests / 3 s per level
    python bench/gateway.py --workers 2    # the gateway with two worker processes
    python bench/gateway.py --access-log   # with its per-request log line (off by default here)

Processes: the mock (bench/mock_openai.py), the gateway (`python -m llm_router serve`), and one client
process per kind: `direct` runs `router.query` in-process; `gateway` POSTs /v1/chat/completions with
httpx2 (the same client stack the library uses). Both use one registered model with a price, an
allow-list and an rpm limit it never reaches; the gateway's virtual key has an rpm limit too, so every
gateway call also takes a slot on the state backend. `added` = gateway minus direct at the same
in-flight count: the extra hop (client → gateway over loopback HTTP) plus the gateway's own work.
`self-reported` is the gateway's `x-llm-router-overhead-ms` header: its time less the attempt's.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from run import HERE, KEY, MESSAGES, load, percentile

ROOT = Path(__file__).resolve().parent.parent
LEVELS = (1, 16, 64)
MODEL = "bench-4o-mini"
GATEWAY_KEY = "sk-bench-gateway-0123456789abcdef"
SITE_MODELS = """\
models:
  bench-4o-mini:
    provider: openai
    upstream: gpt-4o-mini
    pricing: {input_per_million: 0.15, output_per_million: 0.6}
    params: [temperature, max_tokens]
    limits: {rpm: 10000000}
"""


@contextmanager
def mock_server() -> Iterator[str]:
    """bench/mock_openai.py on plain asyncio: with uvloop installed (uvicorn[standard] brings it) its
    transport check fails, so the mock is asked not to use it."""
    proc = subprocess.Popen([sys.executable, str(HERE / "mock_openai.py"), "--until-stdin-closes", "--no-uvloop"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
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


def site_dir() -> Path:
    site = Path(tempfile.mkdtemp(prefix="llm-router-bench-gateway-"))
    (site / "models.d").mkdir()
    (site / "models.d" / "bench.yaml").write_text(SITE_MODELS)
    digest = hashlib.sha256(GATEWAY_KEY.encode()).hexdigest()
    (site / "gateway.yaml").write_text(f'keys:\n  bench: {{key_sha256: "{digest}", models: [{MODEL}], rpm: 10000000}}\n')
    return site


def provider_env(mock_url: str) -> dict[str, str]:
    return dict(os.environ, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=mock_url + "/v1")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children (the workers), from /proc."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextmanager
def gateway(site: Path, mock_url: str, workers: int, access_log: bool) -> Iterator[tuple[str, int]]:
    from llm_router._resources import catalog_dir

    args = [sys.executable, "-m", "llm_router", "serve", str(catalog_dir()), str(site), "--port", "0",
            "--workers", str(workers), "--log-level", "info"] + ([] if access_log else ["--no-access-log"])
    proc = subprocess.Popen(args, env=provider_env(mock_url), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    found: list[str] = []
    ready = threading.Event()

    def drain() -> None:  # read the log so the pipe never fills; note the address
        assert proc.stderr is not None
        for line in proc.stderr:
            match = re.search(r"listening on (http://\S+)", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        if not ready.wait(30) or not found:
            raise RuntimeError("the gateway did not start")
        yield found[0], proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- a client process ---------------------------------------------------------------------------------------

async def client_main(kind: str, url: str, site: str, count: int, seconds: float, warmup: int) -> list[dict[str, float]]:
    import httpx2

    if kind == "direct":
        from llm_router import Router
        from llm_router._resources import catalog_dir

        router = Router.from_dir(catalog_dir(), site, env=provider_env(url))

        async def direct() -> Any:
            return (await router.query(MODEL, MESSAGES)).content

        call, close, overheads = direct, router.aclose, None
    else:
        client = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=100, max_keepalive_connections=100),
                                    timeout=30, trust_env=False)
        headers = {"authorization": f"Bearer {GATEWAY_KEY}", "content-type": "application/json"}
        body = json.dumps({"model": MODEL, "messages": MESSAGES}).encode()
        overheads: list[float] | None = []

        async def through_gateway() -> Any:
            response = await client.post(url + "/v1/chat/completions", content=body, headers=headers)
            response.raise_for_status()
            assert overheads is not None
            overheads.append(float(response.headers["x-llm-router-overhead-ms"]))
            return json.loads(response.content)["choices"][0]["message"]["content"]

        call, close = through_gateway, client.aclose
    try:
        await load(call, 4, warmup, seconds)
        rows = []
        for level in LEVELS:
            if overheads is not None:
                overheads.clear()
            cpu = time.process_time()
            row = await load(call, level, count, seconds)
            row["cpu_us"] = (time.process_time() - cpu) / row["n"] * 1e6  # this client process, per request
            if overheads:
                row |= {"self_p50_ms": percentile(overheads, 0.5), "self_p99_ms": percentile(overheads, 0.99)}
            rows.append(row)
        return rows
    finally:
        await close()


def run_client(kind: str, url: str, site: Path, count: int, seconds: float, warmup: int) -> list[dict[str, float]]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--client", kind, "--url", url, "--site", str(site),
           "--count", str(count), "--seconds", str(seconds), "--warmup", str(warmup)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=(seconds + 30) * len(LEVELS) + 120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} client failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 requests / 3 s per level")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--site", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=200, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        print(json.dumps(asyncio.run(client_main(args.client, args.url, args.site, args.count, args.seconds, args.warmup))))
        return
    if args.quick:
        args.count, args.seconds, args.warmup = 300, 3.0, 50

    site = site_dir()
    with mock_server() as mock_url:
        direct = run_client("direct", mock_url, site, args.count, args.seconds, args.warmup)
        with gateway(site, mock_url, args.workers, args.access_log) as (url, pid):
            cpu_before = cpu_seconds(pid)
            routed = run_client("gateway", url, site, args.count, args.seconds, args.warmup)
            cpu_per_request = (cpu_seconds(pid) - cpu_before) / (args.warmup + sum(row["n"] for row in routed))

    print(f"\none chat call, {args.count} requests or {args.seconds:g} s per level; gateway: {args.workers} worker(s), "
          f"access log {'on' if args.access_log else 'off'}")
    print(f"{'in flight':>9s} | {'direct req/s':>12s} {'p50 ms':>7s} {'p99 ms':>7s} | {'gateway req/s':>13s} {'p50 ms':>7s}"
          f" {'p99 ms':>7s} | {'added p50':>9s} {'added p99':>9s} | {'self p50':>8s} {'self p99':>8s}")
    for d, g in zip(direct, routed, strict=True):
        print(f"{d['in_flight']:>9.0f} | {d['rps']:>12.0f} {d['p50_ms']:>7.2f} {d['p99_ms']:>7.2f} | {g['rps']:>13.0f}"
              f" {g['p50_ms']:>7.2f} {g['p99_ms']:>7.2f} | {g['p50_ms'] - d['p50_ms']:>9.2f} {g['p99_ms'] - d['p99_ms']:>9.2f}"
              f" | {g.get('self_p50_ms', float('nan')):>8.3f} {g.get('self_p99_ms', float('nan')):>8.3f}")
    direct_cpu = statistics.median(row["cpu_us"] for row in direct)
    client_cpu = statistics.median(row["cpu_us"] for row in routed)
    print(f"CPU per request: direct (library + load loop, one process) {direct_cpu:.0f} us; through the gateway: "
          f"gateway process {cpu_per_request * 1e6:.0f} us + its HTTP client {client_cpu:.0f} us")


if __name__ == "__main__":
    main()
