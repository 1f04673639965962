"""Router processes sharing one RedisState: limits, cooldowns and budgets hold across processes,
counted at a loopback provider server."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mockserver import MockServer, Reply, openai_chat_reply

pytest_plugins = ["redis_server"]

WORKER = str(Path(__file__).with_name("state_worker.py"))
PROVIDER = """\
extends: openai-compatible
name: shared
base_url: http://127.0.0.1:9/v1
base_url_env: SHARED_BASE_URL
auth: {header: Authorization, scheme: Bearer, env: SHARED_API_KEY}
hosts: [127.0.0.1]
"""
MODELS = """\
models:
  limited:
    provider: shared
    pricing: unknown
    limits: {rpm: 30, max_wait_s: 0}
"""


def run_worker(**args) -> dict:
    done = subprocess.run([sys.executable, WORKER, json.dumps(args)], check=False, capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_three_router_processes_sharing_an_rpm_limit_send_at_most_the_limit(write_config, redis_url, unique_prefix):
    site = write_config({"providers.d/shared.yaml": PROVIDER, "models.d/m.yaml": MODELS})
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        args = {"redis": redis_url, "prefix": unique_prefix, "do": "query", "config": str(site), "model": "limited",
                "n": 25, "env": {"SHARED_API_KEY": "sk-test-123456", "SHARED_BASE_URL": srv.url + "/v1"}}
        procs = [subprocess.Popen([sys.executable, WORKER, json.dumps(args)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
        try:
            for proc in procs:  # every router built; then all fire at once
                assert proc.stdout is not None and proc.stdout.readline().strip() == "READY", proc.stderr
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            results = []
            for proc in procs:
                out, err = proc.communicate(timeout=10)
                assert proc.returncode == 0, err[-3000:]
                results.append(json.loads(out.splitlines()[-1]))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert srv.count("/v1/chat/completions") == 30  # 75 asked, 30 a minute allowed, across 3 processes
    assert sum(r["ok"] for r in results) == 30
    assert sum(r["refused"] for r in results) == 45


def test_cooldown_tripped_in_one_process_is_seen_in_another(redis_url, unique_prefix):
    common = {"redis": redis_url, "prefix": unique_prefix, "key": "gpt-4.1@azure"}
    before = time.monotonic()
    run_worker(**common, do="fail", n=3, cooldown_s=30)
    seen = run_worker(**common, do="health")
    assert seen["cooldown_left_s"] is not None and 30 - (time.monotonic() - before) - 0.5 < seen["cooldown_left_s"] <= 30


def test_budget_spend_added_in_one_process_is_counted_in_another(redis_url, unique_prefix):
    common = {"redis": redis_url, "prefix": unique_prefix, "key": "router:2026-11-25"}
    run_worker(**common, do="spend", usd=0.75)
    run_worker(**common, do="spend", usd=0.5)
    assert run_worker(**common, do="spent")["spent"] == pytest.approx(1.25)
