"""Read config dirs: YAML with a line mark for every key, layering, and `extends`.

The result is plain data plus, for every key path, the file and line it came from, so that
every later check can say exactly where a problem is.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Problem

KeyPath = tuple[str | int, ...]
Origin = tuple[str, int]  # (file, line)


@dataclass
class Doc:
    """One config object (a provider, a model, the router settings) and where its keys came from."""

    name: str
    data: Any
    file: str
    marks: Mapping[KeyPath, Origin] = field(default_factory=dict)

    def where(self, path: Iterable[str | int] = ()) -> Origin:
        """The file and line of the deepest part of `path` that has a mark."""
        path = tuple(path)
        while path:
            if path in self.marks:
                return self.marks[path]
            path = path[:-1]
        return self.marks.get((), (self.file, 1))


class Marks(Mapping[KeyPath, Origin]):
    """A view of marks made on demand, not copied: the marks under `prefix` of `marks` (one model of a
    model file), with `file` the origin of each when `marks` holds only lines (the digest's snapshot),
    over `below` where it has no mark of its own (a provider over the one it `extends`)."""

    __slots__ = ("marks", "file", "prefix", "below")

    def __init__(self, marks: Mapping[KeyPath, Any], file: str | None = None, prefix: KeyPath = (),
                 below: Mapping[KeyPath, Origin] | None = None) -> None:
        self.marks, self.file, self.prefix, self.below = marks, file, prefix, below

    def __getitem__(self, path: KeyPath) -> Origin:
        found = self.marks.get(self.prefix + path)
        if found is None:
            if self.below is None:
                raise KeyError(path)
            return self.below[path]
        return (self.file, found) if self.file is not None else found

    def __contains__(self, path: object) -> bool:
        return isinstance(path, tuple) and (self.prefix + path in self.marks or (self.below is not None and path in self.below))

    def __iter__(self) -> Iterator[KeyPath]:
        n = len(self.prefix)
        own = [path[n:] for path in self.marks if path[:n] == self.prefix]
        seen = set(own)
        return iter([*own, *(path for path in self.below or () if path not in seen)])

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class RawConfig:
    providers: dict[str, Doc] = field(default_factory=dict)
    models: dict[str, Doc] = field(default_factory=dict)
    router: Doc | None = None
    files: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unreadable_providers: list[str] = field(default_factory=list)  # provider files that yielded no provider
    hashes: dict[str, str] = field(default_factory=dict)  # the sha256 of the bundled files read, by file
    # the digest's snapshot's facts of the bundled templates, and the Jinja version that found them
    trusted_leaves: tuple[Mapping[str, tuple[Any, ...]], str] | None = None


MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64  # how deep a config file may nest
MAX_VALUES = 100_000  # the values a file may hold once its aliases are expanded


def parse_yaml(path: Path, problems: list[Problem], snapshot: Mapping[str, tuple[str, Any, dict[KeyPath, int]]] | None = None,
               hashes: dict[str, str] | None = None) -> tuple[Any, Mapping[KeyPath, Origin]] | None:
    """Parse one YAML file into data and a mark per key path; report any fault as a problem: a file
    that is not a regular file (a device, a FIFO) or is larger than MAX_FILE_BYTES, and what
    parse.parse_text refuses (syntax errors, alias bombs, deep nesting, numbers that are not finite).

    `snapshot`: the bundled files as parsed when the digest was written (digest.snapshot); a file
    whose bytes are those it was parsed from is taken from there, not parsed again. `hashes`: where
    to put the sha256 of the bytes read, by file (the digest's check then need not read them again)."""
    file = str(path)
    data = _read(path, problems)
    if data is None:
        return None
    parsed = snapshot.get(file) if snapshot else None
    if parsed is not None or hashes is not None:
        sha256 = hashlib.sha256(data).hexdigest()
        if hashes is not None:
            hashes[file] = sha256
        if parsed is not None and parsed[0] == sha256:
            return parsed[1], Marks(parsed[2], file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(file, None, f"cannot read file: {exc}"))
        return None
    from .parse import parse_text  # here: PyYAML loads with the first file that is parsed

    return parse_text(text, file, problems)


def _read(path: Path, problems: list[Problem]) -> bytes | None:
    """The file's bytes; a device, a FIFO or a socket is never opened (reading one could block or never end)."""
    file = str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            problems.append(Problem(file, None, "not a regular file (a device, FIFO or socket?); a config file must be a plain file"))
            return None
        if info.st_size > MAX_FILE_BYTES:
            problems.append(Problem(file, None, f"the file is {info.st_size:,} bytes; a config file may hold at most "
                                    f"{MAX_FILE_BYTES:,} (split it across files)"))
            return None
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            problems.append(Problem(file, None, f"the file holds more than {MAX_FILE_BYTES:,} bytes"))
            return None
        return data
    except OSError as exc:
        problems.append(Problem(file, None, f"cannot read file: {exc}"))
        return None


def config_files(directory: Path) -> tuple[list[Path], list[Path], Path | None]:
    providers = sorted([*directory.glob("providers.d/*.yaml"), *directory.glob("providers.d/*.yml")])
    models = sorted([*directory.glob("models.d/*.yaml"), *directory.glob("models.d/*.yml")])
    router = directory / "router.yaml"
    return providers, models, router if router.is_file() else None


def load_dirs(dirs: Iterable[Path]) -> RawConfig:
    """Read every dir in order; later dirs replace earlier providers and models of the same name."""
    from .digest import snapshot

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
        parsed_before = snapshot(directory)
        hashes = raw.hashes if parsed_before.files else None
        if parsed_before.leaves:
            raw.trusted_leaves = (parsed_before.leaves, parsed_before.jinja)
        for path in provider_files:
            raw.files.append(str(path))
            doc = _provider_doc(path, raw.problems, parsed_before.files, hashes)
            if doc is None:
                raw.unreadable_providers.append(str(path))
            else:
                _add_unique(layer_providers, doc, "provider", raw.problems)
        for path in model_files:
            raw.files.append(str(path))
            parsed = parse_yaml(path, raw.problems, parsed_before.files, hashes)
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
                _add_unique(layer_models, Doc(name, model, str(path), Marks(marks, prefix=("models", name))), "model", raw.problems)
        if router_file is not None:
            raw.files.append(str(router_file))
            parsed = parse_yaml(router_file, raw.problems, parsed_before.files, hashes)
            if parsed is not None:
                data, marks = parsed
                raw.router = Doc("router", data if data is not None else {}, str(router_file), marks)
        raw.providers.update(layer_providers)
        raw.models.update(layer_models)
    return raw


def _provider_doc(path: Path, problems: list[Problem], snapshot: Mapping[str, tuple[str, Any, dict[KeyPath, int]]],
                  hashes: dict[str, str] | None) -> Doc | None:
    parsed = parse_yaml(path, problems, snapshot, hashes)
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
        out = {k: _copy(v) for k, v in base.items()}
        for key, value in override.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value)
            else:
                out[key] = _copy(value)
        return out
    return _copy(override)


def _copy(value: Any) -> Any:
    """A deep copy of parsed YAML: its mappings and sequences are copied, its scalars (str, numbers,
    dates, bytes: immutable) are shared. What copy.deepcopy gives, at a fraction of its cost."""
    if type(value) is dict:
        return {k: _copy(v) for k, v in value.items()}
    if type(value) is list:
        return [_copy(v) for v in value]
    return value


def resolve_extends(raw: RawConfig) -> dict[str, Doc]:
    """Providers after `extends`, over any number of levels: each file merged over its resolved base.
    A provider whose chain names an unknown provider or runs in a cycle is left out (the semantic
    checks report it, with file and line)."""
    resolved: dict[str, Doc] = {}

    def resolve(name: str, below: tuple[str, ...]) -> Doc | None:
        if name in resolved:
            return resolved[name]
        doc = raw.providers[name]
        parent_name = doc.data.get("extends")
        if not isinstance(parent_name, str):
            resolved[name] = doc
            return doc
        if parent_name not in raw.providers or parent_name in below:
            return None
        parent = resolve(parent_name, (*below, name))
        if parent is None:
            return None
        data = merge(parent.data, doc.data)
        data.pop("extends", None)
        data.pop("abstract", None)
        if doc.data.get("abstract") is True:
            data["abstract"] = True
        resolved[name] = Doc(name, data, doc.file, Marks(doc.marks, below=parent.marks))
        return resolved[name]

    for name in raw.providers:
        resolve(name, (name,))
    return {name: resolved[name] for name in raw.providers if name in resolved}
