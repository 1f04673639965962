"""JSON Schema validation (draft 2020-12) that reports every error with its file and line."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from functools import cache
from typing import Any

from ..errors import Problem
from .load import Doc


@cache
def validator(name: str) -> Any:
    import jsonschema  # imported at load time only: `import llm_router` stays light

    from .._resources import schema_path

    schema = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def check(doc: Doc, schema: str, data: Any = None, strip: int = 0) -> list[Problem]:
    """Validate `data` (default: the doc's data) and return one problem per error.

    `strip` drops that many leading parts of each error's path before looking up its line
    (a model is validated wrapped in `{models: {name: ...}}` but marked relative to itself).
    """
    data = doc.data if data is None else data
    problems = []
    for error in _leaf_errors(validator(schema).iter_errors(data)):
        full = tuple(error.absolute_path)
        file, line = doc.where(full[strip:])
        key = ".".join(str(p) for p in full)
        problems.append(Problem(file, line, _describe(error, key), key=key))
    return problems


def _leaf_errors(errors: Iterable[Any]) -> Iterable[Any]:
    for error in errors:
        if error.validator in ("if", "then", "else", "allOf") and error.context:
            yield from _leaf_errors(error.context)
        else:
            yield error


def _describe(error: Any, key: str) -> str:
    where = f"{key}: " if key else ""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        parts = []
        for name in unknown:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" — did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(allowed)})"
            parts.append(f"unknown key {name!r}{hint}")
        return where + "; ".join(parts)
    if error.validator == "required":
        return f"{where}{error.message}"
    if error.validator == "enum":
        options = ", ".join(repr(v) for v in error.validator_value)
        close = difflib.get_close_matches(str(error.instance), [str(v) for v in error.validator_value], n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        return f"{where}{error.instance!r} is not one of {options}{hint}"
    if error.validator == "pattern" and error.schema.get("pattern") == "^\\$":
        return f"{where}{error.instance!r} is not a JSONPath; JSONPaths start with '$' (e.g. $.choices[0].message.content)"
    if error.validator == "not":
        return f"{where}these keys cannot be used together here: {error.message}"
    return f"{where}{error.message}"
