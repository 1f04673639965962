"""`StateBackend` on Redis: limits, health and budgets shared by every process using one prefix.

Optional extra (`pip install llm-router[redis]`); nothing imports this module unless a Redis
state is asked for, so `import llm_router` never pulls in `redis`.

Every update is one server-side Lua script (EVALSHA; redis-py reloads a script Redis forgot after
a restart), so it is atomic and one round trip. Scripts read the time from Redis `TIME`: every
host measures windows and cooldowns on the same clock, and health reports a cooldown as the
seconds it has left. A ticket's handle is its request id: `release` settles that reservation and
no other.

Keys (prefix `p`, slot key `k`), all expiring: `p rpm:k` (ZSET request id → time), `p tpm:k`
(ZSET reservation id → time) with `p tok:k` (HASH id → tokens, `_sum` → their total), `p run:k`
(ZSET calls in flight), `p hl:k` (HASH `lat` moving average, `cool` cooldown end), `p fail:k`
(ZSET counted failures), `p probe:k` (the probe claim), `p spend:<budget key>` (USD).

Every operation is bounded by `timeout_s` (connecting, waiting for a pooled connection, the round
trip). Anything going wrong with it — a refused or reset connection, a server that accepts and
never answers, one that does not speak Redis (an HTTP server at that port) — is an outage: with
`on_error="local"` (the default) calls carry on with an in-process `LocalState` (one warning per
outage, one info line when Redis is back), with `on_error="fail"` they raise
`StateUnavailableError`. While Redis is down no call waits for it: a background task PINGs it
every `retry_interval_s` and puts it back in use once it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..routing.limits import WINDOW_S, LimitExceeded
from . import LATENCY_ALPHA, Health, LocalState, Outcome, Slot, StateUnavailableError, Ticket, WindowUse

__all__ = ["RedisState"]

log = logging.getLogger("llm_router")

_KEY_MARGIN_S = 60  # windows' keys outlive the window by this much
KEYS_CACHED = 4096  # slots whose Redis key names are kept built; a cache, so ad-hoc model names cannot grow it

# Check the rpm and tpm windows and, when both have room, record the request (and count it in
# flight) and return {'ok', requests, tokens} now in the windows (-1: no such limit); otherwise
# return {limit, seconds until room}.
# KEYS: rpm zset, tpm zset, token hash, in-flight zset.
# ARGV: rpm (-1: none), tpm (-1: none), tokens, id, track in flight (1/0), window s, key ttl s, in-flight max s.
_ACQUIRE = """
local rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local id, window, ttl = ARGV[4], tonumber(ARGV[6]), tonumber(ARGV[7])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local horizon = now - window
if rpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', horizon)
  local n = redis.call('ZCARD', KEYS[1])
  if n >= rpm then
    local nth = redis.call('ZRANGE', KEYS[1], n - rpm, n - rpm, 'WITHSCORES')
    if #nth == 0 then return {'rpm', tostring(window)} end
    return {'rpm', tostring(tonumber(nth[2]) + window - now)}
  end
end
if tpm >= 0 then
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', horizon)
  if #old > 0 then
    local freed = 0
    for i = 1, #old, 1000 do
      local chunk = {unpack(old, i, math.min(i + 999, #old))}
      for _, c in ipairs(redis.call('HMGET', KEYS[3], unpack(chunk))) do freed = freed + (tonumber(c) or 0) end
      redis.call('HDEL', KEYS[3], unpack(chunk))
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', horizon)
    redis.call('HINCRBY', KEYS[3], '_sum', -freed)
  end
  local total = tonumber(redis.call('HGET', KEYS[3], '_sum')) or 0
  if total + tokens > tpm and redis.call('ZCARD', KEYS[2]) > 0 then
    -- room comes when enough of the oldest reservations leave the window
    local freed, stamp, start = 0, now - window, 0
    while true do
      local entries = redis.call('ZRANGE', KEYS[2], start, start + 99, 'WITHSCORES')
      if #entries == 0 then break end
      local ids = {}
      for i = 1, #entries, 2 do ids[#ids + 1] = entries[i] end
      local counts = redis.call('HMGET', KEYS[3], unpack(ids))
      for i = 1, #ids do
        freed = freed + (tonumber(counts[i]) or 0)
        stamp = tonumber(entries[2 * i])
        if total - freed + tokens <= tpm then return {'tpm', tostring(stamp + window - now)} end
      end
      start = start + 100
    end
    return {'tpm', tostring(stamp + window - now)}
  end
end
if rpm >= 0 then
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('EXPIRE', KEYS[1], ttl)
end
if tpm >= 0 then
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('HSET', KEYS[3], id, tokens)
  redis.call('HINCRBY', KEYS[3], '_sum', tokens)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
if ARGV[5] == '1' then
  local stale = tonumber(ARGV[8])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - stale)
  redis.call('ZADD', KEYS[4], now, id)
  redis.call('EXPIRE', KEYS[4], math.ceil(stale))
end
local used_requests, used_tokens = -1, -1
if rpm >= 0 then used_requests = redis.call('ZCARD', KEYS[1]) end
if tpm >= 0 then used_tokens = tonumber(redis.call('HGET', KEYS[3], '_sum')) or 0 end
return {'ok', tostring(used_requests), tostring(used_tokens)}
"""

# Settle the reservation and the in-flight entry of request `id`, then record the outcome.
# KEYS: token hash, in-flight zset, health hash, failures zset, probe.
# ARGV: id ('' none), actual tokens (-1: unknown), latency ('' none), failed, counted,
#       failures threshold, failure window s, cooldown s, failure id, health ttl s, alpha.
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local id, actual = ARGV[1], tonumber(ARGV[2])
if id ~= '' then
  redis.call('ZREM', KEYS[2], id)
  if actual >= 0 then
    local reserved = tonumber(redis.call('HGET', KEYS[1], id))
    if reserved then
      redis.call('HSET', KEYS[1], id, actual)
      redis.call('HINCRBY', KEYS[1], '_sum', actual - reserved)
    end
  end
end
redis.call('DEL', KEYS[5])
local ttl, cooldown = tonumber(ARGV[10]), tonumber(ARGV[8])
if ARGV[4] == '0' then
  if ARGV[3] ~= '' then
    local latency, alpha = tonumber(ARGV[3]), tonumber(ARGV[11])
    local old = tonumber(redis.call('HGET', KEYS[3], 'lat'))
    if old then latency = alpha * latency + (1 - alpha) * old end
    redis.call('HSET', KEYS[3], 'lat', string.format('%.17g', latency))
    redis.call('EXPIRE', KEYS[3], ttl)
  end
  redis.call('HDEL', KEYS[3], 'cool')
  redis.call('DEL', KEYS[4])
  return 0
end
if ARGV[5] ~= '1' then return 0 end
local cool = tonumber(redis.call('HGET', KEYS[3], 'cool'))
if cool then
  if cool <= now then  -- the probe failed: cool down again at once
    redis.call('HSET', KEYS[3], 'cool', string.format('%.6f', now + cooldown))
    redis.call('EXPIRE', KEYS[3], ttl)
  end
  return 0
end
local window = tonumber(ARGV[7])
redis.call('ZADD', KEYS[4], now, ARGV[9])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - window)
if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[6]) then
  redis.call('HSET', KEYS[3], 'cool', string.format('%.6f', now + cooldown))
  redis.call('EXPIRE', KEYS[3], ttl)
  redis.call('DEL', KEYS[4])
else
  redis.call('EXPIRE', KEYS[4], math.ceil(window) + 1)
end
return 0
"""

# KEYS: (in-flight zset, health hash) per key. ARGV: in-flight max s.
# Returns (in flight, latency, seconds left of the cooldown) per key, on Redis's clock.
_HEALTH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i = 1, #KEYS, 2 do
  out[#out + 1] = redis.call('ZCOUNT', KEYS[i], now - tonumber(ARGV[1]), '+inf')
  local h = redis.call('HMGET', KEYS[i + 1], 'lat', 'cool')
  out[#out + 1] = h[1] or ''
  out[#out + 1] = h[2] and string.format('%.6f', tonumber(h[2]) - now) or ''
end
return out
"""

# KEYS: health hash, probe. ARGV: hold ms.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cool = tonumber(redis.call('HGET', KEYS[1], 'cool'))
if cool and cool > now then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
"""

# KEYS: spend counters. ARGV: (USD, ttl ms) per key; a counter's ttl is set when it is created.
_ADD_SPEND = """
for i, key in ipairs(KEYS) do
  redis.call('INCRBYFLOAT', key, ARGV[2 * i - 1])
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[2 * i]) end
end
return 0
"""

# KEYS: spend counters.
_SPENT = "return redis.call('MGET', unpack(KEYS))"


class RedisState:
    """`StateBackend` on Redis at `url` (e.g. "redis://127.0.0.1:6379/0"); see the module doc."""

    def __init__(
        self,
        url: str,
        key_prefix: str = "llm-router:",
        on_error: Literal["local", "fail"] = "local",
        *,
        retry_interval_s: float = 1.0,
        timeout_s: float = 1.0,
        max_connections: int = 32,
        in_flight_max_s: float = 600.0,
        health_ttl_s: float = 86400.0,
        local: LocalState | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if on_error not in ("local", "fail"):
            raise ValueError(f"on_error must be 'local' or 'fail', not {on_error!r}")

        def connect() -> aioredis.Redis:
            # A blocking pool: a burst of calls waits for a connection instead of failing. One
            # immediate retry lets a pooled connection that Redis dropped (a restart) reconnect.
            return aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=timeout_s, socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 1),
            ))

        self._connect = connect
        self._redis = connect()
        self._loop: asyncio.AbstractEventLoop | None = None
        kwargs = self._redis.connection_pool.connection_kwargs
        # where, for messages: never the URL itself, which may carry a password
        self.where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        self.key_prefix = key_prefix
        self.on_error = on_error
        self._retry_interval_s = retry_interval_s
        self._timeout_s = timeout_s
        self._in_flight_max_s = in_flight_max_s
        self._health_ttl_s = health_ttl_s
        self._local = local or LocalState()
        self._sleep = sleep
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)
        self._health = self._redis.register_script(_HEALTH)
        self._claim = self._redis.register_script(_CLAIM)
        self._add_spend = self._redis.register_script(_ADD_SPEND)
        self._spent = self._redis.register_script(_SPENT)
        self._ids = (f"{uuid.uuid4().hex[:12]}:{n}" for n in itertools.count())
        self._keys: dict[str, tuple[str, ...]] = {}
        self._down_since: float | None = None
        self._probe: asyncio.Task[None] | None = None

    # --- outage bookkeeping ------------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        """Redis failed: from now on calls do not wait for it (they carry on locally, or are
        refused) until the probe finds it answering again."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            if self.on_error == "local":
                log.warning("shared state: Redis at %s failed (%s: %s); using in-process state until it is back",
                            self.where, type(exc).__name__, exc)
        self._watch()
        if self.on_error == "fail":
            raise StateUnavailableError(
                f"shared state: Redis at {self.where} failed ({type(exc).__name__}: {exc}); the state policy is "
                "on_error: fail, so the call is refused (on_error: local would carry on with in-process state)"
            ) from exc

    def _unavailable(self) -> None:
        """Redis is down (the probe has not seen it answer yet)."""
        self._watch()
        if self.on_error == "fail":
            raise StateUnavailableError(
                f"shared state: Redis at {self.where} is unavailable (probed every {self._retry_interval_s:g}s); "
                "the state policy is on_error: fail, so the call is refused")

    def _watch(self) -> None:
        """Make sure a probe runs on this event loop while Redis is down."""
        if self._probe is None or self._probe.done() or self._probe.get_loop() is not asyncio.get_running_loop():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_back())

    async def _probe_until_back(self) -> None:
        """Out of every call's path: PING Redis every retry_interval_s until it answers."""
        while self._down_since is not None:
            await self._sleep(self._retry_interval_s)
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._client().ping()
            except Exception:  # still down, whatever the reason (see _call)
                continue
            log.info("shared state: Redis at %s is back after %.1fs; limits and health are shared again",
                     self.where, time.monotonic() - self._down_since)
            self._down_since = None

    def _client(self) -> aioredis.Redis:
        """The client for the running event loop: connections belong to the loop that opened them,
        so a state used from a new loop (a second `asyncio.run`) gets a new pool."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                self._redis = self._connect()
            self._loop = loop
        return self._redis

    async def _call(self, script: Any, keys: Sequence[str], args: Sequence[Any],
                    parse: Callable[[Any], Any] = lambda reply: reply) -> Any:
        """Run a script and parse its reply, within `timeout_s`; None when Redis is down and the
        policy is to carry on locally (StateUnavailableError when it is to refuse)."""
        if self._down_since is not None:
            self._unavailable()
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await script(keys=keys, args=args, client=self._client())
            return parse(reply)
        except Exception as exc:  # a socket error, a timeout, a server that does not speak Redis or answers
            self._failed(exc)  # nonsense: each is an outage, handled by the declared policy
            return None

    # --- keys --------------------------------------------------------------------------------------

    def _slot_keys(self, key: str) -> tuple[str, ...]:
        keys = self._keys.get(key)
        if keys is None:
            if len(self._keys) >= KEYS_CACHED:
                self._keys.clear()
            p = self.key_prefix
            keys = self._keys[key] = tuple(f"{p}{kind}:{key}" for kind in ("rpm", "tpm", "tok", "run", "hl", "fail", "probe"))
        return keys

    # --- StateBackend ------------------------------------------------------------------------------

    async def acquire(self, slot: Slot, tokens: int, max_wait_s: float) -> Ticket:
        if not slot.holds:
            return Ticket(slot)
        rpm_k, tpm_k, tok_k, run_k = self._slot_keys(slot.key)[:4]
        request_id = next(self._ids)
        args = (-1 if slot.rpm is None else slot.rpm, -1 if slot.tpm is None else slot.tpm, int(tokens), request_id,
                int(slot.track_in_flight), WINDOW_S, int(WINDOW_S) + _KEY_MARGIN_S, self._in_flight_max_s)
        deadline = time.monotonic() + max_wait_s
        while True:
            verdict = await self._call(self._acquire, (rpm_k, tpm_k, tok_k, run_k), args, _verdict)
            if verdict is None:  # carry on locally: the local ticket is this ticket's handle
                local = await self._local.acquire(slot, tokens, max(0.0, deadline - time.monotonic()))
                return Ticket(slot, local.tokens, local.use, local)
            if isinstance(verdict, WindowUse):
                return Ticket(slot, tokens if slot.tpm is not None else 0, verdict, request_id)
            what, wait = verdict
            if time.monotonic() + wait > deadline:
                raise LimitExceeded(what, wait)
            await self._sleep(max(wait, 0.001))

    async def release(self, ticket: Ticket, outcome: Outcome) -> None:
        handle, request_id = ticket.handle, ""
        if isinstance(handle, Ticket):  # acquired on the local state while Redis was down
            self._local.settle(handle, outcome.actual_tokens)
        elif isinstance(handle, str):
            request_id = handle
        _, _, tok_k, run_k, hl_k, fail_k, probe_k = self._slot_keys(ticket.slot.key)
        cooldown = outcome.cooldown
        args = (
            request_id, -1 if outcome.actual_tokens is None else int(outcome.actual_tokens),
            "" if outcome.latency_s is None else repr(float(outcome.latency_s)),
            int(outcome.failed), int(outcome.counts_for_cooldown and cooldown is not None),
            cooldown.failures if cooldown else 0, cooldown.window_s if cooldown else 0,
            cooldown.cooldown_s if cooldown else 0, next(self._ids),
            math.ceil(max(self._health_ttl_s, (cooldown.cooldown_s if cooldown else 0) + _KEY_MARGIN_S)),
            LATENCY_ALPHA,
        )
        if await self._call(self._release, (tok_k, run_k, hl_k, fail_k, probe_k), args) is None:
            self._local.record(ticket.slot.key, outcome)

    async def health(self, keys: Sequence[str]) -> dict[str, Health]:
        if not keys:
            return {}
        redis_keys = []
        for key in keys:
            slot_keys = self._slot_keys(key)
            redis_keys += [slot_keys[3], slot_keys[4]]
        reply = await self._call(self._health, redis_keys, (self._in_flight_max_s,), _health_rows)
        if reply is None:
            return await self._local.health(keys)
        return dict(zip(keys, reply, strict=True))

    async def claim_probe(self, key: str, hold_s: float) -> bool:
        slot_keys = self._slot_keys(key)
        claimed = await self._call(self._claim, (slot_keys[4], slot_keys[6]), (max(1, int(hold_s * 1000)),), bool)
        if claimed is None:
            return await self._local.claim_probe(key, hold_s)
        return bool(claimed)

    async def add_spend(self, entries: Sequence[tuple[str, float, float]]) -> None:
        if not entries:
            return
        keys = [f"{self.key_prefix}spend:{key}" for key, _, _ in entries]
        args = [a for _, usd, ttl_s in entries for a in (repr(float(usd)), max(1, int(ttl_s * 1000)))]
        if await self._call(self._add_spend, keys, args) is None:
            await self._local.add_spend(entries)

    async def spent(self, keys: Sequence[str]) -> dict[str, float]:
        if not keys:
            return {}
        redis_keys = [f"{self.key_prefix}spend:{key}" for key in keys]
        values = await self._call(self._spent, redis_keys, (), lambda r: [0.0 if v is None else float(v) for v in r])
        if values is None:
            return await self._local.spent(keys)
        return dict(zip(keys, values, strict=True))

    async def aclose(self) -> None:
        current = asyncio.get_running_loop()
        if self._probe is not None and self._probe.get_loop() is current:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        self._probe = None
        if self._loop is None or self._loop is current:
            await self._redis.aclose()


def _verdict(reply: Any) -> WindowUse | tuple[str, float]:
    """The acquire script's answer: what the windows hold once admitted, or (full limit, seconds until room)."""
    what = reply[0].decode()
    if what == "ok":
        requests, tokens = int(reply[1]), int(reply[2])
        return WindowUse(requests if requests >= 0 else None, tokens if tokens >= 0 else None)
    if what not in ("rpm", "tpm"):
        raise ValueError(f"unexpected acquire reply {what!r}")
    return what, float(reply[1])


def _health_rows(reply: Any) -> list[Health]:
    return [Health(int(reply[i]), float(reply[i + 1]) if reply[i + 1] else None,
                   float(reply[i + 2]) if reply[i + 2] else None) for i in range(0, len(reply), 3)]
