"""Start-up cost: import time, catalog load time, resident memory; each the median of fresh processes.

    python bench/startup.py [--runs 5] [--models 1000] [--providers 50] [--others-python PY]

Every figure comes from a new interpreter, so no import is ever warm in-process (the OS file
cache is warm after the first run, as it is on a server that restarts).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gen_catalog import write_catalog  # noqa: E402

PRELUDE = """
import json, resource, time
def rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

IMPORT_ROUTER = PRELUDE + """
t = time.perf_counter()
import llm_router
print(json.dumps({"s": time.perf_counter() - t, "rss_mb": rss_mb()}))
"""

LOAD = PRELUDE + """
import sys
import llm_router
from llm_router import Router
from llm_router._resources import catalog_dir
dirs = [catalog_dir(), *sys.argv[1:]]
before = rss_mb()
t = time.perf_counter()
router = Router.from_dir(*dirs, env={})
s = time.perf_counter() - t
print(json.dumps({"s": s, "rss_mb": rss_mb(), "delta_mb": rss_mb() - before, "models": len(router.models),
                  "providers": len(router.providers)}))
"""

IMPORT_LITELLM = PRELUDE + """
t = time.perf_counter()
import litellm
print(json.dumps({"s": time.perf_counter() - t, "rss_mb": rss_mb()}))
"""

IMPORT_OPENAI = IMPORT_LITELLM.replace("import litellm", "import openai")

BASELINE = PRELUDE + """
print(json.dumps({"s": 0.0, "rss_mb": rss_mb()}))
"""


def measure(python: str, code: str, args: list[str], runs: int) -> dict[str, float] | str:
    samples = []
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    for _ in range(runs):
        done = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env)
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or ["failed"])[-1][:120]
        samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--providers", type=int, default=50)
    parser.add_argument("--others-python", default=sys.executable, help="interpreter with litellm/openai installed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="llmr-catalog-") as tmp:
        write_catalog(Path(tmp), args.models, args.providers)
        rows = [
            ("python -c pass (baseline RSS)", sys.executable, BASELINE, [], None),
            ("import llm_router", sys.executable, IMPORT_ROUTER, [], 0.3),
            ("Router.from_dir() bundled", sys.executable, LOAD, [], 0.1),
            (f"from_dir() +{args.models} models/{args.providers} providers", sys.executable, LOAD, [tmp], 1.0),
            ("import openai", args.others_python, IMPORT_OPENAI, [], None),
            ("import litellm", args.others_python, IMPORT_LITELLM, [], None),
        ]
        print(f"median of {args.runs} fresh processes each (Python {sys.version.split()[0]})")
        print(f"{'what':44s}{'seconds':>9s}{'target':>8s}{'RSS MB':>8s}  notes")
        for label, python, code, extra, target in rows:
            result = measure(python, code, extra, args.runs)
            if isinstance(result, str):
                print(f"{label:44s}{'-':>9s}{'':>8s}{'-':>8s}  not measured: {result}")
                continue
            goal = f"<{target:g}" if target else ""
            verdict = "" if target is None else ("ok" if result["s"] < target else "OVER TARGET")
            notes = verdict
            if "models" in result:
                notes += f" ({result['models']:.0f} models, {result['providers']:.0f} providers; load adds {result['delta_mb']:.1f} MB)"
            seconds = f"{result['s']:.3f}" if result["s"] else "-"
            print(f"{label:44s}{seconds:>9s}{goal:>8s}{result['rss_mb']:>8.1f}  {notes.strip()}")


if __name__ == "__main__":
    main()
