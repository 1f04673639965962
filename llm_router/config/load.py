"""Read config dirs: YAML with a line mark for every key, layering, and `extends`.

The result is plain data plus, for every key path, the file and line it came from, so that
every later check can say exactly where a problem is.
"""

from __future__ import annotations

import math
import stat
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


MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64  # how deep a config file may nest
MAX_VALUES = 100_000  # the values a file may hold once its aliases are expanded


def parse_yaml(path: Path, problems: list[Problem]) -> tuple[Any, dict[KeyPath, Origin]] | None:
    """Parse one YAML file into data and a mark per key path; report any fault as a problem: a file
    that is not a regular file (a device, a FIFO) or is larger than MAX_FILE_BYTES, a syntax error,
    a recursive alias or aliases that expand past MAX_VALUES values, nesting deeper than MAX_DEPTH,
    a number that is not finite (`.nan`, `.inf`)."""
    file = str(path)
    text = _read(path, problems)
    if text is None:
        return None
    loader = _Loader(text)
    try:
        return _Tree(loader, file, problems).build()
    except _Refused as exc:
        problems.append(Problem(file, exc.line, exc.message))
        return None
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


def _read(path: Path, problems: list[Problem]) -> str | None:
    """The file's text; a device, a FIFO or a socket is never opened (reading one could block or never end)."""
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
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(file, None, f"cannot read file: {exc}"))
        return None


class _Refused(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


_STR = "tag:yaml.org,2002:str"
_NO_KEY: Any = object()  # a mapping waits for a key
_SKIP: Any = object()  # a mapping's next value belongs to a refused key: read, then dropped


@dataclass
class _Open:
    """A mapping or sequence being read."""

    value: Any  # dict | list
    path: KeyPath | None  # None: a part of a refused key or of its value, not kept
    anchor: str | None
    first_mark: int
    first_count: int
    line: int
    key: Any = _NO_KEY
    key_line: int = 0
    key_lines: dict[str, int] = field(default_factory=dict)
    is_key: bool = False


class _Tree:
    """Builds the data and its marks from the parser's events, without recursion: each value's key
    path gets the line of its key (in a mapping) or its own line (in a sequence). An alias copies
    what its anchor built, and the marks under it."""

    def __init__(self, loader: Any, file: str, problems: list[Problem]) -> None:
        self.loader = loader
        self.file = file
        self.problems = problems
        self.marks: list[tuple[KeyPath, int]] = []
        self.anchors: dict[str, tuple[Any, list[tuple[KeyPath, int]], int] | None] = {}  # None: still open
        self.stack: list[_Open] = []
        self.count = 0
        self.root: Any = None

    def build(self) -> tuple[Any, dict[KeyPath, Origin]]:
        loader = self.loader
        loader.get_event()  # the stream starts
        if not loader.check_event(yaml.StreamEndEvent):
            loader.get_event()  # the document starts
            event = loader.get_event()
            while type(event) is not yaml.DocumentEndEvent:
                self.feed(event)
                event = loader.get_event()
            if not loader.check_event(yaml.StreamEndEvent):
                raise _Refused(loader.peek_event().start_mark.line + 1,
                               "a config file holds one YAML document; remove the second `---`")
        marks: dict[KeyPath, Origin] = {}
        for path, line in self.marks:
            marks.setdefault(path, (self.file, line))
        return self.root, marks

    def feed(self, event: Any) -> None:
        line = event.start_mark.line + 1
        top = self.stack[-1] if self.stack else None
        if top is not None and isinstance(top.value, dict) and top.key is _NO_KEY and not isinstance(
                event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            self.key(top, event, line)
            return
        if isinstance(event, yaml.ScalarEvent):
            self.grow(1, line)
            value = self.scalar(event, line)
            self.place(value, line, top)
            if event.anchor:
                self.anchors[event.anchor] = (value, [], 1)
        elif isinstance(event, yaml.AliasEvent):
            value, marks, size = self.alias(event.anchor, line)
            self.grow(size, line)
            path = self.place(_copy(value), line, top)
            if path is not None:
                self.marks.extend(((*path, *sub), at) for sub, at in marks)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(self.stack) >= MAX_DEPTH:
                raise _Refused(line, f"nested deeper than {MAX_DEPTH} levels")
            self.grow(1, line)
            container: Any = {} if isinstance(event, yaml.MappingStartEvent) else []
            path = self.place(container, line, top)
            self.stack.append(_Open(container, path, event.anchor, len(self.marks), self.count, line))
            if event.anchor:
                self.anchors[event.anchor] = None
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            closed = self.stack.pop()
            if closed.anchor:
                depth = len(closed.path) if closed.path is not None else 0
                sub = [(p[depth:], at) for p, at in self.marks[closed.first_mark:]]
                self.anchors[closed.anchor] = (closed.value, sub, self.count - closed.first_count + 1)
            if closed.is_key:  # its mapping drops the value that follows
                self.problems.append(Problem(self.file, closed.line, "keys must be plain strings, not lists or mappings"))

    def key(self, mapping: _Open, event: Any, line: int) -> None:
        """An event where `mapping` waits for a key: a scalar's text as written is the key (YAML 1.1
        would turn `on:` into True and `null:` into None)."""
        if isinstance(event, yaml.AliasEvent):
            anchored = self.alias(event.anchor, line)[0]
            text = anchored if isinstance(anchored, str) else None
        elif isinstance(event, yaml.ScalarEvent):
            text = event.value
            if event.anchor:
                self.anchors[event.anchor] = (text, [], 1)
        else:  # a mapping or a sequence as a key: read, reported when it ends, then dropped with its value
            if len(self.stack) >= MAX_DEPTH:
                raise _Refused(line, f"nested deeper than {MAX_DEPTH} levels")
            container: Any = {} if isinstance(event, yaml.MappingStartEvent) else []
            self.stack.append(_Open(container, None, event.anchor, len(self.marks), self.count, line, is_key=True))
            mapping.key = _SKIP
            return
        if text is None:
            self.problems.append(Problem(self.file, line, "keys must be plain strings, not lists or mappings"))
            mapping.key = _SKIP
        elif text == "<<":
            self.problems.append(Problem(self.file, line, "YAML merge keys (<<) are not supported; use `extends` for reuse"))
            mapping.key = _SKIP
        elif text in mapping.key_lines:
            self.problems.append(Problem(self.file, line, f"duplicate key {text!r} (first defined on line {mapping.key_lines[text]})"))
            mapping.key = _SKIP
        else:
            mapping.key_lines[text] = line
            mapping.key, mapping.key_line = text, line

    def place(self, value: Any, line: int, top: _Open | None) -> KeyPath | None:
        """Put a value where the parser is (the root, a sequence's next item, a mapping's pending
        key); record its mark. Returns its key path, or None when it is not kept."""
        if top is None:
            self.root = value
            self.marks.append(((), line))
            return ()
        if isinstance(top.value, list):
            path = (*top.path, len(top.value)) if top.path is not None else None
            top.value.append(value)
        else:
            key, top.key = top.key, _NO_KEY
            if key is _SKIP or top.path is None:
                return None
            path = (*top.path, key)
            top.value[key] = value
            line = top.key_line
        if path is not None:
            self.marks.append((path, line))
        return path

    def alias(self, anchor: str | None, line: int) -> tuple[Any, list[tuple[KeyPath, int]], int]:
        if anchor is None or anchor not in self.anchors:
            raise _Refused(line, f"alias *{anchor} names no anchor (&{anchor}) defined before it")
        anchored = self.anchors[anchor]
        if anchored is None:
            raise _Refused(line, f"alias *{anchor} is inside the value it names (a recursive alias)")
        return anchored

    def grow(self, size: int, line: int) -> None:
        self.count += size
        if self.count > MAX_VALUES:
            raise _Refused(line, f"the file holds more than {MAX_VALUES:,} values once its aliases are expanded "
                           "(an alias bomb?); reuse with `extends` instead")

    def scalar(self, event: Any, line: int) -> Any:
        tag = event.tag
        if tag is None and not event.implicit[0]:
            return event.value  # quoted: text
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            if tag == _STR:
                return event.value
        value = self.loader.construct_object(yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style))
        if isinstance(value, float) and not math.isfinite(value):
            self.problems.append(Problem(self.file, line, f"{event.value!r} is not a finite number; write a number "
                                         "(or quote it, for text)"))
            return None
        return value


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
            by_model: dict[Any, dict[KeyPath, Origin]] = {}  # one pass over the file's marks, not one per model
            for key_path, origin in marks.items():
                if len(key_path) >= 2 and key_path[0] == "models":
                    by_model.setdefault(key_path[1], {})[key_path[2:]] = origin
            for name, model in data["models"].items():
                _add_unique(layer_models, Doc(name, model, str(path), by_model.get(name, {})), "model", raw.problems)
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
        marks = dict(parent.marks)
        marks.update(doc.marks)
        resolved[name] = Doc(name, data, doc.file, marks)
        return resolved[name]

    for name in raw.providers:
        resolve(name, (name,))
    return {name: resolved[name] for name in raw.providers if name in resolved}
