"""Loading the config: YAML → JSON Schema → typed, frozen config → semantic checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from ..errors import Problem
from . import checks, schema
from .build import build_model, build_provider, build_settings
from .load import load_dirs, resolve_extends
from .model import Catalog


def load_catalog(dirs: Iterable[str | Path], env: Mapping[str, str]) -> tuple[Catalog, list[Problem]]:
    """Load and check every dir; return the catalog and every problem found (errors and warnings)."""
    raw = load_dirs([Path(d) for d in dirs])
    problems = list(raw.problems)
    for doc in raw.providers.values():
        problems += schema.check(doc, "provider")
    for doc in raw.models.values():
        # Validate each model inside its file's shape so that messages carry the file's key path.
        problems += schema.check(doc, "models", data={"models": {doc.name: doc.data}}, strip=2)
    if raw.router is not None:
        problems += schema.check(raw.router, "router")
    problems += checks.check_extends(raw)
    if any(p.severity == "error" for p in problems):
        return Catalog(MappingProxyType({}), MappingProxyType({}), files=tuple(raw.files)), _unique(problems)

    resolved = resolve_extends(raw)
    for name, doc in resolved.items():
        if doc is not raw.providers[name]:  # merged by extends: validate the result as well
            problems += schema.check(doc, "provider")
    if any(p.severity == "error" for p in problems):
        return Catalog(MappingProxyType({}), MappingProxyType({}), files=tuple(raw.files)), _unique(problems)

    providers = {name: build_provider(doc, problems) for name, doc in resolved.items()}
    for name, provider in providers.items():
        problems += checks.check_provider(provider, resolved[name])
    models = {name: build_model(doc) for name, doc in raw.models.items()}
    problems += checks.check_models(models, raw.models, providers)
    problems += checks.check_keys(models, providers, resolved, env)
    catalog = Catalog(
        providers=MappingProxyType(providers),
        models=MappingProxyType(models),
        settings=build_settings(raw.router),
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
