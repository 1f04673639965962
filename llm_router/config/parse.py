"""One YAML file's text → plain data and a line mark for every key path (PyYAML's event parser).

Imported by load.py only when a file must be parsed: a bundled file that the digest's snapshot
holds (config/digest.py) is not, so a router of the bundled catalog alone never imports PyYAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import Problem
from .load import MAX_DEPTH, MAX_VALUES, KeyPath, Origin, _copy

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_text(text: str, file: str, problems: list[Problem]) -> tuple[Any, dict[KeyPath, Origin]] | None:
    """Parse the text of one YAML file into data and a mark per key path; report any fault as a
    problem: a syntax error, a recursive alias or aliases that expand past MAX_VALUES values,
    nesting deeper than MAX_DEPTH, a number that is not finite (`.nan`, `.inf`)."""
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
