"""Render the HTTP request for one call from a provider's compiled operation."""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from ..config.model import Operation, ProviderConfig
from ..config.vars import effective_base_url
from ..errors import InvalidRequestError, MissingCredentialError
from ..secrets import MASK, Redactor, Secret, WireValue, mask_userinfo
from ..templating import DROP, CompiledTemplate, TemplateRenderError
from ..wire import JSON_CONTENT_TYPE, host_allowed
from .conversation import NO_OPTIONS, RequestOptions, to_wire
from .encoding import check_files, encode, shown
from .framing import MEDIA_TYPES


@dataclass(slots=True, repr=False)
class PreparedRequest:
    method: str
    url: str
    headers: dict[str, str]  # the key's value is a WireValue: masked in any repr
    query: dict[str, str]
    body: Any  # the JSON value, or None
    content: bytes | None
    structured_tool: str | None = None  # the forced tool that carries a structured answer

    def __repr__(self) -> str:
        """Names, never values: a traceback rendered with local variables shows no header or query value."""
        size = "no body" if self.content is None else f"{len(self.content)} bytes"
        return (f"PreparedRequest({self.method} {mask_userinfo(self.url)}, headers={sorted(self.headers)}, "
                f"query={sorted(self.query)}, {size})")


class ProviderRuntime:
    """A provider as the engine runs it: the effective base URL, the key, the trusted hosts."""

    def __init__(self, config: ProviderConfig, env: Mapping[str, str], redactor: Redactor,
                 key_env: str | None = None, base_url_env: str | None = None) -> None:
        """`key_env` and `base_url_env` replace the provider's variables (a deployment's own key or URL)."""
        from .auth import make_authorizer  # auth builds on this module

        self.config = config
        self.name = config.name
        url_env = base_url_env or config.base_url_env
        values, base_url, unusable = effective_base_url(config, env, url_env)
        self.vars = MappingProxyType(values)  # `vars` of templates
        self.unusable = "; ".join(message for _, message in unusable) or None  # why a call cannot be made yet (an unset var...)
        self.base_url = base_url.rstrip("/")
        redactor.add_url(self.base_url)  # a `user:password@` in the URL is a credential too
        base_host = host_of(self.base_url) or ""
        self.hosts = (*config.hosts, base_host)
        self.key: Secret | None = None
        auth = config.auth
        self.key_env = key_env or (auth.env if auth is not None else None)
        if self.key_env is not None and env.get(self.key_env):
            self.key = Secret(env[self.key_env])
            redactor.add(self.key)
        # What this provider is sent, so what its replies may echo: searched for in each reply (send.py)
        self.sent_secrets = Redactor([self.key] if self.key is not None else [])
        self.sent_secrets.add_url(self.base_url)
        self.static_headers = dict(config.headers)  # checked once, here: the schema allows printable ASCII only
        self.redact = redactor
        self.authorizer = make_authorizer(self, env)  # None: a static key (or none)
        # lower-case names a caller's extra headers may not set: the provider's own and its key's
        self.own_header_names = frozenset(
            [*(name.lower() for name in config.headers), *([auth.header.lower()] if auth is not None and auth.header else []),
             *(self.authorizer.own_headers if self.authorizer is not None else ())])
        # Per (operation, streaming): the params the body already places, so merging skips them. A merging
        # operation also never lets a param set what its stream block owns (`stream`, `stream_options`).
        self.placed_params: dict[tuple[str, bool], frozenset[str]] = {}
        # A param a template places in the path or the query is not merged into the body as well.
        for kind, op in config.operations.items():
            owned = op.stream.own_keys if op.stream is not None and op.params.mode == "merge" else frozenset()
            for streaming in (False, True):
                spec = op.stream if streaming else None
                templates = (spec.body if spec is not None else op.body, op.path, op.query,
                             spec.path if spec is not None else None, spec.query if spec is not None else None)
                self.placed_params[(kind, streaming)] = owned.union(*(t.param_names for t in templates if t is not None))
        # the content type the provider's own headers give a JSON body, checked once (see _content_type)
        self.json_headers: dict[str, str] | None = None
        try:
            headers = dict(self.static_headers)
            _content_type(headers, self.name, "")
            self.json_headers = headers
        except InvalidRequestError:
            pass  # a declared type that is not JSON: each request with a body says so
        self._auth_header: dict[str, str] = {}
        if self.authorizer is not None:
            self._key_ok = True  # the key (a client secret) goes to the token endpoint, not in a header
        elif self.key is not None and auth is not None and auth.header is not None:
            value = WireValue(f"{auth.scheme} {self.key.reveal()}" if auth.scheme else self.key.reveal())
            self._auth_header = {auth.header: value}
            self._key_ok = _header_value_ok(value)
        else:
            self._key_ok = self.key is None or _header_value_ok(self.key.reveal())

    def __repr__(self) -> str:
        return f"ProviderRuntime({self.name!r}, base_url={mask_userinfo(self.base_url)!r}, key={self.key!r})"

    def auth_headers(self, model: str, display: bool = False) -> dict[str, str]:
        if self.authorizer is not None:  # applied per try, as the request is sent (engine/auth.py)
            return self.authorizer.display() if display else {}
        if self._auth_header:
            if not self._key_ok:
                raise InvalidRequestError(f"{self.name} ({model}): the key in {self.key_env} holds CR/LF or non-ASCII characters")
            return self._auth_header
        auth = self.config.auth
        if auth is None or auth.header is None:
            return {}
        key = self._key(model, display)
        if key is None:
            return {}
        return {auth.header: WireValue(f"{auth.scheme} {key.reveal()}" if auth.scheme else key.reveal())}

    def auth_query(self, model: str, display: bool = False) -> dict[str, str]:
        auth = self.config.auth
        if auth is None or auth.query is None or self.authorizer is not None:
            return {}
        key = self._key(model, display)
        return {auth.query: WireValue(key.reveal())} if key is not None else {}

    def _key(self, model: str, display: bool = False) -> Secret | None:
        auth = self.config.auth
        assert auth is not None
        if self.key is None and display and not auth.optional:
            return Secret(f"<{self.key_env} is not set>")
        if self.key is None and not auth.optional:
            raise MissingCredentialError(
                f"no API key: set the environment variable {self.key_env} (or pass it in env=)",
                provider=self.name,
                model=model,
            )
        return self.key

    def may_receive_key(self, url: str) -> bool:
        host = host_of(url)
        return host is not None and host_allowed(host, self.hosts)


def host_of(url: str) -> str | None:
    """The URL's host name, or None when the URL cannot be parsed (such a URL never gets a key)."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _header_value_ok(value: str) -> bool:
    return value.isascii() and not any(c in value for c in "\r\n\0")


def _check_header_value(name: str, value: str, model: str, provider: str) -> None:
    if not _header_value_ok(value):
        raise InvalidRequestError(
            f"header {name!r} for {provider} ({model}) holds CR/LF or non-ASCII characters; refused"
        )


def _render(template: CompiledTemplate | None, ctx: Mapping[str, Any], provider: str, model: str) -> Any:
    if template is None:
        return DROP
    try:
        return template.render(ctx)
    except TemplateRenderError as exc:
        raise InvalidRequestError(f"{provider} ({model}): could not render the request: {exc}") from None


def _add_param(target: dict[str, Any], dotted: str, value: Any) -> None:
    """Put a param in the body unless the body already holds that key (a caller's `model=` or
    `stream=` never replaces what the template built)."""
    *parents, last = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            return
    target.setdefault(last, value)


def build_request(
    runtime: ProviderRuntime,
    operation: Operation,
    model_ctx: Mapping[str, Any],
    messages: Any,
    prompt: str | None,
    params: Mapping[str, Any],
    options: RequestOptions = NO_OPTIONS,
    reasoning: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    stream: bool = False,
    display: bool = False,
) -> PreparedRequest:
    """`inputs`: the variables of an operation kind other than chat and image (input, query, file, ...).
    (The engine calls this with positional arguments: a keyword argument costs ~0.1 µs in Python 3.11.)"""
    model_name = model_ctx["name"]
    provider = runtime.name
    if runtime.unusable is not None and not display:
        raise MissingCredentialError(runtime.unusable, provider=provider, model=model_name)
    wire = to_wire(operation.conversation, messages, options, f"{provider} ({model_name})",
                   operation.call_ids.length if operation.call_ids else None, model_ctx.get("structured_output"),
                   reasoning is not None)
    ctx = {"model": model_ctx, "prompt": prompt, "params": params, "reasoning": reasoning, "vars": runtime.vars,
           **wire.variables}
    if inputs:
        ctx.update(inputs)
        check_files(operation, {**inputs, **params}, f"{provider} ({model_name})")
    spec = operation.stream if stream else None
    path_template = spec.path if spec is not None and spec.path is not None else operation.path
    path = _render(path_template, ctx, provider, model_name)
    if not isinstance(path, str):
        raise InvalidRequestError(f"{provider} ({model_name}): the path template gave {path!r}, not a path")
    relative = not path.startswith(("http://", "https://"))
    url = runtime.base_url + path if relative else path

    body_template = spec.body if spec is not None else operation.body
    body = _render(body_template, ctx, provider, model_name)
    if body is DROP:
        body = {} if body_template is not None else None
    if body is not None and params:
        placement = operation.params
        named = runtime.placed_params[(operation.kind, spec is not None)]
        if placement.mode != "none":
            target = body if placement.mode == "merge" else body.setdefault(placement.merge_into, {})
            for key, value in params.items() if isinstance(target, dict) else ():
                if key not in named:
                    _add_param(target, key, value)

    query = {}
    for template in (operation.query, spec.query if spec is not None else None):
        if template is None:
            continue
        rendered = _render(template, ctx, provider, model_name)
        if rendered is not DROP:
            query.update({k: str(v) for k, v in rendered.items()})

    # the provider's own headers, with the content type of a JSON body when they are all there is
    plain = (body is not None and operation.encoding == "json" and not options.headers and operation.headers is None
             and runtime.json_headers is not None)
    headers = dict(runtime.json_headers if plain else runtime.static_headers)  # type: ignore[arg-type]
    if options.headers:  # the caller's (a gateway's allow-listed client headers): config and the key win
        headers.update((k, v) for k, v in options.headers.items() if k not in runtime.own_header_names)
    if operation.headers is not None:
        rendered_headers = _render(operation.headers, ctx, provider, model_name)
        if rendered_headers is not DROP:  # values built from params: checked on every call
            for name, value in rendered_headers.items():
                _check_header_value(name, str(value), model_name, provider)
                headers[name] = str(value)
    content = None
    if body is not None and operation.encoding != "json":
        content = encode(operation, body, headers, f"{provider} ({model_name})")
        body = shown(body)
    elif body is not None:
        content = _json_bytes(body, provider, model_name)
        if not plain:
            _content_type(headers, provider, model_name)
    if stream and operation.stream is not None:
        headers.setdefault("accept", MEDIA_TYPES[operation.stream.format][0])  # the framing's own media type
    if runtime.config.auth is None:
        return PreparedRequest(operation.method, url, headers, query, body, content, wire.structured_tool)
    # base_url + "/..." keeps the base host; anything else (a full URL, "@host") is checked
    if not (relative and path.startswith("/")) and not runtime.may_receive_key(url):
        raise InvalidRequestError(f"{provider} ({model_name}): refusing to send the key to {host_of(url)}, "
                                  "which is not in the provider's `hosts`")
    # the key goes in last, so that no local variable of a frame that can still raise holds it
    return PreparedRequest(operation.method, url, {**headers, **runtime.auth_headers(model_name, display)},
                           {**query, **runtime.auth_query(model_name, display)}, body, content, wire.structured_tool)


def _json_encoder() -> Callable[[Any], str]:
    """Compact JSON, UTF-8 as it is, NaN refused. JSONEncoder.encode builds its C encoder (and a
    closure) on every call; this one is built once. Without a circularity check: a cycle ends in
    RecursionError, which the caller reports like any body that is not JSON data."""
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return encoder.encode
    chunks = make(None, encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    return lambda body: "".join(chunks(body, 0))


_ENCODE = _json_encoder()


def _json_bytes(body: Any, provider: str, model: str) -> bytes:
    try:
        return _ENCODE(body).encode()
    except (TypeError, ValueError, RecursionError) as exc:  # a config expression that built a method, a set, NaN...
        raise InvalidRequestError(f"{provider} ({model}): the request body is not JSON data: {exc}") from None


def _content_type(headers: dict[str, str], provider: str, model: str) -> None:
    """A JSON content type the provider declares is kept; none declared is application/json."""
    declared = next((name for name in headers if name.lower() == "content-type"), None)
    if declared is None:
        headers["content-type"] = "application/json"
    elif not JSON_CONTENT_TYPE.fullmatch(headers[declared]):
        raise InvalidRequestError(f"{provider} ({model}): the content-type header {headers[declared]!r} is not JSON, "
                                  "and the request body is JSON")


def redacted_view(runtime: ProviderRuntime, request: PreparedRequest) -> dict[str, Any]:
    """The request as `render` prints it: the key masked where config says it goes."""
    auth = runtime.config.auth
    headers = dict(request.headers)
    query = dict(request.query)
    if runtime.authorizer is not None:
        headers.update(runtime.authorizer.display())
    elif auth is not None and auth.header and auth.header in headers:
        headers[auth.header] = f"{auth.scheme} {MASK}" if auth.scheme else MASK
    if auth is not None and auth.query and auth.query in query:
        query[auth.query] = MASK
    return {"method": request.method, "url": runtime.redact.url(request.url), "query": query, "headers": headers,
            "body": request.body}
