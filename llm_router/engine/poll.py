"""Submit-then-poll: follow a job until it is done, failed, or out of time or polls."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from ..config.model import CancelSpec, JobUrl, Operation, PollSpec, status_key
from ..errors import InvalidReplyError, ProviderError, ProviderTimeout
from ..templating import TemplateRenderError
from .extract import text_or_none
from .request import PreparedRequest, ProviderRuntime
from .send import Sleep, send_json, with_retries
from .transport import InvalidURL, Transport, TransportError, check_url

log = logging.getLogger("llm_router")


def job_request(
    runtime: ProviderRuntime, url_spec: JobUrl, method: str, what: str, submit: Any, model_ctx: dict[str, Any], params: Any
) -> PreparedRequest:
    """A request to a URL of the job (`what`: poll, result or cancel), sent with the key only to the
    provider's hosts, and over https when the base URL is https."""
    model = model_ctx["name"]
    if url_spec.from_ is not None:
        url = url_spec.from_.first(submit)
        if not isinstance(url, str) or not url:
            raise InvalidReplyError(f"the submit reply has no {what} URL at {url_spec.from_.expr}", provider=runtime.name,
                                    model=model)
    else:
        assert url_spec.template is not None
        try:
            url = url_spec.template.render({"model": model_ctx, "params": params, "submit": submit})
        except TemplateRenderError as exc:
            raise ProviderError(f"could not build the {what} URL: {runtime.redact(str(exc))}", provider=runtime.name,
                                model=model) from None
        if not isinstance(url, str) or not url:
            raise ProviderError(f"the {what} URL template gave {url!r}, not a URL", provider=runtime.name, model=model)
    if not url.startswith(("http://", "https://")):
        url = runtime.base_url + url
    host = _host(url)
    action = "poll" if what == "poll" else f"send the {what} request to"
    if host is None:
        raise InvalidReplyError(f"the {what} URL {runtime.redact(repr(url[:200]))} is malformed", provider=runtime.name,
                                model=model)
    if runtime.base_url.startswith("https://") and not url.startswith("https://"):
        raise InvalidReplyError(f"refusing to {action} {host!r} over plain http: the key only travels over https here",
                                provider=runtime.name, model=model)
    if not url.startswith(("http://", "https://")) or not runtime.may_receive_key(url):
        raise InvalidReplyError(
            f"refusing to {action} {host!r}: not one of the provider's hosts "
            f"({', '.join(h for h in runtime.hosts if h)})", provider=runtime.name, model=model,
        )
    headers = dict(runtime.static_headers)
    headers.update(runtime.auth_headers(model))
    return PreparedRequest(method, url, headers, runtime.auth_query(model), None, None)


def _host(url: str) -> str | None:
    """The host of a URL a reply gave, or None when it cannot be sent as it is (a control character,
    no host, a bad port or IPv6 literal)."""
    try:
        check_url(url)
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except (InvalidURL, ValueError):
        return None
    return parts.hostname or None


async def run_job(
    transport: Transport, runtime: ProviderRuntime, operation: Operation, submit: Any, model_ctx: dict[str, Any],
    params: Any, sleep: Sleep,
) -> Any:
    """Follow a submitted job to its result: poll until done, then fetch the result where it lives.
    When the caller cancels, or the deadline or poll cap is hit, the declared cancel request goes
    out once before the cancellation or ProviderTimeout propagates."""
    spec = operation.poll
    assert spec is not None
    model = model_ctx["name"]
    request = job_request(runtime, spec.url, spec.method, "poll", submit, model_ctx, params)
    try:
        done, data = await _poll(transport, runtime, spec, request, model, sleep)
    except asyncio.CancelledError:
        if operation.cancel is not None:
            await cancel_job(transport, runtime, operation.cancel, submit, model_ctx, params)
        raise
    if not done:
        if operation.cancel is not None:
            await cancel_job(transport, runtime, operation.cancel, submit, model_ctx, params)
        raise ProviderTimeout(f"job not done after {spec.deadline_s:g}s / {spec.max_polls} polls (deadline_s, max_polls)",
                              provider=runtime.name, model=model)
    if spec.result.url is None:
        return data
    request = job_request(runtime, spec.result.url, "GET", "result", submit, model_ctx, params)
    (_, result, _), _ = await with_retries(runtime, model, lambda: send_json(transport, runtime, request, model), sleep)
    return result


_CANCELS: set[asyncio.Task[None]] = set()  # cancel requests still in flight after their caller left


async def cancel_job(
    transport: Transport, runtime: ProviderRuntime, spec: CancelSpec, submit: Any, model_ctx: dict[str, Any],
    params: Any,
) -> None:
    """Send the cancel request, shielded: cancelling the caller again does not stop it (timeout_s does)."""
    task = asyncio.create_task(_send_cancel(transport, runtime, spec, submit, model_ctx, params))
    _CANCELS.add(task)
    task.add_done_callback(_CANCELS.discard)
    await asyncio.shield(task)


async def _send_cancel(
    transport: Transport, runtime: ProviderRuntime, spec: CancelSpec, submit: Any, model_ctx: dict[str, Any],
    params: Any,
) -> None:
    """Never raises: the job is abandoned either way, and the caller's own error is what matters."""
    model = model_ctx["name"]
    try:
        request = job_request(runtime, spec.url, spec.method, "cancel", submit, model_ctx, params)
        async with asyncio.timeout(spec.timeout_s):
            reply = await transport.send(request)
        if reply.status >= 300:
            log.warning("the cancel request of a %s job (%s) answered HTTP %d: %s", runtime.name, model,
                        reply.status, runtime.redact(reply.body[:200].decode("utf-8", "replace")))
        else:
            log.info("cancelled a %s job (%s): HTTP %d", runtime.name, model, reply.status)
    except (ProviderError, TransportError, TimeoutError) as exc:  # logged, never raised (fal's SDK ignores them too)
        log.warning("could not cancel a %s job (%s): %s", runtime.name, model,
                    runtime.redact(str(exc) or type(exc).__name__))


async def _poll(
    transport: Transport, runtime: ProviderRuntime, spec: PollSpec, request: PreparedRequest, model: str, sleep: Sleep
) -> tuple[bool, Any]:
    """Poll until a done status → (True, the done reply); (False, None) when the deadline or
    max_polls is hit first. Raises when the job failed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + spec.deadline_s
    interval = spec.interval_s
    for polls in range(1, spec.max_polls + 1):
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        await sleep(min(interval, remaining))
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 0.001)):
                (_, data, _), _ = await with_retries(runtime, model, lambda: send_json(transport, runtime, request, model), sleep)
        except ProviderTimeout:  # the poll request itself timed out, every retry: say so
            raise
        except TimeoutError:  # the deadline fell during a poll request
            break
        if _is_done(runtime, spec, data, model, polls):
            return True, data
        if spec.backoff is not None:
            interval = min(spec.backoff.max_s, interval * spec.backoff.factor)
    return False, None


def _is_done(runtime: ProviderRuntime, spec: PollSpec, data: Any, model: str, polls: int) -> bool:
    """True when the job is done, False to poll again; raises when it failed. A status is a JSON
    value (`true` is not "true"); one the path does not find is `missing`."""
    value = spec.status.first(data)
    # masked before repr() escapes it (a provider may echo the key anywhere)
    shown = repr(runtime.redact(value))[:80] if isinstance(value, str) else json.dumps(value, ensure_ascii=False)[:80]
    log.debug("poll %d of %s (%s): status %s", polls, runtime.name, model, shown)
    if value is None:
        if spec.missing == "pending":
            return False
        raise InvalidReplyError(f"the poll reply has no status at {spec.status.expr} (set `missing: pending` if the "
                                "provider omits it while the job runs)", provider=runtime.name, model=model)
    key = status_key(value) if not isinstance(value, dict | list) else None
    if key in spec.done:
        _raise_if_failed(runtime, spec, data, model, shown)
        return True
    if key in spec.pending or (key not in spec.failed and spec.unknown == "pending"):
        return False
    detail = text_or_none(spec.message, data)
    known = "" if key in spec.failed else " (a status the provider file does not list)"
    raise ProviderError(f"job ended with status {shown}{known}" + (f": {runtime.redact(detail)}" if detail else ""),
                        provider=runtime.name, model=model, code=runtime.redact(value) if isinstance(value, str) else shown)


def _raise_if_failed(runtime: ProviderRuntime, spec: PollSpec, data: Any, model: str, shown: str) -> None:
    """A done reply that still failed (`failed_when`): fal's COMPLETED with an `error`."""
    rule = spec.failed_when
    if rule is None:
        return
    found = rule.path.first(data)
    if found is None or found is False or found in ("", [], {}):
        return
    detail = text_or_none(rule.message, data) or (found if isinstance(found, str) else None) or text_or_none(spec.message, data)
    code = text_or_none(rule.code, data)
    raise ProviderError(f"job done (status {shown}) but failed" + (f": {runtime.redact(detail)}" if detail else ""),
                        provider=runtime.name, model=model, code=runtime.redact(code) if code is not None else None)
