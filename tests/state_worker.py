"""One router process for tests/test_state_multiprocess.py (run as `python tests/state_worker.py JSON`).

JSON: {"redis": url, "prefix": key prefix, "do": what, ...}. What:
- "query": build a Router on `config` (a config dir) with `env`, its limits on RedisState; print
  READY, wait for a line on stdin, send `n` queries of `model` at once; print {"ok", "refused"}.
- "fail": release `n` counted failures of slot `key` (cooldown `cooldown_s`); print {}.
- "health": print {"cooldown_left_s": ..., "in_flight": ...} of `key`.
- "spend": add `usd` to budget `key`; "spent": print {"spent": ...} of `key`.
Every result is one JSON line on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from llm_router import RateLimitError, Router
from llm_router._resources import catalog_dir
from llm_router.state import Cooldown, Outcome, Slot, Ticket
from llm_router.state.redis import RedisState

USER = [{"role": "user", "content": "hi"}]


async def main(args: dict[str, Any]) -> dict[str, Any]:
    # generous timeouts: three processes start at once on a loaded machine; this is about sharing, not outages
    state = RedisState(args["redis"], key_prefix=args["prefix"], on_error="fail", timeout_s=5)
    try:
        if args["do"] == "query":
            router = Router.from_dir(catalog_dir(), args["config"], env=args["env"], state=state)
            print("READY", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            async with router, asyncio.timeout(8):
                results = await asyncio.gather(*(router.query(args["model"], USER) for _ in range(args["n"])),
                                               return_exceptions=True)
            errors = [r for r in results if isinstance(r, Exception) and not isinstance(r, RateLimitError)]
            if errors:
                raise errors[0]
            return {"ok": sum(not isinstance(r, Exception) for r in results),
                    "refused": sum(isinstance(r, RateLimitError) for r in results)}
        if args["do"] == "fail":
            cooldown = Cooldown(failures=args["n"], window_s=60, cooldown_s=args["cooldown_s"])
            for _ in range(args["n"]):
                await state.release(Ticket(Slot(args["key"])), Outcome(failed=True, counts_for_cooldown=True, cooldown=cooldown))
            return {}
        if args["do"] == "health":
            health = (await state.health([args["key"]]))[args["key"]]
            return {"cooldown_left_s": health.cooldown_left_s, "in_flight": health.in_flight}
        if args["do"] == "spend":
            await state.add_spend([(args["key"], args["usd"], 3600)])
            return {}
        if args["do"] == "spent":
            return {"spent": (await state.spent([args["key"]]))[args["key"]]}
        raise SystemExit(f"unknown action {args['do']!r}")
    finally:
        await state.aclose()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
