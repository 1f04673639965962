"""gateway.yaml: read with line marks, checked against schemas/gateway.schema.json and for what the
schema cannot say (one key per hash, one budget per period, model names the catalog knows), then
built into frozen config. Imports no web framework: `llm-router validate` uses it too."""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..config import schema
from ..config.load import Doc, parse_yaml
from ..errors import Problem

GATEWAY_FILE = "gateway.yaml"
ADMIN_NAME = "admin"  # the admin key's name in logs
DEFAULT_ADMIN_KEY_ENV = "LLM_ROUTER_ADMIN_KEY"
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 25 * 2**20  # OpenAI's own limit for an audio file (speech-to-text guide)
SHORT_ADMIN_KEY = 20  # characters; shorter admin keys are reported as a warning


@dataclass(frozen=True, slots=True)
class KeyBudget:
    period: str  # day | month (UTC)
    limit_usd: float


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """One caller of the gateway. `digest` is the SHA-256 of the key; the key itself is never held."""

    name: str
    digest: bytes
    models: tuple[str, ...]
    matcher: re.Pattern[str]  # the `models` patterns, compiled into one
    rpm: int | None = None
    tpm: int | None = None
    budgets: tuple[KeyBudget, ...] = ()

    def allows(self, model: str) -> bool:
        return self.matcher.fullmatch(model) is not None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    keys: tuple[VirtualKey, ...] = ()
    admin_key_env: str = DEFAULT_ADMIN_KEY_ENV
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES  # a multipart body (an audio file to transcribe)
    cors_origins: tuple[str, ...] = ()
    forward_headers: tuple[str, ...] = ()  # client headers passed on upstream
    file: str | None = None  # the gateway.yaml it came from (None: none found, defaults)


def compile_patterns(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def gateway_files(dirs: Iterable[str | Path]) -> list[Path]:
    return [path for d in dirs if (path := Path(d) / GATEWAY_FILE).is_file()]


def load_gateway(dirs: Iterable[str | Path], env: Mapping[str, str], models: Collection[str],
                 providers: Collection[str]) -> tuple[GatewayConfig, list[Problem]]:
    """Check every gateway.yaml in `dirs` and build the last one (a later layer replaces it whole).
    `models` and `providers` are the catalog's names, to check each key's `models` against."""
    problems: list[Problem] = []
    built = GatewayConfig()
    for path in gateway_files(dirs):
        parsed = parse_yaml(path, problems)
        if parsed is None:
            continue
        data, marks = parsed
        doc = Doc("gateway", {} if data is None else data, str(path), marks)
        found = [_quote_hint(p) for p in schema.check(doc, "gateway")] or _check(doc, models, providers)
        problems += found
        if not any(p.severity == "error" for p in found):
            built = _build(doc)
    if not any(p.severity == "error" for p in problems):
        problems += _check_admin(built, env)
    return built, problems


def check_gateway_dirs(dirs: Iterable[str | Path], env: Mapping[str, str]) -> tuple[list[Problem], int]:
    """What `llm-router validate` adds for gateway.yaml files: their problems and how many there are."""
    dirs = list(dirs)
    files = gateway_files(dirs)
    if not files:
        return [], 0
    from ..config import load_catalog

    catalog, _ = load_catalog(dirs, env)  # the catalog's own problems are reported by validate already
    _, problems = load_gateway(dirs, env, catalog.models, catalog.providers)
    return problems, len(files)


def _check(doc: Doc, models: Collection[str], providers: Collection[str]) -> list[Problem]:
    problems = []
    owners: dict[str, str] = {}
    for name, key in doc.data.get("keys", {}).items():
        if name == ADMIN_NAME:
            problems.append(_problem(doc, ("keys", name), f"keys.{name}: the name {ADMIN_NAME!r} is the admin key's "
                                     "(admin_key_env); call this key something else"))
        digest = key["key_sha256"]
        if digest in owners:
            problems.append(_problem(doc, ("keys", name, "key_sha256"),
                                     f"keys.{name}: the same key_sha256 as key {owners[digest]!r}; each key needs its own secret"))
        owners.setdefault(digest, name)
        periods = [b["period"] for b in key.get("budgets", [])]
        for i, period in enumerate(periods):
            if period in periods[:i]:
                problems.append(_problem(doc, ("keys", name, "budgets", i),
                                         f"keys.{name}.budgets[{i}]: a second budget per {period}; give one per period"))
        for i, pattern in enumerate(key["models"]):
            if not _names_something(pattern, models, providers):
                what = "provider" if "/" in pattern else "model"
                known = providers if "/" in pattern else models
                close = difflib.get_close_matches(pattern.partition("/")[0] if "/" in pattern else pattern, list(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(_problem(doc, ("keys", name, "models", i),
                                         f"keys.{name}.models[{i}]: {pattern!r} matches no {what} in the catalog{hint}",
                                         "warning"))
    return problems


def _quote_hint(problem: Problem) -> Problem:
    """YAML reads a digest of only digits (or digits and one 'e') as a number: say to quote it."""
    if problem.key.endswith(".key_sha256") and "is not of type 'string'" in problem.message:
        return Problem(problem.file, problem.line, problem.message + "; quote the digest (\"...\"): YAML read it as a number",
                       problem.severity, problem.key)
    return problem


def _names_something(pattern: str, models: Collection[str], providers: Collection[str]) -> bool:
    if "/" in pattern:  # provider/upstream: the provider part must exist
        return any(fnmatch.fnmatchcase(p, pattern.partition("/")[0]) for p in providers)
    return any(fnmatch.fnmatchcase(m, pattern) for m in models)


def _check_admin(config: GatewayConfig, env: Mapping[str, str]) -> list[Problem]:
    where = config.file or GATEWAY_FILE
    admin = env.get(config.admin_key_env, "")
    if not admin and not config.keys:
        return [Problem(where, None, f"no virtual keys and {config.admin_key_env} is not set: `llm-router serve` "
                        "would refuse every call (add keys: or set the admin key variable)", "warning")]
    if admin and len(admin) < SHORT_ADMIN_KEY:
        return [Problem(where, None, f"the admin key in {config.admin_key_env} is {len(admin)} characters long; "
                        f"use at least {SHORT_ADMIN_KEY} random characters", "warning")]
    return []


def _problem(doc: Doc, path: tuple[str | int, ...], message: str, severity: str = "error") -> Problem:
    file, line = doc.where(path)
    return Problem(file, line, message, severity, ".".join(map(str, path)))


def _build(doc: Doc) -> GatewayConfig:
    data = doc.data
    keys = tuple(
        VirtualKey(
            name=name, digest=bytes.fromhex(key["key_sha256"]), models=tuple(key["models"]),
            matcher=compile_patterns(key["models"]), rpm=key.get("rpm"), tpm=key.get("tpm"),
            budgets=tuple(KeyBudget(b["period"], float(b["limit_usd"])) for b in key.get("budgets", [])),
        )
        for name, key in data.get("keys", {}).items()
    )
    return GatewayConfig(
        keys=keys,
        admin_key_env=data.get("admin_key_env", DEFAULT_ADMIN_KEY_ENV),
        max_request_bytes=data.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES),
        max_upload_bytes=data.get("max_upload_bytes", DEFAULT_MAX_UPLOAD_BYTES),
        cors_origins=tuple(data.get("cors", {}).get("origins", ())),
        forward_headers=tuple(data.get("forward_headers", ())),
        file=doc.file,
    )
