"""Read config dirs: YAML with a line mark for every key, layering, and `extends`.

The result is plain data plus, for every key path, the file and line it came from, so that
every later check can say exactly where a problem is.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import Problem

KeyPath = tuple[str | int, ...]
Origin = tuple[str, int]  # (file, line)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Doc:
    """One config object (a provider, a model, the router settings) and where its keys came from."""

    name: str
    data: Any
    file: str
    marks: dict[KeyPath, Origin] = field(default_factory=dict)

    def where(self, path: Iterable[str | int] = ()) -> Origin:
        """The file and line of the deepest part of `path` that has a mark."""
        path = tuple(path)
        while path:
            if path in self.marks:
                return self.marks[path]
            path = path[:-1]
        return self.marks.get((), (self.file, 1))


@dataclass
class RawConfig:
    providers: dict[str, Doc] = field(default_factory=dict)
    models: dict[str, Doc] = field(default_factory=dict)
    router: Doc | None = None
    files: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unreadable_providers: list[str] = field(default_factory=list)  # provider files that yielded no provider


def parse_yaml(path: Path, problems: list[Problem]) -> tuple[Any, dict[KeyPath, Origin]] | None:
    """Parse one YAML file into data and a mark per key path; report syntax errors as problems."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(file, None, f"cannot read file: {exc}"))
        return None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        marks: dict[KeyPath, Origin] = {}
        data = _construct(loader, node, (), file, marks, problems) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        context = ""
        if exc.context and exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
            context = f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
        problems.append(Problem(file, line, f"YAML syntax error: {exc.problem or exc.context}{context}"))
        return None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        problems.append(Problem(file, line, f"YAML error: {exc.reason} (character U+{code:04X}); remove it"))
        return None
    except yaml.YAMLError as exc:
        problems.append(Problem(file, None, f"YAML error: {exc}"))
        return None
    finally:
        loader.dispose()
    return data, marks


def _construct(loader: Any, node: Any, path: KeyPath, file: str, marks: dict[KeyPath, Origin], problems: list[Problem]) -> Any:
    marks.setdefault(path, (file, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem(file, line, "keys must be plain strings, not lists or mappings"))
                continue
            # The key's text as written: YAML 1.1 would turn `on:` into True and `null:` into None.
            key = key_node.value
            if key == "<<":
                problems.append(Problem(file, line, "YAML merge keys (<<) are not supported; use `extends` for reuse"))
                continue
            if key in out:
                first = marks[(*path, key)][1]
                problems.append(Problem(file, line, f"duplicate key {key!r} (first defined on line {first})"))
                continue
            marks[(*path, key)] = (file, line)
            out[key] = _construct(loader, value_node, (*path, key), file, marks, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, (*path, i), file, marks, problems) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def config_files(directory: Path) -> tuple[list[Path], list[Path], Path | None]:
    providers = sorted([*directory.glob("providers.d/*.yaml"), *directory.glob("providers.d/*.yml")])
    models = sorted([*directory.glob("models.d/*.yaml"), *directory.glob("models.d/*.yml")])
    router = directory / "router.yaml"
    return providers, models, router if router.is_file() else None


def load_dirs(dirs: Iterable[Path]) -> RawConfig:
    """Read every dir in order; later dirs replace earlier providers and models of the same name."""
    raw = RawConfig()
    for directory in dirs:
        if not directory.is_dir():
            raw.problems.append(Problem(str(directory), None, "config dir does not exist (expected a dir holding providers.d/ and models.d/)"))
            continue
        provider_files, model_files, router_file = config_files(directory)
        if not provider_files and not model_files and router_file is None and not (directory / "gateway.yaml").is_file():
            raw.problems.append(Problem(str(directory), None,
                                        "no providers.d/*.yaml, models.d/*.yaml, router.yaml or gateway.yaml here"))
        layer_providers: dict[str, Doc] = {}
        layer_models: dict[str, Doc] = {}
        for path in provider_files:
            raw.files.append(str(path))
            doc = _provider_doc(path, raw.problems)
            if doc is None:
                raw.unreadable_providers.append(str(path))
            else:
                _add_unique(layer_providers, doc, "provider", raw.problems)
        for path in model_files:
            raw.files.append(str(path))
            parsed = parse_yaml(path, raw.problems)
            if parsed is None:
                continue
            data, marks = parsed
            if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
                raw.problems.append(Problem(str(path), 1, "a model file must be a mapping with a `models:` mapping of name → model"))
                continue
            extra = sorted(set(data) - {"models"})
            for key in extra:
                raw.problems.append(Problem(str(path), marks[(key,)][1], f"unknown top-level key {key!r}; a model file holds only `models:`"))
            for name, model in data["models"].items():
                sub = {p[2:]: o for p, o in marks.items() if p[:2] == ("models", name)}
                _add_unique(layer_models, Doc(name, model, str(path), sub), "model", raw.problems)
        if router_file is not None:
            raw.files.append(str(router_file))
            parsed = parse_yaml(router_file, raw.problems)
            if parsed is not None:
                data, marks = parsed
                raw.router = Doc("router", data if data is not None else {}, str(router_file), marks)
        raw.providers.update(layer_providers)
        raw.models.update(layer_models)
    return raw


def _provider_doc(path: Path, problems: list[Problem]) -> Doc | None:
    parsed = parse_yaml(path, problems)
    if parsed is None:
        return None
    data, marks = parsed
    if not isinstance(data, dict):
        problems.append(Problem(str(path), 1, "a provider file must be a mapping with `name`, `base_url`, `operations`, ..."))
        return None
    name = data.get("name")
    if not isinstance(name, str):
        problems.append(Problem(str(path), marks.get(("name",), (str(path), 1))[1], "a provider file needs a string `name`"))
        return None
    return Doc(name, data, str(path), marks)


def _add_unique(layer: dict[str, Doc], doc: Doc, what: str, problems: list[Problem]) -> None:
    existing = layer.get(doc.name)
    if existing is not None:
        first_file, first_line = existing.where()
        problems.append(
            Problem(doc.file, doc.where()[1], f"duplicate {what} {doc.name!r}: also defined at {first_file}:{first_line}; "
                    "names must be unique within one config dir (a later dir may override)")
        )
        return
    layer[doc.name] = doc


def merge(base: Any, override: Any) -> Any:
    """Deep merge for `extends`: mappings merge, `null` deletes a key, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = {k: copy.deepcopy(v) for k, v in base.items()}
        for key, value in override.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


def resolve_extends(raw: RawConfig) -> dict[str, Doc]:
    """Providers after `extends` (one level: a base may not extend another)."""
    resolved: dict[str, Doc] = {}
    for name, doc in raw.providers.items():
        parent_name = doc.data.get("extends")
        if not isinstance(parent_name, str):
            resolved[name] = doc
            continue
        parent = raw.providers.get(parent_name)
        if parent is None:
            continue  # reported by the semantic checks, with the list of known providers
        if parent.data.get("extends") is not None:
            continue  # reported by the semantic checks: one level of reuse only
        data = merge(parent.data, doc.data)
        data.pop("extends", None)
        data.pop("abstract", None)
        if doc.data.get("abstract") is True:
            data["abstract"] = True
        marks = dict(parent.marks)
        marks.update(doc.marks)
        resolved[name] = Doc(name, data, doc.file, marks)
    return resolved
