"""Checks across files that a schema cannot express: references, cycles, params, prices, keys."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from urllib.parse import urlsplit

from ..errors import Problem
from ..urlsafe import UnsafeUrlValue, url_value
from ..wire import CONTENT_TYPES, host_allowed
from .load import Doc
from .model import ModelConfig, Pricing, ProviderConfig, Reasoning, RouterSettings

# what a model of each kind must price (any one of the groups, each field of it), or `pricing: unknown`
PRICES_FOR_KIND = {
    "chat": (("input_per_million", "output_per_million"),),
    "embed": (("input_per_million",), ("per_request",)),
    "rerank": (("per_search_unit",), ("input_per_million",), ("per_request",)),
    "speech": (("per_million_characters",),),
    "transcribe": (("per_audio_second",), ("input_per_million", "output_per_million")),
    "video": (("per_output_second",), ("per_output_second_by",)),
}


def _hint(name: str, known: list[str], what: str) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    if close:
        return f"did you mean {', '.join(repr(c) for c in close)}?"
    return f"known {what}: {', '.join(sorted(known)) or 'none'}"


def check_extends(doc: Doc, providers: Mapping[str, Doc]) -> list[Problem]:
    """`extends` names a known provider, and the chain it starts never comes back to this one."""
    parent = doc.data.get("extends")
    if not isinstance(parent, str):
        return []  # absent, or a wrong type the schema pass reports
    file, line = doc.where(("extends",))
    if parent not in providers:
        return [Problem(file, line, f"extends unknown provider {parent!r}; {_hint(parent, list(providers), 'providers')}", key="extends")]
    chain: list[str] = [doc.name]
    name: object = parent
    while isinstance(name, str) and name in providers and name not in chain:
        chain.append(name)
        name = providers[name].data.get("extends")
    if name == doc.name:  # each provider on a cycle reports it at its own `extends`
        return [Problem(file, line, f"`extends` cycle: {' → '.join([*chain, doc.name])}; break it by removing one `extends`",
                        key="extends")]
    return []


def check_provider(provider: ProviderConfig, doc: Doc) -> list[Problem]:
    if provider.abstract:
        return []
    problems = []
    try:
        host = urlsplit(provider.base_url).hostname or ""
    except ValueError as exc:
        file, line = doc.where(("base_url",))
        return [Problem(file, line, f"base_url {provider.base_url!r} is not a valid URL: {exc}", key="base_url")]
    if provider.hosts and "{" not in provider.base_url and not host_allowed(host, provider.hosts):  # `{var}`: vars.py
        file, line = doc.where(("hosts",))
        problems.append(Problem(file, line, f"base_url host {host!r} is not in `hosts` ({', '.join(provider.hosts)}); the key may only go to listed hosts", key="hosts"))
    return problems + _check_content_types(doc)


def _check_content_types(doc: Doc) -> list[Problem]:
    """A content-type header the provider declares (for all its operations, or for one) names the
    type the operation's `encoding` sends (CONTENT_TYPES): the engine writes the body and never sends
    it under another type. A templated value is checked when a call renders it."""
    operations = doc.data.get("operations")
    problems: dict[tuple[str, ...], Problem] = {}
    for kind, op in (operations or {}).items():
        if not isinstance(op, dict):
            continue
        encoding = op.get("encoding", "json")
        pattern, expected, sends = CONTENT_TYPES.get(encoding, CONTENT_TYPES["json"])
        for at, headers in ((("headers",), doc.data.get("headers")), (("operations", kind, "headers"), op.get("headers"))):
            for name, value in headers.items() if isinstance(headers, dict) else ():
                if str(name).lower() == "content-type" and isinstance(value, str) and "{{" not in value \
                        and not pattern.fullmatch(value):
                    file, line = doc.where((*at, name))
                    problems.setdefault((*at, str(name)), Problem(
                        file, line, f"content-type {value!r}: the {kind} operation sends {sends} bodies; declare "
                        f"{expected}, or leave it out", key=".".join((*at, str(name)))))
    return list(problems.values())


def check_base_url_overrides(models: Mapping[str, ModelConfig], providers: Mapping[str, ProviderConfig],
                             docs: Mapping[str, Doc], env: Mapping[str, str]) -> list[Problem]:
    """A base-URL variable that is set must hold a URL with a host (a provider's, or a deployment's own)."""
    named: dict[tuple[str, str], tuple[str, int | None]] = {
        (p.base_url_env, n): docs[n].where(("base_url_env",)) for n, p in providers.items() if p.base_url_env and n in docs}
    for model in models.values():
        for d in model.deployments:
            if d.base_url_env:
                named.setdefault((d.base_url_env, d.provider), (model.file, None))
    problems = []
    for (variable, provider), (file, line) in sorted(named.items(), key=lambda item: item[0]):
        value = env.get(variable)
        if not value:
            continue
        try:
            ok = bool(urlsplit(value).hostname) and value.startswith(("http://", "https://"))
        except ValueError:
            ok = False
        if not ok:
            problems.append(Problem(file, line, f"{variable} is set but is not an http(s) URL with a host; "
                                    f"provider {provider!r} cannot use it as its base URL", key="base_url_env"))
    return problems


def check_models(
    models: Mapping[str, ModelConfig], docs: Mapping[str, Doc], providers: Mapping[str, ProviderConfig],
    broken_providers: AbstractSet[str] = frozenset(), broken_models: AbstractSet[str] = frozenset(),
) -> list[Problem]:
    """References, operations, params and prices of each model. Names in `broken_*` had errors of
    their own already reported: checks that depend on them are skipped rather than repeated."""
    problems = []
    usable = [n for n, p in providers.items() if not p.abstract]

    def fail(model: ModelConfig, key: str, message: str) -> None:
        path = tuple(int(k) if k.isdigit() else k for k in key.split(".")) if key else ()
        file, line = docs[model.name].where(path)
        problems.append(Problem(file, line, f"model {model.name!r}: {message}", key=key))

    for model in models.values():
        served_by = [(d.provider, f"deployments.{i}.", d.upstream) for i, d in enumerate(model.deployments)] \
            or [(model.provider, "", model.upstream)]
        for provider_name, at, upstream in served_by:
            _check_served_by(model, provider_name, at, upstream, providers, broken_providers, usable, fail)
        names = [d.name for d in model.deployments]
        for i, name in enumerate(names):
            if name in names[:i]:
                fail(model, f"deployments.{i}", f"has two deployments named {name!r}; give each a distinct `name`")
        for i, d in enumerate(model.deployments):
            if d.pricing is not model.pricing and d.pricing is not None:
                _check_pricing(model, d.pricing, f"deployments.{i}.pricing", fail)
        for key in ("defaults", "rename"):
            for param in getattr(model, key):
                if param not in model.params:
                    fail(model, f"{key}.{param}", f"`{key}` names {param!r}, which is not in its `params` allow-list")
        for fallback in model.fallbacks:
            target = models.get(fallback)
            if fallback in broken_models:
                continue
            if target is None:
                fail(model, "fallbacks", f"falls back to unknown model {fallback!r}; {_hint(fallback, list(models), 'models')}")
            elif target.kind != model.kind:
                fail(model, "fallbacks", f"falls back to {fallback!r}, a {target.kind} model; a fallback must be a {model.kind} model too")
            elif fallback == model.name:
                fail(model, "fallbacks", "falls back to itself")
        if model.pricing is not None:
            _check_pricing(model, model.pricing, "pricing", fail)
        if model.reasoning is not None:
            _check_reasoning(model, model.reasoning, fail)
    problems.extend(_cycles(models, docs))
    return problems


def _check_reasoning(model: ModelConfig, reasoning: Reasoning, fail: Callable[[ModelConfig, str, str], None]) -> None:
    budget = reasoning.budget
    if budget is not None and budget.min > budget.max:
        fail(model, "reasoning.budget", f"reasoning.budget min {budget.min} is above max {budget.max}")
    for effort, target in reasoning.efforts.items():
        if budget is not None and target.budget is not None and not budget.min <= target.budget <= budget.max:
            fail(model, f"reasoning.efforts.{effort}.budget",
                 f"reasoning effort {effort!r} has budget {target.budget}, outside reasoning.budget [{budget.min}, {budget.max}]")
    if reasoning.max_tokens is not None and reasoning.max_tokens.param not in model.params:
        fail(model, "reasoning.max_tokens.param",
             f"reasoning.max_tokens names {reasoning.max_tokens.param!r}, which is not in its `params` allow-list")


def _check_served_by(
    model: ModelConfig, provider_name: str, at: str, upstream: str, providers: Mapping[str, ProviderConfig],
    broken_providers: AbstractSet[str], usable: list[str], fail: Callable[[ModelConfig, str, str], None],
) -> None:
    """`at`: the key prefix of a deployment (`deployments.0.`), or "" for the model itself."""
    provider = providers.get(provider_name)
    if provider_name in broken_providers:
        return  # its own errors are reported; what it would say of this model may be wrong
    if provider is None or provider.abstract:
        reason = "is abstract (a base for `extends`)" if provider else "does not exist"
        fail(model, at + "provider", f"names provider {provider_name!r}, which {reason}; {_hint(provider_name, usable, 'providers')}")
        return
    operation = provider.operations.get(model.kind)  # a model's kind names the operation that serves it
    if operation is None:
        fail(model, "kind", f"is a {model.kind} model but provider {provider.name!r} has no `{model.kind}` operation "
             f"(it has: {', '.join(provider.operations) or 'none'})")
        return
    urls = (operation.path, operation.stream.path if operation.stream else None,
            operation.poll.url.template if operation.poll else None)
    if any(url is not None and "model" in url.variables for url in urls):
        try:
            url_value(upstream)
        except UnsafeUrlValue as exc:
            fail(model, at + "upstream", f"provider {provider.name!r} places the upstream name in its URL, and {exc}; "
                 "every call would be refused before sending")
    sent = set(operation.body.param_names) if operation.body else set()
    for template in (operation.path, operation.query, operation.headers):
        if template is not None:
            sent |= template.param_names
    if operation.params.mode == "none":
        for param in sorted(model.params):
            upstream = model.rename.get(param, param)
            if upstream not in sent:
                fail(model, "params", f"allows param {param!r} but provider {provider.name!r} never sends it "
                     f"(its `{model.kind}` body does not name params.{upstream}; set `params: merge` on the operation "
                     "or name it in the body)")


def _check_pricing(model: ModelConfig, p: Pricing, at: str, fail: Callable[[ModelConfig, str, str], None]) -> None:
    groups = PRICES_FOR_KIND.get(model.kind, ())
    if groups and not any(all(getattr(p, name) is not None for name in group) for group in groups):
        needs = " or ".join(" and ".join(group) for group in groups)
        fail(model, at, f"a{'n' if model.kind[0] in 'aeiou' else ''} {model.kind} model's pricing needs {needs} "
                        "(or `pricing: unknown`)")
    if p.seconds_from is not None and p.seconds_from.param not in model.params:
        fail(model, f"{at}.seconds_from.param", f"seconds_from names {p.seconds_from.param!r}, which is not in its `params` allow-list")
    if p.per_output_second_by is not None and p.per_output_second_by.param not in model.params:
        fail(model, f"{at}.per_output_second_by.param",
             f"per_output_second_by names {p.per_output_second_by.param!r}, which is not in its `params` allow-list")
    if model.kind == "image" and p.per_image is None and not p.per_image_by_size and not p.per_image_by_quality:
        fail(model, at, "an image model's pricing needs per_image, per_image_by_size or per_image_by_quality "
                        "(or `pricing: unknown`)")
    thresholds = [t.above_input_tokens for t in p.tiers]
    if len(set(thresholds)) != len(thresholds):
        fail(model, f"{at}.tiers", "two price tiers have the same above_input_tokens; each threshold once")


def check_router(settings: RouterSettings, doc: Doc | None, models: Mapping[str, ModelConfig],
                 providers: Mapping[str, ProviderConfig], broken: AbstractSet[str] = frozenset(),
                 env: Mapping[str, str] | None = None) -> list[Problem]:
    """Each budget names a model or provider that exists; a Redis state has a URL."""
    if doc is None:
        return []
    problems = []
    state = settings.state
    if state.backend == "redis" and not state.url and env is not None and not env.get(state.url_env or ""):
        file, line = doc.where(("state", "url_env"))
        problems.append(Problem(file, line, f"state: {state.url_env} is not set and `url` is not given; "
                                "set the variable or add `url: redis://...`", severity="warning", key="state.url_env"))
    usable = [n for n, p in providers.items() if not p.abstract]
    for i, budget in enumerate(settings.budgets):
        if budget.scope == "router" and budget.name is not None:
            file, line = doc.where(("budgets", i, "name"))
            problems.append(Problem(file, line, f"budgets[{i}]: a router budget counts every call; remove `name` "
                                    "(or set scope: model or provider)", key=f"budgets.{i}.name"))
            continue
        known = list(models) if budget.scope == "model" else usable
        if budget.name is None or budget.name in known or budget.name in broken:
            continue
        file, line = doc.where(("budgets", i, "name"))
        problems.append(Problem(file, line, f"budgets[{i}] names unknown {budget.scope} {budget.name!r}; "
                                f"{_hint(budget.name, known, budget.scope + 's')}", key=f"budgets.{i}.name"))
    return problems


def _cycles(models: Mapping[str, ModelConfig], docs: Mapping[str, Doc]) -> list[Problem]:
    problems = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    reported: set[frozenset[str]] = set()

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in models[name].fallbacks:
            if nxt not in models or nxt == name:
                continue
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt):], nxt]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    file, line = docs[name].where(("fallbacks",))
                    problems.append(Problem(file, line, f"fallback cycle: {' → '.join(cycle)}", key="fallbacks"))
            elif state.get(nxt) is None:
                visit(nxt, [*path, nxt])
        state[name] = 2

    for name in models:
        if name not in state:
            visit(name, [name])
    return problems


def check_keys(
    models: Mapping[str, ModelConfig], providers: Mapping[str, ProviderConfig], docs: Mapping[str, Doc], env: Mapping[str, str]
) -> list[Problem]:
    """A warning for each key variable in use that is unset (a provider's, or a deployment's own)."""
    used: dict[tuple[str, str | None], str] = {}  # (provider, key_env) -> the model that uses it first
    for model in models.values():
        for provider_name, key_env in [(d.provider, d.key_env) for d in model.deployments] or [(model.provider, None)]:
            used.setdefault((provider_name, key_env), model.name)
    problems = []
    for (name, key_env), user in sorted(used.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        provider = providers.get(name)
        if provider is None or provider.auth is None or provider.auth.optional or provider.auth.env is None:
            continue  # no `env`: a mechanism that finds its own credentials (config/vars.py checks those)
        variable = key_env or provider.auth.env
        if env.get(variable):
            continue
        if key_env is None:
            file, line = docs[name].where(("auth", "env"))
            problems.append(Problem(file, line, f"{variable} is not set; calls to provider {name!r} will fail until it is",
                                    severity="warning", key="auth.env"))
        else:
            file = models[user].file
            problems.append(Problem(file, None, f"{variable} is not set; calls to model {user!r} through provider {name!r} "
                                    "will fail until it is", severity="warning", key="key_env"))
    return problems
