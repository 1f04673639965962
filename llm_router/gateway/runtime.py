"""One loaded config as the gateway serves it: the router, the state backend its limits share with
the keys' limits, the keys, and the readiness check. Built whole and validated before it serves;
replaced whole on reload (keeping the state backend when the `state:` settings did not change, so
limits, windows and spend carry over)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import load_catalog
from ..config.model import StateSettings
from ..errors import ConfigurationError, Problem
from ..router import Router
from ..state import StateBackend, build_state
from .config import GATEWAY_FILE, GatewayConfig, load_gateway
from .keys import KeyLimiter, KeyRing

log = logging.getLogger("llm_router.gateway")

READY_TIMEOUT_S = 0.5


@dataclass(eq=False)
class Runtime:
    config: GatewayConfig
    router: Router
    state: StateBackend
    state_settings: StateSettings
    keys: KeyRing
    limiter: KeyLimiter
    redis_url: str | None  # the shared state's Redis, pinged by /readyz
    loaded_at: int  # epoch seconds; the `created` of /v1/models entries
    _ping_client: Any = None

    async def readiness(self) -> dict[str, str]:
        """Each check's result ('ok' or what is wrong): the config is loaded; Redis answers when configured."""
        checks = {"config": "ok", "state": "ok" if self.redis_url is None else "unreachable"}
        if self.redis_url is not None:
            import redis.asyncio as aioredis  # installed whenever a Redis state is configured

            if self._ping_client is None:
                self._ping_client = aioredis.Redis.from_url(self.redis_url, socket_timeout=READY_TIMEOUT_S,
                                                            socket_connect_timeout=READY_TIMEOUT_S)
            try:
                if await self._ping_client.ping():
                    checks["state"] = "ok"
            except (OSError, aioredis.RedisError) as exc:
                checks["state"] = f"unreachable ({type(exc).__name__})"
        return checks

    async def aclose(self, keep_state: bool = False) -> None:
        await self.router.aclose()
        if self._ping_client is not None:
            await self._ping_client.aclose()
        if not keep_state:
            await self.state.aclose()


def build_runtime(dirs: Sequence[str | Path], env: Mapping[str, str], previous: Runtime | None = None) -> Runtime:
    """Load and check the catalog and gateway.yaml in `dirs`; raise ConfigurationError (every problem
    with its file and line) when anything is wrong, or when no key could call the gateway."""
    catalog, catalog_problems = load_catalog(dirs, env)
    gateway, gateway_problems = load_gateway(dirs, env, catalog.models, catalog.providers)
    keys = KeyRing(gateway, env.get(gateway.admin_key_env))
    errors = [p for p in catalog_problems + gateway_problems if p.severity == "error"]
    if not keys:
        errors.append(Problem(gateway.file or GATEWAY_FILE, None, f"no virtual keys in {GATEWAY_FILE} and "
                              f"{gateway.admin_key_env} is not set: nothing could call the gateway"))
    if errors:
        raise ConfigurationError(errors)
    for problem in gateway_problems:
        log.warning("%s", problem)
    if catalog_problems:
        log.warning("the catalog has %d warning(s), such as unset API keys; `llm-router validate` lists them",
                    len(catalog_problems))
    settings = catalog.settings.state
    if previous is not None and previous.state_settings == settings:
        state = previous.state
    else:
        state = build_state(settings, catalog.files, env)
    redis_url = None
    if settings.backend == "redis":
        redis_url = (env.get(settings.url_env) if settings.url_env else None) or settings.url
    return Runtime(gateway, Router(catalog, env, state=state), state, settings, keys, KeyLimiter(state), redis_url,
                   int(time.time()))
