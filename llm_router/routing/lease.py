"""One attempt, one lease: everything the router does around one try of one deployment.

A `Walk` goes over one call's chain — its models in order, each model's deployments in its
strategy's order — and admits each deployment in turn (cooldown and probe, budgets, rate limits);
an admitted deployment is a `Lease`, used as `async with lease:` around the send. The lease
closes exactly once, whatever ends it: the send returning, a provider error, the task
cancelled, a caller who stops reading a stream, the router closed. Closing gives the state
ticket back with the real usage, records the `Attempt` (usage totals, spend, the `on_attempt`
hook) and decides whether the call may move on to the next deployment or model.

`Router.query` and `Router.stream` are two thin loops over leases; an operation kind that sends
one request per attempt (embeddings, speech, ...) is one more such loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from ..config.model import Catalog, ModelConfig
from ..errors import (
    AllAttemptsFailed,
    BudgetExceeded,
    ErrorKind,
    ProviderError,
    RouterClosedError,
    RouterError,
    UnsupportedCapabilityError,
)
from ..inputs import input_text
from ..pricing import price
from ..state import Ticket
from ..types import Attempt, CostBreakdown, Usage
from ..usage import UsageTotals
from .balance import Balancer, Route, Target
from .budgets import BudgetLedger
from .calls import Calls

log = logging.getLogger("llm_router")

HOOK_EVENTS = ("on_attempt", "on_success", "on_failure")
ADHOC_ROUTES = 1024  # routes of 'provider/upstream' models kept at once; beyond, they are built again


class Planned(NamedTuple):
    """One model of a call's chain, with the params and the `reasoning` variable it gets."""

    model: ModelConfig
    params: dict[str, Any]
    reasoning: Mapping[str, Any] | None


class Hooks:
    """Callables run on `on_attempt` (an `Attempt`), `on_success` (an `LLMResponse`) and
    `on_failure` (the `RouterError` the caller gets); sync or async, and never able to break a call."""

    def __init__(self) -> None:
        self._hooks: dict[str, list[Callable[..., Any]]] = {e: [] for e in HOOK_EVENTS}

    def add(self, event: str, hook: Callable[..., Any]) -> None:
        if event not in self._hooks:
            raise ValueError(f"unknown hook event {event!r}; events: {', '.join(HOOK_EVENTS)}")
        self._hooks[event].append(hook)

    def __contains__(self, event: str) -> bool:
        """Whether any hook runs on `event` (a call with none skips building and awaiting the emit)."""
        return bool(self._hooks[event])

    async def emit(self, event: str, payload: Any) -> None:
        for hook in self._hooks[event]:
            try:
                result = hook(payload)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a metrics hook must never break a call
                log.exception("hook %s raised; ignored", getattr(hook, "__name__", hook))


class Leases:
    """Opens and closes the attempts of one router's calls; what every attempt records into."""

    def __init__(self, catalog: Catalog, balancer: Balancer, budgets: BudgetLedger, usage: UsageTotals, hooks: Hooks,
                 calls: Calls, can_stream: Callable[[ModelConfig, Target], bool]) -> None:
        self.catalog = catalog
        self.balancer = balancer
        self.budgets = budgets
        self.usage = usage
        self.hooks = hooks
        self.calls = calls
        self.can_stream = can_stream
        self.fallback_on = catalog.settings.fallback_on
        self._routes = {n: balancer.build_route(m) for n, m in catalog.models.items()}

    def route(self, model: ModelConfig) -> Route:
        route = self._routes.get(model.name)
        if route is None:  # a 'provider/upstream' model: built on first use, kept (bounded)
            if len(self._routes) >= len(self.catalog.models) + ADHOC_ROUTES:
                self._routes = {n: r for n, r in self._routes.items() if n in self.catalog.models}
            route = self._routes[model.name] = self.balancer.build_route(model)
        return route

    def missing(self, model: ModelConfig, needs: frozenset[str]) -> list[str]:
        """What the call needs that a catalog model does not declare (a 'provider/upstream' model is taken at its word)."""
        if not needs or model.name not in self.catalog.models:
            return []
        return sorted(needs - model.capabilities)

    def walk(self, plan: Iterable[Planned], messages: Any, prompt: Any, needs: frozenset[str] = frozenset(),
             streaming: bool = False) -> Walk:
        return Walk(self, plan, messages, prompt, needs, streaming)


class Walk:
    """One call's way through its chain: `await walk.next()` is the next deployment admitted, as a
    Lease, or None when the chain ran out (then `await walk.exhausted()` is the error to raise).
    A model without a capability the call needs, and a model none of whose deployments could be
    tried (all cooling down), are failed attempts with no deployment."""

    __slots__ = ("_health", "_leases", "_needs", "_plan", "_planned", "_route", "_streaming", "_targets", "_tried",
                 "attempts", "errors", "messages", "prompt")

    def __init__(self, leases: Leases, plan: Iterable[Planned], messages: Any, prompt: Any, needs: frozenset[str],
                 streaming: bool) -> None:
        self._leases = leases
        self._plan = iter(plan)
        self._needs = needs
        self._streaming = streaming
        self._planned: Planned | None = None
        self._route: Route | None = None
        self._targets: Iterator[Target] = iter(())
        self._health: Any = None
        self._tried = False
        self.messages = messages
        self.prompt = prompt
        self.attempts: list[Attempt] = []
        self.errors: list[RouterError] = []

    async def next(self) -> Lease | None:
        leases = self._leases
        while True:
            planned, route = self._planned, self._route
            target = next(self._targets, None)
            if target is None:
                if planned is not None and route is not None and not self._tried:
                    error: RouterError = await leases.balancer.cooling_error(planned.model, route)
                    if not await self.failed(planned.model, None, error):
                        raise error
                planned = self._planned = next(self._plan, None)
                if planned is None:
                    return None
                missing = leases.missing(planned.model, self._needs) if self._needs else None
                if missing:
                    self._route = None
                    await self.failed(planned.model, None, UnsupportedCapabilityError(
                        planned.model.name, missing, sorted(planned.model.capabilities)))  # always moves on
                    continue
                self._route = leases.route(planned.model)
                order, self._health = await leases.balancer.order(self._route)
                self._targets, self._tried = iter(order), False
                continue
            assert planned is not None and route is not None
            if self._streaming and not leases.can_stream(planned.model, target):
                continue
            if self._health is not None and not await leases.balancer.may_try(route, target, self._health):
                continue
            self._tried = True
            started = time.perf_counter()
            try:
                ticket = await leases.balancer.admit(planned.model, target, self.messages, self.prompt, planned.params)
            except RouterError as error:  # a limit or a budget: nothing was sent
                if not await self.failed(planned.model, target, error, started):
                    raise
                if isinstance(error, BudgetExceeded) and error.scope != "provider":
                    self._targets = iter(())  # the model's other deployments share this budget
                continue
            return Lease(self, planned, route, target, ticket, started)

    async def failed(self, model: ModelConfig, target: Target | None, error: RouterError, started: float | None = None,
                     usage: Usage | None = None, cost: float | None = None, may_move_on: bool = True) -> bool:
        """Record a failed attempt; True when the call moves on (to the next deployment or model).
        False: the error is the call's (it gets the attempts and goes to `on_failure`); raise it."""
        leases = self._leases
        provider = target.provider if target is not None else model.provider
        deployment = target.deployment if target is not None else None
        status = getattr(error, "status", None)
        message = getattr(error, "message", None) or str(error)
        latency = time.perf_counter() - started if started is not None else 0.0
        attempt = Attempt(model.name, provider, False, status, message, error.kind, getattr(error, "tries", 1), latency,
                          deployment, usage, cost)
        self.attempts.append(attempt)
        self.errors.append(error)
        leases.usage.record(model.name, provider, usage, cost, ok=False, adhoc=model.name not in leases.catalog.models)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("attempt failed: model=%s provider=%s status=%s kind=%s tries=%d latency=%.3fs%s: %s",
                      model.name, provider, status, error.kind, attempt.tries, latency,
                      f" deployment={deployment}" if deployment else "", message)
        await leases.hooks.emit("on_attempt", attempt)
        moves_on = may_move_on and (
            (isinstance(error, ProviderError) and error.kind in leases.fallback_on)
            or (isinstance(error, BudgetExceeded) and error.on_exceed == "fallback")
            or isinstance(error, UnsupportedCapabilityError))
        if moves_on:
            return True
        error.attempts = self.attempts
        await leases.hooks.emit("on_failure", error)
        return False

    async def exhausted(self) -> RouterError:
        """The error for a chain that ran out: the error itself when only one attempt was made."""
        error = self.errors[0] if len(self.errors) == 1 else AllAttemptsFailed(self.attempts, self.errors)
        error.attempts = self.attempts
        await self._leases.hooks.emit("on_failure", error)
        return error


class Lease:
    """One admitted deployment of one call. The body of `async with lease:` sends the request and
    reports what came back (`succeeded`, and for a stream `delivered` and `usage` as chunks
    arrive); leaving the block closes the lease. A failure the call may move on from is
    suppressed (`ok` stays False: the loop goes on to the next lease); any other leaves the block."""

    __slots__ = ("_open", "breakdown", "delivered", "ok", "planned", "route", "started", "status", "target", "ticket",
                 "tries", "usage", "walk")

    def __init__(self, walk: Walk, planned: Planned, route: Route, target: Target, ticket: Ticket,
                 started: float) -> None:
        self.walk = walk
        self.planned = planned
        self.route = route
        self.target = target
        self.ticket = ticket
        self.started = started
        self.usage = Usage()
        self.status = 200
        self.tries = 1
        self.delivered = 0  # characters a stream delivered to its caller
        self.ok = False
        self.breakdown: CostBreakdown | None = None  # what a successful attempt cost
        self._open = True

    def succeeded(self, usage: Usage, status: int = 200, tries: int = 1) -> None:
        self.usage, self.status, self.tries = usage, status, tries

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if not self._open:
            return False
        self._open = False
        latency = time.perf_counter() - self.started
        calls = self.walk._leases.calls
        if exc is None:
            await self._close_ok(latency)
            return False
        if calls.closed and isinstance(exc, Exception) and not isinstance(exc, RouterClosedError):
            # the router closed under the call (its HTTP clients first): whatever that raised, the call ends so
            closed = RouterClosedError("the router was closed (aclose()) while this call was in flight")
            await self._close_failed(closed)
            raise closed from exc
        if isinstance(exc, RouterError):
            return await self._close_failed(exc)
        settle = self._interrupted(exc, calls)
        if isinstance(exc, asyncio.CancelledError):
            calls.later(settle)  # cancellation is prompt; the bookkeeping finishes in the background
        else:
            await settle
        return False

    async def _close_ok(self, latency: float) -> None:
        leases, planned, target, usage = self.walk._leases, self.planned, self.target, self.usage
        model = planned.model
        await leases.balancer.release(self.route, self.ticket, usage, latency, None)
        breakdown = self.breakdown = price(target.pricing, model.kind, usage, planned.params)
        cost = breakdown.total if breakdown is not None else None
        # positional: a keyword argument costs ~0.1 µs in Python 3.11, and this runs on every call
        attempt = Attempt(model.name, target.provider, True, self.status, None, None, self.tries, latency, target.deployment,
                          usage, cost)
        self.walk.attempts.append(attempt)
        self.ok = True
        leases.usage.record(model.name, target.provider, usage, cost, True, model.name not in leases.catalog.models)
        if cost is not None and target.budgets:
            await leases.budgets.spend(target.budgets, cost)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("attempt ok: model=%s provider=%s status=%s tries=%d latency=%.3fs tokens=%s/%s%s",
                      model.name, target.provider, self.status, self.tries, latency, usage.input_tokens,
                      usage.output_tokens, f" deployment={target.deployment}" if target.deployment else "")
        if "on_attempt" in leases.hooks:
            await leases.hooks.emit("on_attempt", attempt)

    async def _close_failed(self, error: RouterError) -> bool:
        """Give the ticket back, charge what a stream delivered, record; True when the call moves on."""
        leases = self.walk._leases
        usage, cost = self._partial()
        await leases.balancer.release(self.route, self.ticket, usage, None, error)
        if cost is not None and self.target.budgets:
            await leases.budgets.spend(self.target.budgets, cost)
        return await self.walk.failed(self.planned.model, self.target, error, self.started, usage, cost,
                                      may_move_on=not self.delivered)  # a stream moves on only before its first chunk

    def _partial(self) -> tuple[Usage | None, float | None]:
        """What an attempt that delivered part of an answer used and cost: the counts the provider
        reported, the rest estimated (the input from its size, the output from the characters
        delivered, 4 characters a token). Nothing for an attempt that delivered nothing."""
        if not self.delivered:
            return None, None
        usage = Usage(**{name: getattr(self.usage, name) for name in Usage.__slots__})
        if usage.input_tokens is None:
            usage.input_tokens = len(input_text(self.walk.messages, self.walk.prompt)) // 4
        if usage.output_tokens is None:
            usage.output_tokens = -(-self.delivered // 4)
        breakdown = price(self.target.pricing, self.planned.model.kind, usage, self.planned.params)
        return usage, breakdown.total if breakdown is not None else None

    def _interrupted(self, exc: BaseException, calls: Calls) -> Coroutine[Any, Any, None]:
        """The send did not end by itself: the task was cancelled, the caller stopped reading the
        stream, the router closed, or something raised that is no RouterError. The attempt is
        recorded at once; the rest (the ticket given back, the spend, the hook) is returned to run."""
        leases, model, target = self.walk._leases, self.planned.model, self.target
        if calls.closed:
            kind, message = ErrorKind.CLOSED, "the router was closed while the attempt was in flight"
        elif isinstance(exc, asyncio.CancelledError):
            kind, message = ErrorKind.CANCELLED, "the call was cancelled"
        elif isinstance(exc, GeneratorExit):
            kind, message = ErrorKind.CANCELLED, f"the caller stopped reading the stream after {self.delivered} characters"
        else:  # a bug: the caller gets it with its traceback; its text stays out of hooks and logs
            kind, message = ErrorKind.ROUTER_ERROR, f"the attempt ended with {type(exc).__name__}, which is not a RouterError"
        usage, cost = self._partial()
        attempt = Attempt(model.name, target.provider, False, None, message, kind, self.tries,
                          time.perf_counter() - self.started, target.deployment, usage, cost)
        self.walk.attempts.append(attempt)
        leases.usage.record(model.name, target.provider, usage, cost, ok=False, adhoc=model.name not in leases.catalog.models)
        log.debug("attempt interrupted: model=%s provider=%s%s: %s", model.name, target.provider,
                  f" deployment={target.deployment}" if target.deployment else "", message)
        return self._settle(exc, attempt)

    async def _settle(self, exc: BaseException, attempt: Attempt) -> None:
        leases = self.walk._leases
        await leases.balancer.release(self.route, self.ticket, attempt.usage, None, exc)
        if attempt.cost is not None and self.target.budgets:
            await leases.budgets.spend(self.target.budgets, attempt.cost)
        await leases.hooks.emit("on_attempt", attempt)
