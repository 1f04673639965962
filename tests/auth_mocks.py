"""Loopback stand-ins for the far side of each auth mechanism: an OAuth2 token endpoint that issues
short-lived tokens and counts them, a Google token endpoint that verifies the signed JWT assertion
with the service account's public key, and an independent AWS Signature Version 4 verifier.

Each checks what the real service checks and answers as it does; none trusts the router's code
(the SigV4 verifier is written from the AWS documentation, not with botocore)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from mockserver import Reply, Request


def form_of(req: Request) -> dict[str, str]:
    assert req.headers.get("content-type") == "application/x-www-form-urlencoded", req.headers
    return dict(parse_qsl(req.text, keep_blank_values=True))


class TokenIssuer:
    """An OAuth2 token endpoint (RFC 6749 §4.4, client credentials): checks the form, issues `tok-N`
    valid for `lifetime_s`, and knows which tokens an API may accept."""

    def __init__(self, expected_form: Mapping[str, str], lifetime_s: int = 3600, prefix: str = "tok") -> None:
        self.expected_form = dict(expected_form)
        self.lifetime_s = lifetime_s
        self.prefix = prefix
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.forms: list[dict[str, str]] = []
        self._ids = itertools.count(1)

    @property
    def fetches(self) -> int:
        return len(self.issued)

    def __call__(self, req: Request) -> Reply:
        form = form_of(req)
        self.forms.append(form)
        if req.method != "POST":
            return Reply.json({"error": "invalid_request"}, status=405)
        wrong = {k for k, v in self.expected_form.items() if form.get(k) != v}
        if wrong:
            return Reply.json({"error": "invalid_client", "error_description": f"bad {', '.join(sorted(wrong))}"}, status=401)
        return Reply.json(self.issue())

    def issue(self) -> dict[str, Any]:
        token = f"{self.prefix}-{next(self._ids)}-{'x' * 12}"
        self.issued.append(token)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime_s}

    def accepts(self, req: Request) -> bool:
        header = req.headers.get("authorization", "")
        token = header.removeprefix("Bearer ")
        return header.startswith("Bearer ") and token in self.issued and token not in self.revoked

    def guard(self, reply: Reply) -> Any:
        """An API handler that answers `reply` to a valid token and 401 to anything else."""

        def handle(req: Request) -> Reply:
            if not self.accepts(req):
                return Reply.json({"error": {"message": "invalid or expired token", "code": "401"}}, status=401)
            return reply

        return handle


# --- Google service accounts ------------------------------------------------------------------------------


def service_account_key(token_uri: str, email: str = "router@proj-1.iam.gserviceaccount.com") -> tuple[dict[str, Any], Any]:
    """A fresh key file's contents (as IAM gives it) and the matching public key."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "proj-1", "private_key_id": "kid-0001", "private_key": pem,
            "client_email": email, "client_id": "1234567890", "token_uri": token_uri,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth"}
    return info, private.public_key()


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class GoogleTokenEndpoint:
    """Google's OAuth2 token endpoint for service accounts (RFC 7523 JWT bearer grant): the assertion
    must be an RS256 JWT signed by the account's key, for this audience and scope, unexpired."""

    def __init__(self, public_key: Any, audience: str, email: str, scope: str, lifetime_s: int = 3600) -> None:
        self.public_key = public_key
        self.audience = audience
        self.email = email
        self.scope = scope
        self.issuer = TokenIssuer({}, lifetime_s, prefix="ya29")
        self.claims: list[dict[str, Any]] = []

    def __call__(self, req: Request) -> Reply:
        form = form_of(req)
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Reply.json({"error": "unsupported_grant_type"}, status=400)
        problem = self.check(form.get("assertion", ""))
        if problem:
            return Reply.json({"error": "invalid_grant", "error_description": problem}, status=400)
        return Reply.json(self.issuer.issue())

    def check(self, assertion: str) -> str | None:
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header, claims = json.loads(_b64decode(header_b64)), json.loads(_b64decode(claims_b64))
            self.public_key.verify(_b64decode(signature_b64), f"{header_b64}.{claims_b64}".encode(),
                                   padding.PKCS1v15(), hashes.SHA256())
        except Exception as exc:
            return f"Invalid JWT Signature. ({type(exc).__name__})"
        self.claims.append(claims)
        now = time.time()
        if header.get("alg") != "RS256":
            return "Invalid JWT: alg"
        if claims.get("iss") != self.email or claims.get("aud") != self.audience or claims.get("scope") != self.scope:
            return "Invalid JWT: iss, aud or scope"
        if not claims["iat"] - 60 <= now <= claims["exp"] or claims["exp"] - claims["iat"] > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        return None


# --- AWS Signature Version 4 --------------------------------------------------------------------------------

UNRESERVED = "-_.~"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def canonical_request(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str], signed: list[str],
                      body: bytes) -> str:
    """As https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html says, for services
    other than S3: each path segment URI-encoded (again), query pairs encoded and sorted, the signed
    headers lower-cased with their values trimmed, and the body's SHA-256."""
    path = "/".join(quote(segment, safe=UNRESERVED) for segment in (raw_path or "/").split("/"))
    pairs = sorted((quote(k, safe=UNRESERVED), quote(v, safe=UNRESERVED))
                   for k, v in parse_qsl(raw_query, keep_blank_values=True))
    query = "&".join(f"{k}={v}" for k, v in pairs)
    lines = [f"{name}:{' '.join(headers[name].split())}" for name in signed]
    return "\n".join([method, path, query, *lines, "", ";".join(signed), hashlib.sha256(body).hexdigest()])


def sigv4_signature(secret_key: str, amz_date: str, scope: str, creq: str) -> str:
    date, region, service, _ = scope.split("/")
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), date), region), service), "aws4_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


class SigV4Verifier:
    """What AWS checks of a signed request; `problem(req)` is None for a valid one, else AWS's words."""

    def __init__(self, access_key: str, secret_key: str, region: str, service: str, token: str | None = None) -> None:
        self.access_key, self.secret_key, self.region, self.service, self.token = access_key, secret_key, region, service, token
        self.verified = 0

    def problem(self, req: Request) -> str | None:
        header = req.headers.get("authorization", "")
        fields = dict(part.strip().split("=", 1) for part in header.removeprefix("AWS4-HMAC-SHA256 ").split(","))
        if not header.startswith("AWS4-HMAC-SHA256 ") or set(fields) != {"Credential", "SignedHeaders", "Signature"}:
            return "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters."
        access_key, _, scope = fields["Credential"].partition("/")
        amz_date = req.headers.get("x-amz-date", "")
        if access_key != self.access_key:
            return "The security token included in the request is invalid."
        if scope != f"{amz_date[:8]}/{self.region}/{self.service}/aws4_request":
            return f"Credential should be scoped to a valid region and service: {scope}"
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        if abs((datetime.datetime.now(datetime.UTC) - when).total_seconds()) > 300:
            return "Signature expired"
        signed = fields["SignedHeaders"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            return "host and x-amz-date must be signed"
        if self.token is not None and (req.headers.get("x-amz-security-token") != self.token
                                       or "x-amz-security-token" not in signed):
            return "The security token included in the request is invalid."
        headers = {name: req.headers.get(name, "") for name in signed}
        creq = canonical_request(req.method, req.path, req.raw_query, headers, signed, req.body)
        if not hmac.compare_digest(sigv4_signature(self.secret_key, amz_date, scope, creq), fields["Signature"]):
            return ("The request signature we calculated does not match the signature you provided. "
                    "Check your AWS Secret Access Key and signing method.")
        self.verified += 1
        return None

    def guard(self, handler: Any) -> Any:
        def handle(req: Request) -> Any:
            problem = self.problem(req)
            if problem is not None:
                return Reply.json({"message": problem}, status=403, headers={"x-amzn-ErrorType": "InvalidSignatureException"})
            return handler(req)

        return handle
