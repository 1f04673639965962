"""Soak the router: N minutes of mixed faults at moderate concurrency against a loopback mock.

Not a test: run it by hand (or nightly) and watch the numbers stay flat.

    python bench/soak.py --minutes 1 --concurrency 32

Every 10 s it prints calls made, successes by model, errors by type, open file descriptors and
RSS. Bounded by time (--minutes) and by count (--max-calls). Binds only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mockserver import MockServer, Reply, Request, openai_chat_reply, openai_chat_sse, openai_error

from llm_router import Router
from llm_router._resources import catalog_dir

KEY = "sk-soak-00000000"


def provider(name: str) -> str:
    return f"""\
extends: openai-compatible
name: {name}
base_url: http://127.0.0.1:9/v1
base_url_env: {name.upper()}_BASE_URL
auth: {{header: Authorization, scheme: Bearer, env: SOAK_KEY}}
hosts: [127.0.0.1]
timeouts: {{connect_s: 1, read_s: 0.5, total_s: 1.0}}
operations:
  chat:
    path: /chat/completions
    response:
      content: $.choices[0].message.content
errors:
  retry:
    max_attempts: 3
    backoff: {{initial_s: 0.01, max_s: 0.05}}
    max_wait_s: 1
"""


MODELS = """\
models:
  flaky-fb:
    provider: flaky
    upstream: f-1
    pricing: {input_per_million: 1.0, output_per_million: 2.0}
    fallbacks: [healthy-m]
  healthy-m:
    provider: healthy
    upstream: h-1
    pricing: {input_per_million: 1.0, output_per_million: 2.0}
  limited:
    provider: healthy
    upstream: lim-1
    pricing: unknown
    limits: {rpm: 600, max_wait_s: 0}
    fallbacks: [healthy-m]
"""


def write_config(root: Path) -> None:
    for rel, text in {"providers.d/flaky.yaml": provider("flaky"), "providers.d/healthy.yaml": provider("healthy"),
                      "models.d/soak.yaml": MODELS}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def fault_handler(seed: int, rate: float):
    rng = random.Random(seed)
    faults = [
        Reply.json(openai_error("boom", "server_error"), status=500),
        Reply.json(openai_error("busy", "rate_limit"), status=429, headers={"retry-after": "0.05"}),
        Reply.reset(),
        Reply.hang(2),
        Reply.truncated(b'{"choices": ['),
        Reply.text("<html><body>502 Bad Gateway</body></html>", status=502, content_type="text/html"),
    ]

    def handler(req: Request) -> Reply:
        if rng.random() < rate:
            return rng.choice(faults)
        if req.json().get("stream"):
            if rng.random() < rate / 2:
                return Reply.cut_sse(openai_chat_sse(["par", "tial"]), after=2)
            return Reply.sse(openai_chat_sse(["so", "ak"]))
        return Reply.json(openai_chat_reply("ok"))

    return handler


def healthy(req: Request) -> Reply:
    return Reply.sse(openai_chat_sse(["ok"])) if req.json().get("stream") else Reply.json(openai_chat_reply("ok"))


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def soak(minutes: float, concurrency: int, max_calls: int, fault_rate: float, seed: int) -> int:
    calls = 0
    ok_by_model: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    with MockServer() as srv, tempfile.TemporaryDirectory() as tmp:
        srv.route("POST", "/f/chat/completions", fault_handler(seed, fault_rate))
        srv.route("POST", "/h/chat/completions", healthy)
        write_config(Path(tmp))
        env = {"SOAK_KEY": KEY, "FLAKY_BASE_URL": srv.url + "/f", "HEALTHY_BASE_URL": srv.url + "/h"}
        router = Router.from_dir(catalog_dir(), tmp, env=env)
        rng = random.Random(seed + 1)
        end = time.monotonic() + minutes * 60
        messages = [{"role": "user", "content": "soak"}]

        async def one() -> None:
            nonlocal calls
            calls += 1
            pick = rng.random()
            try:
                async with asyncio.timeout(10):  # no call may hang the soak
                    if pick < 0.2:
                        model = ""
                        async for chunk in router.stream("flaky-fb", messages=messages):
                            model = chunk.model_name
                        ok_by_model[f"{model} (stream)"] += 1
                    else:
                        resp = await router.query("limited" if pick < 0.35 else "flaky-fb", messages=messages)
                        ok_by_model[resp.model_name] += 1
            except Exception as exc:
                errors[type(exc).__name__] += 1

        async def worker() -> None:
            while time.monotonic() < end and calls < max_calls:
                await one()

        async def report() -> None:
            started = time.monotonic()
            while True:
                await asyncio.sleep(10)
                srv.clear()  # the mock records every request; drop them so RSS shows the router alone
                print(f"[{time.monotonic() - started:5.0f}s] calls={calls} ok={dict(ok_by_model)} "
                      f"errors={dict(errors)} fds={fd_count()} rss={rss_mb():.1f}MB", flush=True)

        print(f"soak: {minutes:g} min, concurrency {concurrency}, fault rate {fault_rate:.0%}, "
              f"fds={fd_count()} rss={rss_mb():.1f}MB", flush=True)
        reporter = asyncio.create_task(report())
        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
            await router.aclose()
        print(f"done: calls={calls} ok={sum(ok_by_model.values())} by model={dict(ok_by_model)} "
              f"errors={dict(errors)} fds={fd_count()} rss={rss_mb():.1f}MB", flush=True)
    # a stream cut after its first chunk cannot fall back (by design); anything else is a failure
    return 1 if set(errors) - {"StreamInterrupted"} else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-calls", type=int, default=200_000)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    return asyncio.run(soak(args.minutes, args.concurrency, args.max_calls, args.fault_rate, args.seed))


if __name__ == "__main__":
    sys.exit(main())
