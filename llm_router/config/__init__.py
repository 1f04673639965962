"""Loading the config: YAML → JSON Schema → typed, frozen config → semantic checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from ..errors import Problem
from .model import Catalog


def load_catalog(dirs: Iterable[str | Path], env: Mapping[str, str], *,
                 trust_digest: bool = True) -> tuple[Catalog, list[Problem]]:
    """Load and check every dir; return the catalog and every problem found (errors and warnings).

    A provider or model with an error is left out of the later checks, and so are the checks that
    depend on it (a model of a broken provider), so that one run reports every independent
    problem once, without follow-on noise. A bundled file that matches the catalog's digest skips
    the JSON Schema pass it is known to pass (`trust_digest=False`: validate it anyway; see digest.py).
    """
    # Imported here, not above: YAML, Jinja, JSONPath and the validator load with the first catalog,
    # so that importing llm_router (or only its config types) stays light.
    from . import checks, schema
    from .build import build_model, build_provider, build_settings
    from .digest import unchanged_bundled
    from .load import load_dirs, resolve_extends
    from .vars import check_environment

    raw = load_dirs([Path(d) for d in dirs])
    known_good = unchanged_bundled(raw.files, raw.hashes) if trust_digest else frozenset()
    if known_good and raw.trusted_leaves is not None:
        from ..templating import trust_leaves

        trust_leaves(*raw.trusted_leaves)
    problems = list(raw.problems)
    broken: set[str] = set()  # providers with an error
    for name, doc in raw.providers.items():
        # A file that `extends` another may be partial: its `required` keys are checked after the merge.
        found = [] if doc.file in known_good else schema.check(doc, "provider", partial=isinstance(doc.data.get("extends"), str))
        found += checks.check_extends(doc, raw.providers)
        if found:
            broken.add(name)
            problems += found
    grown = True
    while grown:  # down every `extends` chain: a merge over a broken base would repeat the base's errors
        before = len(broken)
        broken |= {n for n, d in raw.providers.items() if isinstance(d.data.get("extends"), str) and d.data["extends"] in broken}
        grown = len(broken) > before
    if raw.unreadable_providers:
        # A model may name a provider from a file that could not be read: say nothing more about it.
        named = {d.data.get("provider") for d in raw.models.values() if isinstance(d.data, dict)}
        broken |= {n for n in named if isinstance(n, str)} - set(raw.providers)
    bad_models: set[str] = set()
    for name, doc in raw.models.items():
        # Validate each model inside its file's shape so that messages carry the file's key path.
        found = [] if doc.file in known_good else schema.check(doc, "models", data={"models": {name: doc.data}}, strip=2)
        if found:
            bad_models.add(name)
            problems += found
    router_problems = schema.check(raw.router, "router") if raw.router is not None and raw.router.file not in known_good else []
    problems += router_problems

    resolved = {n: d for n, d in resolve_extends(raw).items() if n not in broken}
    trusted = set()  # providers every file of which the digest vouches for: their templates compile on first use
    for name, doc in resolved.items():
        if doc is raw.providers[name]:
            if doc.file in known_good:
                trusted.add(name)
            continue
        # Merged by `extends`: validate the result as well, unless both files it came from are known good.
        if {doc.file, raw.providers[raw.providers[name].data["extends"]].file} <= known_good:
            trusted.add(name)
            continue
        found = schema.check(doc, "provider")
        if found:
            broken.add(name)
            problems += found
    providers = {}
    for name, doc in resolved.items():
        if name in broken:
            continue
        before = len(problems)
        providers[name] = build_provider(doc, problems, trusted=name in trusted)
        if len(problems) > before:
            broken.add(name)
        problems += checks.check_provider(providers[name], doc)
    models = {name: build_model(doc) for name, doc in raw.models.items() if name not in bad_models}
    problems += checks.check_models(models, raw.models, providers, broken, bad_models)
    problems += checks.check_keys(models, providers, resolved, env)
    problems += checks.check_base_url_overrides(models, providers, resolved, env)
    problems += check_environment(providers, resolved, env)
    settings = build_settings(raw.router if not router_problems else None)
    problems += checks.check_router(settings, raw.router, models, providers, broken | bad_models, env)
    if any(p.severity == "error" for p in problems):
        return Catalog(MappingProxyType({}), MappingProxyType({}), files=tuple(raw.files)), _unique(problems)
    catalog = Catalog(
        providers=MappingProxyType(providers),
        models=MappingProxyType(models),
        settings=settings,
        files=tuple(raw.files),
    )
    return catalog, _unique(problems)


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, int | None, str]] = set()
    out = []
    for p in problems:
        if (p.file, p.line, p.message) not in seen:
            seen.add((p.file, p.line, p.message))
            out.append(p)
    return out
