"""The bundled catalog's digest: the sha256 of every bundled config file and of the schema that
checks it, written once the catalog validates clean.

JSON Schema validation was most of the cost of loading the bundled catalog, and its answer for a
file is fixed by the file's bytes and its schema's bytes. So a bundled file whose bytes, and its
schema's, match the digest is known to pass and skips that pass; a user's file, or a bundled file
or schema edited since the digest was written, is validated in full. Every other check
(references, keys, templates, JSONPaths) runs on every file, but for the template checks of a
vouched-for provider (templating.compile_structure, `trusted`: its templates compile on first use;
tests/test_startup.py validates the bundled catalog in full with today's code).

The same command writes a snapshot of the bundled files as parsed (data and line marks, plain
values in marshal's format, beside the digest, which records its sha256): a bundled file whose
bytes are those it was parsed from is read from there, so a router of the bundled catalog alone
never imports PyYAML nor parses YAML. With them, what parsing each of their templates tells
(templating.LeafFacts), so that a vouched-for template is not parsed at load either, and Jinja
loads only when a template is first compiled. Loading it executes nothing: marshal's format holds
values, and a snapshot the digest does not vouch for, or a file changed since, is parsed as before.

After editing a bundled file or a schema:  python -m llm_router.config.digest --write
Without --write, the command says whether the digest is current (exit 1 when it is stale).
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .._resources import catalog_dir

DIGEST_FILE = Path(__file__).resolve().parent.parent / "_catalog_digest.json"
SNAPSHOT_NAME = "_catalog_snapshot.marshal"  # beside DIGEST_FILE
WRITE_COMMAND = "python -m llm_router.config.digest --write"
SCHEMA_OF = {"providers.d": "schemas/provider.schema.json", "models.d": "schemas/models.schema.json",
             "router.yaml": "schemas/router.schema.json"}  # what load_catalog validates each kind of file with


def unchanged_bundled(files: Iterable[str], hashes: Mapping[str, str] | None = None) -> frozenset[str]:
    """Those of `files` that are the bundled catalog's own and match the digest, as does the schema that
    checks them. `hashes`: the sha256 of files' bytes as read for parsing, by file (the others are read here)."""
    root = catalog_dir()
    prefix = str(root) + os.sep
    recorded = _recorded()
    schemas: dict[str, bool] = {}  # schema → unchanged
    out = []
    for file in files:
        name = Path(file[len(prefix):]).as_posix() if file.startswith(prefix) else ""
        schema = SCHEMA_OF.get(name.split("/", 1)[0])
        if schema is None or name not in recorded:
            continue
        if schema not in schemas:
            schemas[schema] = recorded.get(schema, "") == _sha256(root / schema)
        if schemas[schema] and recorded[name] == ((hashes or {}).get(file) or _sha256(Path(file))):
            out.append(file)
    return frozenset(out)


def stale() -> list[str]:
    """What differs between the bundled catalog and its digest, one line per file, and the snapshot when it
    does not hold every bundled file as it is now (a digest merged from another branch keeps the other
    branch's hashes, not its snapshot); empty when current."""
    recorded, current = _recorded(), _current()
    lines = [f"{name}: {'not in the digest' if name not in recorded else 'gone' if name not in current else 'changed'}"
             for name in sorted(recorded.keys() | current.keys()) if recorded.get(name) != current.get(name)]
    held = _read_snapshot()
    files = {name: sha for name, sha in current.items() if not name.startswith("schemas/")}
    if {**{name: entry[0] for name, entry in held.files.items()}, **held.unheld} != files:
        lines.append(f"{SNAPSHOT_NAME}: does not hold every bundled file as it is now")
    return lines


def write() -> list[str]:
    """Validate the bundled catalog in full; if it is clean, write its digest. Returns the errors (empty: written)."""
    from . import load_catalog

    _, problems = load_catalog([catalog_dir()], env={}, trust_digest=False)
    errors = [f"{p.file}:{p.line or 0}: {p.message}" for p in problems if p.severity == "error"]
    if not errors:
        current = _current()
        written = _write_snapshot([name for name in current if not name.startswith("schemas/")])
        body = {"written_by": WRITE_COMMAND, "sha256": current, "snapshot": written}
        DIGEST_FILE.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return errors


def _recorded() -> dict[str, str]:
    try:
        recorded = json.loads(DIGEST_FILE.read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # no usable digest: everything is validated in full
    return {k: v for k, v in recorded.items() if isinstance(v, str)} if isinstance(recorded, dict) else {}


def _current() -> dict[str, str | None]:
    from .load import config_files

    root = catalog_dir()
    providers, models, router = config_files(root)
    names = [p.relative_to(root).as_posix() for p in (*providers, *models, *([router] if router else []))]
    names += sorted({SCHEMA_OF[name.split("/", 1)[0]] for name in names})
    return {name: _sha256(root / name) for name in names}


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    import argparse  # here, not above: this module is imported by every load

    parser = argparse.ArgumentParser(prog="python -m llm_router.config.digest",
                                     description="Check (default) or write the digest of the bundled catalog.")
    parser.add_argument("--write", action="store_true", help="validate the bundled catalog in full and write its digest")
    args = parser.parse_args(argv)
    if args.write:
        errors = write()
        for line in errors:
            print(line, file=sys.stderr)
        if errors:
            print(f"not written: the bundled catalog has {len(errors)} error(s)", file=sys.stderr)
            return 1
        print(f"wrote {DIGEST_FILE}")
        return 0
    differences = stale()
    for line in differences:
        print(line)
    if differences:
        print(f"the digest of the bundled catalog is stale; run: {WRITE_COMMAND}", file=sys.stderr)
        return 1
    print("the digest of the bundled catalog is current")
    return 0


class Snapshot(NamedTuple):
    """The bundled files as parsed when the digest was written, and what parsing their templates told."""

    # by path: (the sha256 of the bytes parsed, the data, the line of each key path)
    files: Mapping[str, tuple[str, Any, dict[tuple[str | int, ...], int]]]
    # by template source: what parsing it tells (template_ast.leaf_facts, templating.trust_leaves)
    leaves: Mapping[str, tuple[Any, ...]]
    jinja: str  # the version of Jinja that parsed them
    unheld: Mapping[str, str]  # the bundled files it does not hold (parsed at load), by name: their sha256


NO_SNAPSHOT = Snapshot({}, {}, "", {})


def snapshot(directory: Path) -> Snapshot:
    """The snapshot, unless `directory` is not the bundled catalog or the digest does not vouch for it."""
    root = catalog_dir()
    if Path(directory) != root:
        return NO_SNAPSHOT
    held = _read_snapshot()
    return held._replace(files={str(root / name): entry for name, entry in held.files.items()})


def _read_snapshot() -> Snapshot:
    """The snapshot as written (files by their name in the catalog), if the digest vouches for it."""
    try:
        recorded = json.loads(DIGEST_FILE.read_text(encoding="utf-8")).get("snapshot")
        body = DIGEST_FILE.with_name(SNAPSHOT_NAME).read_bytes()
    except (OSError, ValueError, AttributeError):
        return NO_SNAPSHOT
    if not isinstance(recorded, str) or hashlib.sha256(body).hexdigest() != recorded:
        return NO_SNAPSHOT
    try:
        files, leaves, jinja, unheld = marshal.loads(body)
    except (ValueError, EOFError, TypeError):
        return NO_SNAPSHOT
    return Snapshot(files, leaves, jinja, unheld)


def _write_snapshot(names: list[str]) -> str | None:
    """Parse each bundled file and write what parses without a problem, with the facts of its templates;
    the snapshot's sha256 (None: none written)."""
    import jinja2

    from ..errors import Problem
    from ..template_ast import leaf_facts
    from ..templating import is_template
    from .parse import parse_text

    root = catalog_dir()
    files: dict[str, tuple[str, Any, dict[tuple[str | int, ...], int]]] = {}
    leaves: dict[str, tuple[Any, ...]] = {}
    unheld: dict[str, str] = {}
    for name in names:
        data = (root / name).read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        problems: list[Problem] = []
        result = parse_text(data.decode("utf-8"), name, problems)
        if result is None or problems:
            unheld[name] = sha256
            continue
        entry = (sha256, result[0], {key_path: line for key_path, (_, line) in result[1].items()})
        try:
            marshal.dumps(entry)
        except ValueError:  # a value marshal does not hold (a YAML date): the file is parsed at load
            unheld[name] = sha256
            continue
        files[name] = entry
        leaves.update((text, leaf_facts(text)) for text in _strings(result[0]) if is_template(text) and text not in leaves)
    target = DIGEST_FILE.with_name(SNAPSHOT_NAME)
    if not files:
        target.unlink(missing_ok=True)
        return None
    body = marshal.dumps((files, leaves, jinja2.__version__, unheld))
    target.write_bytes(body)
    return hashlib.sha256(body).hexdigest()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


if __name__ == "__main__":
    sys.exit(main())
