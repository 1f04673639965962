"""JSON Schema validation (draft 2020-12) that reports every error with its file and line."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from ..errors import Problem
from .load import Doc


@cache
def _schema(name: str) -> Any:
    """The schema with every local `$ref` replaced by its target: validating costs a third less
    without reference lookups, and an error's schema path can be followed without resolving."""
    from .._resources import schema_path

    root = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return _inline(root, root, (), {})


def _inline(node: Any, root: Any, seen: tuple[str, ...], done: dict[tuple[str, tuple[str, ...]], Any]) -> Any:
    """`done` holds each target once inlined, shared by every `$ref` to it (nothing mutates a schema):
    the provider schema's 63 `$ref`s would otherwise copy the same subtrees over and over (15 ms → 1 ms)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:  # a recursive `$ref` stays a `$ref`
            if (ref, seen) not in done:
                target = root
                for part in ref.removeprefix("#/").split("/"):
                    target = target[part]
                done[ref, seen] = _inline(target, root, (*seen, ref), done)
            # Only annotations sit next to our `$ref`s, so a merge keeps the meaning.
            return {**done[ref, seen], **{k: v for k, v in node.items() if k != "$ref"}}
        return {k: v if k == "$defs" else _inline(v, root, seen, done) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, root, seen, done) for v in node]
    return node


@cache
def validator(name: str) -> Any:
    """One validator per schema for the life of the process (building one costs more than using it)."""
    return _validator_class()(_schema(name))


@cache
def _validator_class() -> Any:
    """Draft 2020-12, with `pattern` read as ECMA-262 reads it (see `_ecma`)."""
    import jsonschema  # imported at load time only: `import llm_router` stays light

    def pattern(validator: Any, regex: str, instance: Any, schema: Any) -> Any:
        if validator.is_type(instance, "string") and not _ecma(regex).search(instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {regex!r}")

    return jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": pattern})  # type: ignore[no-untyped-call]


# A `$` outside a character class; escapes and classes are matched first so that their `$` stays.
_DOLLAR = re.compile(r"\\.|\[(?:\\.|[^\]\\])*\]|\$", re.S)


@cache
def _ecma(pattern: str) -> re.Pattern[str]:
    """A schema pattern as ECMA-262 (which JSON Schema names, and editors use) reads it: `$` ends the
    text. Python's `$` also matches before a final newline, so `^https://[^/]+$` would take
    "https://host\\n"; `\\Z` does not."""
    return re.compile(_DOLLAR.sub(lambda m: r"\Z" if m[0] == "$" else m[0], pattern))


def check(doc: Doc, schema: str, data: Any = None, strip: int = 0, partial: bool = False) -> list[Problem]:
    """Validate `data` (default: the doc's data) and return one problem per error.

    `strip` drops that many leading parts of each error's path before looking up its line
    (a model is validated wrapped in `{models: {name: ...}}` but marked relative to itself).
    `partial` checks a file that `extends` another as written: missing keys are not errors (nor an
    object that only deletes, `operations: {video: null}`) and `null` (which deletes an inherited
    key) is allowed; the merged result is checked in full later.
    """
    data = doc.data if data is None else data
    if partial:
        data = _without_nulls(data)
    problems = []
    for error in _leaf_errors(validator(schema).iter_errors(data)):
        if partial and error.validator in ("required", "minProperties"):  # what the file it extends gives
            continue
        full = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            # One problem per unknown key, at the key's own line.
            for name, message in _unknown_keys(error):
                key = ".".join(str(p) for p in (*full, name))
                file, line = doc.where((*full, name)[strip:])
                problems.append(Problem(file, line, f"{'.'.join(map(str, full))}: {message}" if full else message, key=key))
            continue
        file, line = doc.where(full[strip:])
        key = ".".join(str(p) for p in full)
        problems.append(Problem(file, line, _describe(error, key, schema), key=key))
    return problems


def _without_nulls(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_nulls(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_without_nulls(v) for v in data]
    return data


def _leaf_errors(errors: Iterable[Any]) -> Iterable[Any]:
    for error in errors:
        if error.validator in ("if", "then", "else", "allOf") and error.context:
            yield from _leaf_errors(error.context)
        else:
            yield error


def _unknown_keys(error: Any) -> list[tuple[str, str]]:
    allowed = list(error.schema.get("properties", {}))
    out = []
    for name in error.instance:
        if name in allowed:
            continue
        close = difflib.get_close_matches(str(name), allowed, n=1)
        hint = f" — did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(allowed)})"
        out.append((name, f"unknown key {name!r}{hint}"))
    return out


def _describe(error: Any, key: str, schema: str) -> str:
    where = f"{key}: " if key else ""
    if error.validator == "enum":
        options = ", ".join(repr(v) for v in error.validator_value)
        close = difflib.get_close_matches(str(error.instance), [str(v) for v in error.validator_value], n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        return f"{where}{error.instance!r} is not one of {options}{hint}"
    if error.validator == "pattern" and error.schema.get("pattern") == "^\\$":
        return f"{where}{error.instance!r} is not a JSONPath; JSONPaths start with '$' (e.g. $.choices[0].message.content)"
    if error.validator == "not" and isinstance(error.instance, dict):
        conflict = _describe_conflict(error, schema)
        if conflict:
            return where + conflict
    return f"{where}{error.message}"


def _describe_conflict(error: Any, schema: str) -> str | None:
    """Say which keys clash for a `not: {required: ...}` under an if/then/else, e.g.
    "`handler` cannot be used with `route_by`/`on`" instead of "... should not be valid under ..."."""
    path = list(error.absolute_schema_path)
    banned = [k for k in _required_keys(error.validator_value) if k in error.instance]
    if len(path) < 2 or path[-1] != "not" or path[-2] not in ("then", "else") or not banned:
        return None
    parent = _schema_at(_schema(schema), path[:-2])
    if not isinstance(parent, dict):
        return None
    condition = _required_keys(parent.get("if", {}))
    if not condition:
        return None
    these = "/".join(f"`{k}`" for k in banned)
    if path[-2] == "then":
        context = condition + [k for k in parent["then"].get("required", []) if k not in condition]
        return f"{these} cannot be used with {'/'.join(f'`{k}`' for k in context)}; remove one of them"
    return f"{these} cannot be used without {'/'.join(f'`{k}`' for k in condition)}"


def _required_keys(subschema: Any) -> list[str]:
    """The keys a `required` (or an anyOf/oneOf of `required`s) names."""
    if not isinstance(subschema, dict):
        return []
    keys = list(subschema.get("required", []))
    for branch in subschema.get("anyOf", []) + subschema.get("oneOf", []):
        keys += [k for k in _required_keys(branch) if k not in keys]
    return keys


def _schema_at(root: Any, path: Sequence[Any]) -> Any | None:
    """Follow a jsonschema `absolute_schema_path` (our schemas have no `$ref` left after inlining)."""
    node = root
    for part in path:
        if not isinstance(node, dict | list) or (isinstance(node, dict) and part not in node):
            return None
        node = node[part]
    return node
