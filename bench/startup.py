"""Start-up cost: import time, catalog load time, resident memory; each the median of fresh processes.

    python bench/startup.py [--runs 7] [--models 1000] [--providers 50] [--others-python PY] [--top 15]

Every figure comes from a new interpreter, so no import is ever warm in-process (the OS file
cache and the .pyc files are warm after the first run, as on a server that restarts; the children
run with PYTHONDONTWRITEBYTECODE unset, and one run is made and dropped first). On a shared
machine wall times swing with the load, so each row also gives their range and the process CPU
time of the same span (which waits for no one), and the last table gives `-X importtime`
self-times per group of modules.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from gen_catalog import write_catalog  # noqa: E402

FIRST_MODELS = "openai/gpt-4.1,claude-sonnet-4-5,llama-3.3-70b-versatile"  # groq: a JSONPath that needs the library
PRELUDE = """
import json, resource, time
def rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

IMPORT_PACKAGE = PRELUDE + """
t, c = time.perf_counter(), time.process_time()
import llm_router
print(json.dumps({"s": time.perf_counter() - t, "cpu_s": time.process_time() - c, "rss_mb": rss_mb()}))
"""

IMPORT_ROUTER = IMPORT_PACKAGE.replace("import llm_router", "from llm_router import Router")

LOAD = PRELUDE + """
import sys
from llm_router import Router
from llm_router._resources import catalog_dir
if sys.argv[1] == "no-digest":  # as before the digest: every bundled file through the JSON Schema pass
    from llm_router.config import digest
    digest.DIGEST_FILE = digest.DIGEST_FILE.with_name("no-such-digest.json")
dirs = [catalog_dir(), *sys.argv[2:]]
before = rss_mb()
t, c = time.perf_counter(), time.process_time()
router = Router.from_dir(*dirs, env={})
s, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"s": s, "cpu_s": cpu, "rss_mb": rss_mb(), "delta_mb": rss_mb() - before, "models": len(router.models),
                  "providers": len(router.providers)}))
"""

FIRST_CALL = PRELUDE + """
import asyncio, sys
from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.config import load_catalog
from llm_router.engine.transport import Reply

REPLIES = {
    "openai": b'{"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, '
              b'"finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}',
    "anthropic": b'{"id": "m", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "Hi"}], '
                 b'"stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 2}}',
}


class Instant:  # the engine's transport seam, answering at once: only the router's own work is timed
    def __call__(self, settings):
        return self

    async def send(self, request):
        return Reply(200, {"content-type": "application/json"}, REPLIES["anthropic" if request.url.endswith("/messages") else "openai"])

    async def aclose(self):
        return None


env = {"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k", "GROQ_API_KEY": "k"}
catalog, _ = load_catalog([catalog_dir()], env)  # what Router.from_dir() does, with a transport of our own
router = Router(catalog, env, transport=Instant())
messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


async def first() -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    for model in sys.argv[1].split(","):
        await router.query(model, messages)
    return time.perf_counter() - t, time.process_time() - c


s, cpu = asyncio.run(first())
print(json.dumps({"s": s, "cpu_s": cpu, "rss_mb": rss_mb()}))
"""

IMPORT_LITELLM = PRELUDE + """
t, c = time.perf_counter(), time.process_time()
import litellm
print(json.dumps({"s": time.perf_counter() - t, "cpu_s": time.process_time() - c, "rss_mb": rss_mb()}))
"""

IMPORT_OPENAI = IMPORT_LITELLM.replace("import litellm", "import openai")

BASELINE = PRELUDE + """
print(json.dumps({"s": 0.0, "cpu_s": 0.0, "rss_mb": rss_mb()}))
"""


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return env


def measure(python: str, code: str, args: list[str], runs: int) -> dict[str, float] | str:
    samples = []
    for i in range(runs + 1):  # the first run writes or checks the .pyc files and is dropped
        done = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, timeout=120, env=child_env(), cwd=ROOT)
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or ["failed"])[-1][:120]
        if i:
            samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
    out = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    out["min"], out["max"] = min(s["s"] for s in samples), max(s["s"] for s in samples)
    return out


LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_groups(code: str, runs: int) -> list[tuple[str, float, str]]:
    """Median self-time per group over `runs` processes: each llm_router module on its own; every other module
    counts toward what an llm_router module imported (httpx2's ssl and email count as httpx2)."""
    totals: list[collections.Counter[str]] = []
    by: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                              timeout=120, env=child_env(), cwd=ROOT)
        chain: list[str] = []
        seen: collections.Counter[str] = collections.Counter()
        # importtime prints a module after the ones it imported, one level of indent per level of nesting
        for self_us, _cum, indent, name in reversed(LINE.findall(done.stderr)):
            depth = (len(indent) - 1) // 2
            chain = [*chain[:depth], name]
            ours = [i for i, m in enumerate(chain) if m.split(".")[0] == "llm_router"]
            if not ours:
                continue  # interpreter start-up (site, encodings, ...)
            last = ours[-1]
            group = name if last == len(chain) - 1 else chain[last + 1].split(".")[0]
            seen[group] += int(self_us) / 1000
            if last != len(chain) - 1:
                by[group][chain[last]] += 1
        totals.append(seen)
    groups = set().union(*totals)
    rows = [(g, statistics.median(t.get(g, 0.0) for t in totals), by[g].most_common(1)[0][0] if by[g] else "") for g in groups]
    return sorted(rows, key=lambda r: -r[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--providers", type=int, default=50)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--others-python", default=sys.executable, help="interpreter with litellm/openai installed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="llmr-catalog-") as tmp:
        write_catalog(Path(tmp), args.models, args.providers)
        rows = [
            ("python -c pass (baseline RSS)", sys.executable, BASELINE, [], None),
            ("import llm_router", sys.executable, IMPORT_PACKAGE, [], 0.15),
            ("from llm_router import Router", sys.executable, IMPORT_ROUTER, [], 0.15),
            ("Router.from_dir() bundled", sys.executable, LOAD, ["digest"], 0.05),
            ("  the same, digest ignored (full schema pass)", sys.executable, LOAD, ["no-digest"], None),
            ("  then the first query (in-memory transport)", sys.executable, FIRST_CALL, ["openai/gpt-4.1"], None),
            ("  then first queries of 3 providers", sys.executable, FIRST_CALL, [FIRST_MODELS], None),
            (f"from_dir() +{args.models} models/{args.providers} providers", sys.executable, LOAD, ["digest", tmp], 1.0),
            ("import openai", args.others_python, IMPORT_OPENAI, [], None),
            ("import litellm", args.others_python, IMPORT_LITELLM, [], None),
        ]
        print(f"median (min-max) of {args.runs} fresh processes each (Python {sys.version.split()[0]})")
        print(f"{'what':48s}{'seconds':>9s}{'min-max':>14s}{'CPU s':>8s}{'target':>8s}{'RSS MB':>8s}  notes")
        for label, python, code, extra, target in rows:
            result = measure(python, code, extra, args.runs)
            if isinstance(result, str):
                print(f"{label:48s}{'-':>9s}{'':>14s}{'':>8s}{'':>8s}{'-':>8s}  not measured: {result}")
                continue
            goal = f"<{target:g}" if target else ""
            notes = "" if target is None else ("ok" if result["s"] < target else "OVER TARGET")
            if "models" in result:
                notes += f" ({result['models']:.0f} models, {result['providers']:.0f} providers; load adds {result['delta_mb']:.1f} MB)"
            seconds, spread, cpu = ((f"{result['s']:.3f}", f"{result['min']:.3f}-{result['max']:.3f}", f"{result['cpu_s']:.3f}")
                                    if result["s"] else ("-", "", "-"))
            print(f"{label:48s}{seconds:>9s}{spread:>14s}{cpu:>8s}{goal:>8s}{result['rss_mb']:>8.1f}  {notes.strip()}")

    code = "from llm_router import Router; Router.from_dir(env={})"
    groups = import_groups(code, args.runs)
    print(f"\n-X importtime of `{code}`: self ms per group, median of {args.runs}; total {sum(r[1] for r in groups):.1f} ms")
    print(f"{'module, or library with what it imports':44s}{'ms':>8s}  first imported by")
    for name, ms, importer in groups[: args.top]:
        print(f"{name:44s}{ms:8.1f}  {importer}")


if __name__ == "__main__":
    main()
