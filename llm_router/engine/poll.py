"""Submit-then-poll: follow a job until it is done, failed, or out of time or polls."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

from ..config.model import PollSpec
from ..errors import InvalidReplyError, ProviderError, ProviderTimeout
from ..templating import TemplateRenderError
from .extract import text_or_none
from .request import PreparedRequest, ProviderRuntime
from .send import Sleep, send_json, with_retries
from .transport import InvalidURL, Transport, check_url

log = logging.getLogger("llm_router")


def poll_request(
    runtime: ProviderRuntime, spec: PollSpec, submit: Any, model_ctx: dict[str, Any], params: Any
) -> PreparedRequest:
    model = model_ctx["name"]
    if spec.url.from_ is not None:
        url = spec.url.from_.first(submit)
        if not isinstance(url, str) or not url:
            raise InvalidReplyError(f"the submit reply has no poll URL at {spec.url.from_.expr}", provider=runtime.name,
                                    model=model)
    else:
        assert spec.url.template is not None
        try:
            url = spec.url.template.render({"model": model_ctx, "params": params, "submit": submit})
        except TemplateRenderError as exc:
            raise ProviderError(f"could not build the poll URL: {runtime.redact(str(exc))}", provider=runtime.name,
                                model=model) from None
        if not isinstance(url, str) or not url:
            raise ProviderError(f"the poll URL template gave {url!r}, not a URL", provider=runtime.name, model=model)
    if not url.startswith(("http://", "https://")):
        url = runtime.base_url + url
    host = _host(url)
    if host is None:
        raise InvalidReplyError(f"the poll URL {runtime.redact(repr(url[:200]))} is malformed", provider=runtime.name,
                                model=model)
    if runtime.base_url.startswith("https://") and not url.startswith("https://"):
        raise InvalidReplyError(f"refusing to poll {host!r} over plain http: the key only travels over https here",
                                provider=runtime.name, model=model)
    if not url.startswith(("http://", "https://")) or not runtime.may_receive_key(url):
        raise InvalidReplyError(
            f"refusing to poll {host!r}: not one of the provider's hosts ({', '.join(h for h in runtime.hosts if h)})",
            provider=runtime.name, model=model,
        )
    headers = dict(runtime.static_headers)
    headers.update(runtime.auth_headers(model))
    return PreparedRequest(spec.method, url, headers, runtime.auth_query(model), None, None)


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


async def poll_until_done(
    transport: Transport, runtime: ProviderRuntime, spec: PollSpec, submit: Any, model_ctx: dict[str, Any], params: Any,
    sleep: Sleep,
) -> Any:
    """Poll until a done status → the final reply. Raises on failure, deadline or max_polls."""
    model = model_ctx["name"]
    request = poll_request(runtime, spec, submit, model_ctx, params)
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
        status = text_or_none(spec.status, data)
        log.debug("poll %d of %s (%s): status %s", polls, runtime.name, model, status)
        if status in spec.done:
            return data
        if status in spec.failed or (status not in spec.pending and spec.unknown == "fail"):
            detail = text_or_none(spec.message, data)
            known = "" if status in spec.failed else " (a status the provider file does not list)"
            shown = None if status is None else runtime.redact(status)  # masked before repr() escapes it
            raise ProviderError(
                f"job ended with status {shown!r}{known}" + (f": {runtime.redact(detail)}" if detail else ""),
                provider=runtime.name, model=model, code=shown,
            )
        if spec.backoff is not None:
            interval = min(spec.backoff.max_s, interval * spec.backoff.factor)
    raise ProviderTimeout(
        f"job not done after {spec.deadline_s:g}s / {spec.max_polls} polls (deadline_s, max_polls)",
        provider=runtime.name, model=model,
    )
