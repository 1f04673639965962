"""`vars:`: non-secret values from the environment (a region, a project, a tenant), for templates as
`{{ vars.NAME }}` and for base URLs as `{NAME}`; and what `validate` says about them and about the
credentials a provider finds itself (a service-account file, AWS keys).

Every declared var must have a value (its variable or its default) before the provider is called:
an unset one is a warning here and fails the first call, like a missing key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from ..credentials import CredentialError, check_aws_keys, service_account_info
from ..errors import Problem
from ..templating import is_template, vars_named
from ..wire import host_allowed
from .load import Doc, KeyPath
from .model import ProviderConfig, Var

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")  # a value put into a URL cannot move it to another host or path


def resolve(declared: Mapping[str, Var], env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The value of each var (its first set variable, else its default), and the names that have none."""
    values: dict[str, str] = {}
    missing = []
    for name, var in declared.items():
        value = next((env[v] for v in var.env if env.get(v)), var.default)
        if value is None:
            missing.append(name)
        else:
            values[name] = value
    return values, missing


def fill(url: str, values: Mapping[str, str]) -> str:
    """`{name}` replaced by the var's value where it has one; anything else left as written."""
    return PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), url)


def how_to_set(name: str, var: Var) -> str:
    return f"var {name!r} has no value: set {' or '.join(var.env)}"


def effective_base_url(provider: ProviderConfig, env: Mapping[str, str],
                       base_url_env: str | None = None) -> tuple[dict[str, str], str, list[tuple[str, str]]]:
    """The vars' values, the base URL (the override variable's, else the file's) with them filled in,
    and why that URL cannot be used yet as (key, message) pairs (empty when it can). `base_url_env`
    replaces the provider's override variable (a deployment's own)."""
    values, missing = resolve(provider.vars, env)
    url_env = base_url_env or provider.base_url_env
    override = env.get(url_env) if url_env else None
    template = override or provider.base_url
    url = fill(template, values)
    problems = [(f"vars.{name}", how_to_set(name, provider.vars[name])) for name in missing]
    left = [n for n in PLACEHOLDER.findall(url) if n not in missing]
    if left:
        problems.append(("base_url", f"the base URL holds {', '.join('{' + n + '}' for n in left)}, which no var declares; "
                                     "declare it under `vars:` or write the value"))
    unsafe = [n for n in PLACEHOLDER.findall(template) if n in values and not URL_SAFE.match(values[n])]
    if unsafe:
        problems.append(("base_url", f"var(s) {', '.join(unsafe)} hold characters a host or path cannot take as is "
                                     "(only letters, digits, '.', '_', '~' and '-')"))
    if not problems and not override and provider.hosts and url != template:
        host = urlsplit(url).hostname or ""
        if not host_allowed(host, provider.hosts):
            problems.append(("base_url", f"the base URL's host {host!r} (vars filled in) is not in `hosts` "
                                         f"({', '.join(provider.hosts)})"))
    return values, url, problems


def check_environment(providers: Mapping[str, ProviderConfig], docs: Mapping[str, Doc], env: Mapping[str, str]) -> list[Problem]:
    """Per provider: templates name only declared vars (an error); unset vars, placeholders left in the
    base URL and credentials that cannot be found (warnings, like an unset key)."""
    problems: list[Problem] = []
    for name, provider in sorted(providers.items()):
        doc = docs.get(name)
        if doc is None:
            continue
        if provider.abstract:
            continue  # a base for `extends`: the providers that extend it declare the vars it names
        problems += _undeclared(provider, doc)
        problems += _unset(provider, doc, env)
        problems += _credentials(provider, doc, env)
    return problems


def _undeclared(provider: ProviderConfig, doc: Doc) -> list[Problem]:
    problems = []
    for at, source in _template_leaves(doc.data, ()):
        if at and at[0] in ("vars", "description"):
            continue
        for var in sorted(vars_named(source) - set(provider.vars)):
            file, line = doc.where(at)
            declared = ", ".join(sorted(provider.vars)) or "none"
            problems.append(Problem(file, line, f"{'.'.join(map(str, at))}: vars.{var} is not declared under `vars:` "
                                                f"(declared: {declared})", key=".".join(map(str, at))))
    return problems


def _unset(provider: ProviderConfig, doc: Doc, env: Mapping[str, str]) -> list[Problem]:
    _, _, reasons = effective_base_url(provider, env)
    problems = []
    for key, reason in reasons:
        file, line = doc.where(tuple(key.split(".")))
        problems.append(Problem(file, line, f"{reason}; calls to provider {provider.name!r} will fail until it is fixed",
                                severity="warning", key=key))
    return problems


def _credentials(provider: ProviderConfig, doc: Doc, env: Mapping[str, str]) -> list[Problem]:
    auth = provider.auth
    try:
        if auth is not None and auth.google_service_account is not None:
            service_account_info(auth.google_service_account.credentials_env, env)
        elif auth is not None and auth.aws_sigv4 is not None:
            check_aws_keys(env)
        else:
            return []
    except CredentialError as exc:
        file, line = doc.where(("auth",))
        return [Problem(file, line, f"{exc}; calls to provider {provider.name!r} will fail until it is fixed",
                        severity="warning", key="auth")]
    return []


def _template_leaves(value: Any, at: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _template_leaves(item, (*at, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _template_leaves(item, (*at, i))
    elif isinstance(value, str) and "vars" in value and is_template(value):  # parsing every template costs ms
        yield at, value
