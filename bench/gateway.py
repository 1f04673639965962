"""What `llm-router serve` adds: one chat call through the gateway vs the same call through the library
in-process, both against the loopback mock, at 1, 16 and 64 requests in flight.

    python bench/gateway.py                # 2000 requests / 10 s per level
    python bench/gateway.py --quick        # 300 requests / 3 s per level
    python bench/gateway.py --workers 2    # the gateway with two worker processes
    python bench/gateway.py --access-log   # with its per-request log line (off by default here)
    python bench/gateway.py --litellm-python /tmp/litellm-venv/bin/python   # and LiteLLM's proxy

Processes: the mock (bench/mock_openai.py), the gateway (`python -m llm_router serve`), and one client
process per kind: `direct` runs `router.query` in-process; `gateway` POSTs /v1/chat/completions with
httpx2 (the load client; the library itself sends with aiohttp). Both use one registered model with a price, an
allow-list and an rpm limit it never reaches; the gateway's virtual key has an rpm limit too, so every
gateway call also takes a slot on the state backend. `added` = gateway minus direct at the same
in-flight count: the extra hop (client → gateway over loopback HTTP) plus the gateway's own work.
`self` is what the server reports of its own time: the gateway's `x-llm-router-overhead-ms` header
(its time less the attempt's), LiteLLM's `x-litellm-overhead-duration-ms` (the same idea).

`litellm-proxy` (only with --litellm-python: an interpreter with `litellm[proxy]` installed, e.g. a venv,
so LiteLLM's pins never touch this environment): `litellm --config <tmp>/config.yaml --host 127.0.0.1
--port <free port>` with one model_list entry (openai/gpt-4o-mini at the mock's /v1) and a master key
(it refuses to start without one; no database, so no virtual keys, limits or spend tables), driven by
the same httpx2 client and load loop as the gateway, after the gateway has stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import re
import signal
import socket
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

from run import KEY, MESSAGES, load, mock_server, percentile

ROOT = Path(__file__).resolve().parent.parent
LEVELS = (1, 16, 64)
MODEL = "bench-4o-mini"
GATEWAY_KEY = "sk-bench-gateway-0123456789abcdef"
LITELLM_KEY = "sk-bench-litellm-0123456789abcdef"  # the proxy's master key, loopback only
LITELLM_START_SECONDS = 180.0  # it imports for ~10 s on a quiet 2-core machine
SITE_MODELS = """\
models:
  bench-4o-mini:
    provider: openai
    upstream: gpt-4o-mini
    pricing: {input_per_million: 0.15, output_per_million: 0.6}
    params: [temperature, max_tokens]
    limits: {rpm: 10000000}
"""


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(port: int) -> bool:
    """GET /health/liveliness on loopback (http.client: no proxy settings apply), one second at most."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/health/liveliness")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def litellm_command(python: str) -> list[str]:
    """The `litellm` script installed next to that interpreter (a venv's bin/), else the same entry point via -c."""
    script = Path(python).parent / "litellm"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [python, "-c", "import sys; from litellm import run_server; sys.exit(run_server())"]


def litellm_version(python: str) -> str:
    done = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                          capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


@contextmanager
def litellm_proxy(python: str, mock_url: str, workers: int, access_log: bool) -> Iterator[tuple[str, int]]:
    """LiteLLM's proxy on 127.0.0.1 in its own session (so its uvicorn workers can be ended with it), its log in
    a temporary directory that is also its working directory (no .env from the repository is read)."""
    with tempfile.TemporaryDirectory(prefix="llm-router-bench-litellm-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(
            "model_list:\n"
            f"  - model_name: {MODEL}\n"
            "    litellm_params:\n"
            "      model: openai/gpt-4o-mini\n"
            f"      api_base: {mock_url}/v1\n"
            f"      api_key: {KEY}\n"
            "general_settings:\n"
            f"  master_key: {LITELLM_KEY}\n")
        port = free_port()
        env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="INFO" if access_log else "ERROR",
                   NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        for name in ("DATABASE_URL", "LITELLM_MASTER_KEY", "REDIS_HOST", "REDIS_URL"):  # nothing off this machine
            env.pop(name, None)
        args = [*litellm_command(python), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                "--num_workers", str(workers)]
        with open(Path(tmp) / "litellm.log", "w+") as log:
            proc = subprocess.Popen(args, env=env, cwd=tmp, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

            def log_tail() -> str:
                log.flush()
                log.seek(0)
                return log.read()[-2000:]

            try:
                deadline = time.monotonic() + LITELLM_START_SECONDS
                while not answers(port):
                    if proc.poll() is not None:
                        raise RuntimeError(f"LiteLLM's proxy exited ({proc.returncode}):\n{log_tail()}")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"LiteLLM's proxy did not answer in {LITELLM_START_SECONDS:g} s:\n{log_tail()}")
                    time.sleep(0.25)
                yield f"http://127.0.0.1:{port}", proc.pid
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                with contextlib.suppress(ProcessLookupError):  # its own session: its uvicorn workers go with it
                    os.killpg(proc.pid, signal.SIGKILL)


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
    else:  # an HTTP server: the gateway, or LiteLLM's proxy; the same client either way
        client = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=100, max_keepalive_connections=100),
                                    timeout=30, trust_env=False)
        key, overhead_header = {"gateway": (GATEWAY_KEY, "x-llm-router-overhead-ms"),
                                "litellm-proxy": (LITELLM_KEY, "x-litellm-overhead-duration-ms")}[kind]
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        body = json.dumps({"model": MODEL, "messages": MESSAGES}).encode()
        overheads: list[float] | None = []

        async def through_server() -> Any:
            response = await client.post(url + "/v1/chat/completions", content=body, headers=headers)
            response.raise_for_status()
            assert overheads is not None
            with contextlib.suppress(KeyError, ValueError):  # LiteLLM sends "None" when it did not time the call
                overheads.append(float(response.headers[overhead_header]))
            return json.loads(response.content)["choices"][0]["message"]["content"]

        call, close = through_server, client.aclose
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


def server_cpu_us(pid: int, before: float, rows: list[dict[str, float]], warmup: int) -> float:
    """The server's CPU (its process and its workers) per request served, warm-up included, in microseconds."""
    return (cpu_seconds(pid) - before) / (warmup + sum(row["n"] for row in rows)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 requests / 3 s per level")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="worker processes of each server (gateway, LiteLLM)")
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument("--litellm-python", metavar="PY",
                        help="an interpreter with litellm[proxy] installed (e.g. /tmp/litellm-venv/bin/python): "
                             "also measure LiteLLM's proxy, started from that interpreter's `litellm` script")
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
    results: dict[str, list[dict[str, float]]] = {}
    server_cpu: dict[str, float] = {}
    missing = "not measured: pass --litellm-python"
    lite_version = ""
    with mock_server() as mock_url:
        results["direct"] = run_client("direct", mock_url, site, args.count, args.seconds, args.warmup)
        with gateway(site, mock_url, args.workers, args.access_log) as (url, pid):
            before = cpu_seconds(pid)
            results["gateway"] = run_client("gateway", url, site, args.count, args.seconds, args.warmup)
            server_cpu["gateway"] = server_cpu_us(pid, before, results["gateway"], args.warmup)
        if args.litellm_python:
            lite_version = litellm_version(args.litellm_python)
            try:
                with litellm_proxy(args.litellm_python, mock_url, args.workers, args.access_log) as (url, pid):
                    before = cpu_seconds(pid)
                    results["litellm-proxy"] = run_client("litellm-proxy", url, site, args.count, args.seconds,
                                                          args.warmup)
                    server_cpu["litellm-proxy"] = server_cpu_us(pid, before, results["litellm-proxy"], args.warmup)
            except RuntimeError as error:
                missing = f"not measured: {str(error).splitlines()[0].rstrip(':')} (its log is above)"
                print(error, file=sys.stderr)

    print(f"\none chat call, {args.count} requests or {args.seconds:g} s per level; servers: {args.workers} worker(s), "
          f"access log {'on' if args.access_log else 'off'}" + (f"; litellm {lite_version}" if lite_version else ""))
    print("added = that kind minus direct at the same in-flight count; self = the server's own report of its time")
    print(f"{'kind':14s} {'in flight':>9s} {'n':>5s} {'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} | {'added p50':>9s}"
          f" {'added p99':>9s} | {'self p50':>8s} {'self p99':>8s}")
    for i, level in enumerate(LEVELS):
        d = results["direct"][i]
        for kind in ("direct", "gateway", "litellm-proxy"):
            if kind not in results:
                print(f"{kind:14s} {level:>9d} {missing}")
                continue
            r = results[kind][i]
            added = (f"{r['p50_ms'] - d['p50_ms']:>9.2f} {r['p99_ms'] - d['p99_ms']:>9.2f}" if kind != "direct"
                     else f"{'-':>9s} {'-':>9s}")
            print(f"{kind:14s} {r['in_flight']:>9.0f} {r['n']:>5.0f} {r['rps']:>7.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f}"
                  f" | {added}"
                  f" | {r.get('self_p50_ms', float('nan')):>8.3f} {r.get('self_p99_ms', float('nan')):>8.3f}")
    print("CPU per request (median over the levels for clients; servers: total over the run, warm-up included):")
    print(f"  direct: library + load loop, one process, {statistics.median(row['cpu_us'] for row in results['direct']):.0f} us")
    for kind in ("gateway", "litellm-proxy"):
        if kind in server_cpu:
            client_cpu = statistics.median(row["cpu_us"] for row in results[kind])
            print(f"  {kind}: server {server_cpu[kind]:.0f} us (= {1e6 / server_cpu[kind]:.0f} req/s per core of server CPU)"
                  f" + its HTTP client {client_cpu:.0f} us")
        else:
            print(f"  {kind}: {missing}")


if __name__ == "__main__":
    main()
