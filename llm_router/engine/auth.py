"""Auth beyond a static key, applied afresh to every try of a request.

Three declared mechanisms (provider `auth:`), none of them provider code:
- `token`: an OAuth2-style token endpoint (client credentials, or a key exchanged for a token);
- `google_service_account`: a signed JWT assertion from a service-account key file, exchanged at
  the file's `token_uri` (RFC 7523), signed by google-auth;
- `aws_sigv4`: AWS Signature Version 4 over the exact bytes sent, by botocore's signer.

A token is cached per provider runtime and shared by every call; it is fetched when missing or
about to expire, by one fetch at a time (concurrent calls wait for it), and a 401 under a token
refreshes it once and retries. Token requests go through the same exchange function as every
other request, so they use the provider's client and transport. Every token, client secret,
assertion and AWS key is added to the engine's Redactor before it can appear anywhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from ..config.model import Auth, AwsSigV4, GoogleServiceAccount, TokenExchange
from ..credentials import AwsKeys, CredentialError, aws_keys, service_account_info, service_account_signer
from ..errors import AuthenticationError, MissingCredentialError, ProviderError, RateLimitError, ServerError
from ..paths import JSONPath
from ..secrets import MASK, Secret, WireValue
from ..templating import DROP, CompiledTemplate, TemplateRenderError
from ..wire import host_allowed
from .errors import excerpt, parse_body

if TYPE_CHECKING:
    from .request import PreparedRequest, ProviderRuntime
    from .transport import Reply

Exchange = Callable[["PreparedRequest"], Awaitable["Reply"]]  # one exchange through the transport seam (send.py)
clock: Callable[[], float] = time.monotonic  # when a cached token is due; tests move it
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ACCESS_TOKEN, EXPIRES_IN = JSONPath("$.access_token"), JSONPath("$.expires_in")
SIGV4_HEADERS = frozenset({"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"})


class Authorizer(Protocol):
    refreshable: bool  # a 401 may be cured by a fresh credential
    own_headers: frozenset[str]  # lower-case names a caller's extra headers may not set

    def display(self) -> dict[str, str]:
        """The headers `render` shows in place of the real ones (masked)."""

    async def apply(self, request: PreparedRequest, exchange: Exchange, model: str,
                    stale: object = None) -> tuple[PreparedRequest, object]:
        """The request with credentials for this try, and what was used (pass it back as `stale`
        after a 401 to get a fresh one)."""


def display_headers(auth: Auth | None) -> dict[str, str]:
    """The credential headers of a provider with a token or a signature, masked (`render`, contracts)."""
    if auth is None:
        return {}
    if auth.aws_sigv4 is not None:
        return {"authorization": MASK}
    if auth.header is not None and (auth.token is not None or auth.google_service_account is not None):
        return {auth.header: f"{auth.scheme} {MASK}" if auth.scheme else MASK}
    return {}


def takes_token(auth: Auth | None) -> bool:
    """Whether the provider's first request is a token fetch."""
    return auth is not None and auth.header is not None and (auth.token is not None or auth.google_service_account is not None)


def make_authorizer(runtime: ProviderRuntime, env: Mapping[str, str]) -> Authorizer | None:
    """The provider's mechanism, or None for a static key (or no auth). Cheap: nothing is read,
    imported or fetched until the first call."""
    auth = runtime.config.auth
    if auth is None:
        return None
    if auth.aws_sigv4 is not None:
        return SigV4(runtime, auth.aws_sigv4, env)
    if auth.header is None:
        return None
    if auth.token is not None:
        return BearerToken(runtime, auth.header, auth.scheme, TokenEndpoint(runtime, auth.token).fetch,
                           auth.token.refresh_before_s)
    if auth.google_service_account is not None:
        account = ServiceAccount(runtime, auth.google_service_account, env)
        return BearerToken(runtime, auth.header, auth.scheme, account.fetch, auth.google_service_account.refresh_before_s)
    return None


async def prepare(runtime: ProviderRuntime, request: PreparedRequest, exchange: Exchange, model: str,
                  stale: object = None) -> tuple[PreparedRequest, object]:
    if runtime.authorizer is None:
        return request, None
    return await runtime.authorizer.apply(request, exchange, model, stale)


async def authorized(runtime: ProviderRuntime, request: PreparedRequest, model: str, exchange: Exchange) -> Reply:
    """One exchange with the provider's credentials for this try; a 401 under a token refreshes
    it once and sends again."""
    signed, used = await prepare(runtime, request, exchange, model)
    reply = await exchange(signed)
    if reply.status == 401 and runtime.authorizer is not None and runtime.authorizer.refreshable:
        signed, _ = await prepare(runtime, request, exchange, model, stale=used)
        reply = await exchange(signed)
    return reply


def remember(runtime: ProviderRuntime, value: str, rotating: str | None = None) -> None:
    """A credential the provider is sent: masked in every text (the Redactor) and in any reply that
    echoes it. A `rotating` one (a token, an assertion) is masked while it is one of the last few."""
    runtime.redact.add(Secret(value), rotating)
    runtime.sent_secrets.add(Secret(value), rotating)


# --- tokens ---------------------------------------------------------------------------------------------

Fetch = Callable[[Exchange, str], Awaitable[tuple[str, float]]]  # → (token, lifetime in seconds)


class TokenCache:
    """One token shared by every call of a provider; one fetch at a time."""

    def __init__(self, fetch: Fetch, refresh_before_s: float) -> None:
        self._fetch = fetch
        self._refresh_before_s = refresh_before_s
        self._token: str | None = None
        self._due = 0.0  # clock() reading after which the token is refreshed
        self._inflight: asyncio.Task[str] | None = None
        self.fetches = 0

    async def get(self, exchange: Exchange, model: str, stale: object = None) -> str:
        token = self._token
        if token is not None and token != stale and clock() < self._due:
            return token
        task = self._inflight
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = self._inflight = asyncio.get_running_loop().create_task(self._refresh(exchange, model))
            task.add_done_callback(_consume_error)
        # shielded: a caller that is cancelled leaves the fetch running for the others
        return await asyncio.shield(task)

    async def _refresh(self, exchange: Exchange, model: str) -> str:
        self.fetches += 1
        token, lifetime = await self._fetch(exchange, model)
        # refresh ahead of expiry, by at most half the lifetime (a 2-second token is used for 1 second)
        self._token, self._due = token, clock() + lifetime - min(self._refresh_before_s, lifetime / 2)
        return token


def _consume_error(task: asyncio.Task[str]) -> None:
    """Every waiter may have been cancelled: the fetch's error is theirs, never an unretrieved-exception warning."""
    if not task.cancelled():
        task.exception()


class BearerToken:
    """A token from an endpoint, sent in the provider's `auth.header` (with its `scheme`)."""

    refreshable = True

    def __init__(self, runtime: ProviderRuntime, header: str, scheme: str | None, fetch: Fetch, refresh_before_s: float) -> None:
        self._runtime = runtime
        self._header = header
        self._scheme = scheme
        self.cache = TokenCache(fetch, refresh_before_s)
        self.own_headers = frozenset({header.lower()})

    def display(self) -> dict[str, str]:
        return display_headers(self._runtime.config.auth)

    async def apply(self, request: PreparedRequest, exchange: Exchange, model: str,
                    stale: object = None) -> tuple[PreparedRequest, object]:
        token = await self.cache.get(exchange, model, stale)
        return dataclasses.replace(request, headers={**request.headers, self._header: self._value(token)}), token

    def _value(self, token: str) -> str:
        return WireValue(f"{self._scheme} {token}" if self._scheme else token)


class TokenEndpoint:
    """`auth.token`: POST the declared form (templates over `vars` and `key`) to the declared URL."""

    def __init__(self, runtime: ProviderRuntime, spec: TokenExchange) -> None:
        self._runtime = runtime
        self._spec = spec

    async def fetch(self, exchange: Exchange, model: str) -> tuple[str, float]:
        runtime, spec = self._runtime, self._spec
        if runtime.key is None:
            raise MissingCredentialError(f"no key or client secret for the token endpoint: set the environment variable "
                                         f"{runtime.key_env} (or pass it in env=)", provider=runtime.name, model=model)
        ctx = {"vars": runtime.vars, "key": WireValue(runtime.key.reveal())}  # masked in any repr, as the form holds it
        url = _render_text(spec.url, ctx, runtime, model, "auth.token.url")
        form = _render_fields(spec.form, ctx, runtime, model, "auth.token.form")
        headers = _render_fields(spec.headers, ctx, runtime, model, "auth.token.headers")
        return await post_form(runtime, url, form, headers, (spec.access_token, spec.expires_in, spec.lifetime_s),
                               exchange, model)


class ServiceAccount:
    """`auth.google_service_account`: a JWT signed with the key file's private key, exchanged at its `token_uri`."""

    def __init__(self, runtime: ProviderRuntime, spec: GoogleServiceAccount, env: Mapping[str, str]) -> None:
        self._runtime = runtime
        self._spec = spec
        self._env = env
        self._account: tuple[str, str, Any] | None = None  # (client_email, token_uri, signer), read once

    def _load(self, model: str) -> tuple[str, str, Any]:
        if self._account is None:
            variable = self._spec.credentials_env
            try:
                info = service_account_info(variable, self._env)
                self._account = (info["client_email"], info["token_uri"], service_account_signer(variable, info))
            except CredentialError as exc:
                raise MissingCredentialError(str(exc), provider=self._runtime.name, model=model) from None
        return self._account

    async def fetch(self, exchange: Exchange, model: str) -> tuple[str, float]:
        from google.auth import jwt  # present: _load imported google-auth's signer

        email, token_uri, signer = self._load(model)
        now = int(time.time())
        claims = {"iss": email, "scope": " ".join(self._spec.scopes), "aud": token_uri, "iat": now,
                  "exp": now + int(self._spec.lifetime_s)}
        assertion = WireValue(jwt.encode(signer, claims).decode())  # type: ignore[no-untyped-call]
        remember(self._runtime, assertion, rotating="assertion")  # a bearer credential until it expires
        return await post_form(self._runtime, token_uri, {"grant_type": JWT_BEARER, "assertion": assertion}, {},
                               (ACCESS_TOKEN, EXPIRES_IN, self._spec.lifetime_s), exchange, model)


async def post_form(runtime: ProviderRuntime, url: str, form: Mapping[str, str], headers: Mapping[str, str],
                    reply_paths: tuple[JSONPath, JSONPath, float], exchange: Exchange, model: str) -> tuple[str, float]:
    """POST a form to a token endpoint (a declared host only) → (token, lifetime in seconds)."""
    from .request import PreparedRequest, host_of

    endpoint = url.split("?", 1)[0]
    host = host_of(url)
    if not url.startswith(("https://", "http://")) or host is None or not host_allowed(host, runtime.hosts):
        raise AuthenticationError(f"refusing to send credentials to the token endpoint {endpoint}: its host is not in the "
                                  f"provider's `hosts` ({', '.join(h for h in runtime.hosts if h)})",
                                  provider=runtime.name, model=model)
    if url.startswith("http://") and runtime.base_url.startswith("https://"):
        raise AuthenticationError(f"refusing to send credentials to the token endpoint {endpoint} over plain http",
                                  provider=runtime.name, model=model)
    request = PreparedRequest("POST", url, {"content-type": "application/x-www-form-urlencoded", "accept": "application/json",
                                            **headers}, {}, None, urlencode(form).encode())
    try:
        reply = await exchange(request)
    except ProviderError as error:  # a connection error or a timeout: retried like any other
        error.add_note_to_message(f" (fetching a token from {endpoint})")
        raise
    return _read_token(runtime, endpoint, reply, reply_paths, model)


def _read_token(runtime: ProviderRuntime, endpoint: str, reply: Reply,
                reply_paths: tuple[JSONPath, JSONPath, float], model: str) -> tuple[str, float]:
    token_path, lifetime_path, default_lifetime = reply_paths
    status = reply.status
    data = parse_body(reply.body)
    if runtime.sent_secrets.echoed_in(reply.body):  # an endpoint that echoes the client secret: masked in what is kept
        data = runtime.redact.data(data)
    if status >= 400:
        detail = (data.get("error_description") or data.get("error")) if isinstance(data, dict) else None
        text = runtime.redact(str(detail) if detail else excerpt(reply.body) or "(empty body)")
        kind = RateLimitError if status == 429 else ServerError if status >= 500 else AuthenticationError
        raise kind(f"the token endpoint {endpoint} answered HTTP {status}: {text}", provider=runtime.name, model=model,
                   status=status, body_excerpt=runtime.redact(excerpt(reply.body)))
    token = token_path.first(data) if data is not None else None
    if not isinstance(token, str) or not token:
        raise AuthenticationError(f"the token endpoint {endpoint} answered without a token at {token_path.expr}",
                                  provider=runtime.name, model=model, status=status)
    if not token.isascii() or any(c in token for c in "\r\n\0"):
        raise AuthenticationError(f"the token endpoint {endpoint} answered with a token that cannot go in a header",
                                  provider=runtime.name, model=model, status=status)
    remember(runtime, token, rotating="token")
    token = WireValue(token)  # a str to the HTTP client, `'***'` in any repr (a traceback's locals)
    lifetime = lifetime_path.first(data)
    try:
        seconds = float(lifetime) if not isinstance(lifetime, bool) else default_lifetime
    except (TypeError, ValueError):  # absent, or not a number
        seconds = default_lifetime
    return token, seconds if seconds > 0 else default_lifetime


def _render_text(template: CompiledTemplate, ctx: Mapping[str, Any], runtime: ProviderRuntime, model: str, where: str) -> str:
    value = _render(template, ctx, runtime, model, where)
    if not isinstance(value, str) or not value:
        raise AuthenticationError(f"{where} gave {runtime.redact(repr(value))}, not a URL", provider=runtime.name, model=model)
    return value


def _render_fields(template: CompiledTemplate | None, ctx: Mapping[str, Any], runtime: ProviderRuntime, model: str,
                   where: str) -> dict[str, str]:
    value = _render(template, ctx, runtime, model, where) if template is not None else DROP
    return {} if value is DROP else {str(k): str(v) for k, v in value.items()}


def _render(template: CompiledTemplate, ctx: Mapping[str, Any], runtime: ProviderRuntime, model: str, where: str) -> Any:
    try:
        return template.render(ctx)
    except TemplateRenderError as exc:
        raise AuthenticationError(f"could not build the token request ({where}): {runtime.redact(str(exc))}",
                                  provider=runtime.name, model=model) from None


# --- AWS Signature Version 4 ------------------------------------------------------------------------------


class SigV4:
    """`auth.aws_sigv4`: every try signed at its own time over the bytes it sends."""

    refreshable = False
    own_headers = SIGV4_HEADERS

    def __init__(self, runtime: ProviderRuntime, spec: AwsSigV4, env: Mapping[str, str]) -> None:
        self._runtime = runtime
        self._service = spec.service
        self._region_template = spec.region
        self._env = env
        self._keys: AwsKeys | None = None

    def display(self) -> dict[str, str]:
        return display_headers(self._runtime.config.auth)

    def _credentials(self, model: str) -> tuple[AwsKeys, str]:
        runtime = self._runtime
        if self._keys is None:
            try:
                keys = aws_keys(self._env)
            except CredentialError as exc:
                raise MissingCredentialError(str(exc), provider=runtime.name, model=model) from None
            for value in (keys.access_key, keys.secret_key, keys.token):
                if value:
                    remember(runtime, value)
            self._keys = keys
        region = _render(self._region_template, {"vars": runtime.vars}, runtime, model, "auth.aws_sigv4.region")
        if not isinstance(region, str) or not region:
            raise MissingCredentialError("no AWS region: set AWS_REGION (the provider's `region` var)",
                                         provider=runtime.name, model=model)
        return self._keys, region

    async def apply(self, request: PreparedRequest, exchange: Exchange, model: str,
                    stale: object = None) -> tuple[PreparedRequest, object]:
        keys, region = self._credentials(model)
        return sign_v4(request, keys, self._service, region, datetime.datetime.now(datetime.UTC)), None


def sign_v4(request: PreparedRequest, keys: AwsKeys, service: str, region: str, now: datetime.datetime) -> PreparedRequest:
    """The request signed with AWS Signature Version 4 at `now`: botocore's canonical request,
    string to sign and signature, over the final URL (the query folded in, so the client sends
    exactly what was signed) and the exact body bytes. botocore's own `add_auth` is not used: it
    logs the signature at debug level and reads the clock itself."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = request.url
    if request.query:
        url += ("&" if urlsplit(url).query else "?") + urlencode(sorted(request.query.items()), quote_via=quote)
    timestamp = now.strftime("%Y%m%dT%H%M%SZ")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in SIGV4_HEADERS}
    headers["x-amz-date"] = timestamp
    if keys.token:
        headers["x-amz-security-token"] = WireValue(keys.token)
    aws = AWSRequest(method=request.method, url=url, data=request.content or b"", headers=headers)
    aws.context["timestamp"] = timestamp
    signer = SigV4Auth(Credentials(keys.access_key, keys.secret_key, keys.token), service, region)
    canonical = signer.canonical_request(aws)
    signature = signer.signature(signer.string_to_sign(aws, canonical), aws)
    signed_headers = signer.signed_headers(signer.headers_to_sign(aws))
    headers["authorization"] = WireValue(f"AWS4-HMAC-SHA256 Credential={signer.scope(aws)}, "
                                         f"SignedHeaders={signed_headers}, Signature={signature}")
    return dataclasses.replace(request, url=url, query={}, headers=headers)
