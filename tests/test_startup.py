"""Start-up: the bundled catalog skips the JSON Schema pass its digest vouches for, and only that;
a user's file or an edited bundled file is validated in full, with the same errors as before;
importing the package loads none of the heavy libraries. No timings here: bench/startup.py has them."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from llm_router import template_ast, templating
from llm_router._resources import catalog_dir
from llm_router.config import digest, load_catalog, schema
from llm_router.config.load import load_dirs, parse_yaml
from llm_router.config.parse import parse_text

ROOT = Path(__file__).resolve().parent.parent


def _schema_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the file of every doc the JSON Schema pass sees."""
    seen: list[str] = []
    real = schema.check

    def spy(doc, *args, **kwargs):
        seen.append(doc.file)
        return real(doc, *args, **kwargs)

    monkeypatch.setattr(schema, "check", spy)
    return seen


@pytest.fixture
def bundled_copy(tmp_path, monkeypatch):
    """A byte-for-byte copy of the bundled catalog that the digest treats as the bundled one."""
    copy = tmp_path / "catalog"
    for folder in ("providers.d", "models.d", "schemas"):
        shutil.copytree(catalog_dir() / folder, copy / folder, ignore=shutil.ignore_patterns("contracts"))
    monkeypatch.setattr(digest, "catalog_dir", lambda: copy)
    return copy


def test_the_digest_of_the_bundled_catalog_is_current():
    assert digest.stale() == [], f"a bundled file or schema changed since the digest was written; run: {digest.WRITE_COMMAND}"


def test_the_bundled_catalog_is_clean_when_validated_in_full():
    """What the digest vouches for still holds with today's code (schema.py, the merge of `extends`)."""
    catalog, problems = load_catalog([catalog_dir()], {}, trust_digest=False)
    assert [p for p in problems if p.severity == "error"] == []
    assert len(catalog.models) > 20


def test_bundled_files_skip_the_schema_pass_and_a_user_layer_does_not(monkeypatch, write_config):
    seen = _schema_calls(monkeypatch)
    catalog, problems = load_catalog([catalog_dir()], {})
    assert seen == [] and len(catalog.providers) > 10 and not [p for p in problems if p.severity == "error"]

    site = write_config({
        "providers.d/acme.yaml": "extends: openai-compatible\nname: acme\nbase_url: https://api.acme.example/v1\n"
                                 "auth: {header: Authorization, scheme: Bearer, env: ACME_API_KEY}\nhosts: [api.acme.example]\n",
        "models.d/acme.yaml": "models:\n  acme-1: {provider: acme, pricing: {input_per_million: 1, output_per_million: 2}}\n",
    })
    catalog, problems = load_catalog([catalog_dir(), site], {})
    assert "acme-1" in catalog.models and not [p for p in problems if p.severity == "error"]
    assert sorted(set(seen)) == sorted(str(site / f) for f in ("models.d/acme.yaml", "providers.d/acme.yaml"))
    assert seen.count(str(site / "providers.d/acme.yaml")) == 2  # as written, and merged with its bundled base


def test_a_user_file_extending_a_bundled_base_is_checked_after_the_merge(write_config):
    site = write_config({"providers.d/acme.yaml": "extends: openai-compatible\nname: acme\n"})
    _, problems = load_catalog([catalog_dir(), site], {})
    assert any(p.file == str(site / "providers.d/acme.yaml") and "'base_url' is a required property" in p.message for p in problems)


@pytest.mark.parametrize(("file", "find", "replace", "key"), [
    ("providers.d/openai.yaml", "base_url_env: OPENAI_BASE_URL", "base_url_env: OPENAI_BASE_URL\nretires: 3", "retires"),
    ("providers.d/groq.yaml", "hosts: [api.groq.com]", "hosts: api.groq.com", "hosts"),
    ("models.d/openai.yaml", "    provider: openai\n", "    provider: openai\n    kind: chatbot\n", "kind"),
])
def test_an_edited_bundled_file_is_validated_in_full_with_the_same_errors(bundled_copy, monkeypatch, file, find, replace, key):
    seen = _schema_calls(monkeypatch)
    load_catalog([bundled_copy], {})
    assert seen == []  # the untouched copy is trusted, so the edit below is what brings the schema pass back

    path = bundled_copy / file
    text = path.read_text()
    assert find in text
    path.write_text(text.replace(find, replace, 1))
    _, trusting = load_catalog([bundled_copy], {})
    assert set(seen) == {str(path)}  # that file, and only that file
    _, in_full = load_catalog([bundled_copy], {}, trust_digest=False)
    errors = [p for p in trusting if p.severity == "error"]
    assert errors == [p for p in in_full if p.severity == "error"]
    assert any(p.file == str(path) and p.line and p.key and p.key.split(".")[-1] == key for p in errors), errors


def test_an_edited_schema_brings_back_the_schema_pass_for_the_files_it_checks(bundled_copy, monkeypatch):
    seen = _schema_calls(monkeypatch)
    schema_file = bundled_copy / "schemas" / "models.schema.json"
    schema_file.write_text(schema_file.read_text() + "\n")
    load_catalog([bundled_copy], {})
    assert seen and {Path(f).parent.name for f in seen} == {"models.d"}


def test_without_a_digest_everything_is_validated(bundled_copy, monkeypatch, tmp_path):
    monkeypatch.setattr(digest, "DIGEST_FILE", tmp_path / "missing.json")
    seen = _schema_calls(monkeypatch)
    _, problems = load_catalog([bundled_copy], {})
    assert len(set(seen)) == len(list(bundled_copy.glob("*.d/*.yaml"))) and not [p for p in problems if p.severity == "error"]


def test_stale_names_each_difference_and_the_command_says_how_to_fix_it(bundled_copy, capsys):
    (bundled_copy / "providers.d" / "groq.yaml").write_text("name: groq\n")
    (bundled_copy / "models.d" / "new.yaml").write_text("models: {}\n")
    (bundled_copy / "models.d" / "demo.yaml").unlink()
    assert digest.stale() == ["models.d/demo.yaml: gone", "models.d/new.yaml: not in the digest", "providers.d/groq.yaml: changed",
                              f"{digest.SNAPSHOT_NAME}: does not hold every bundled file as it is now"]
    assert digest.main([]) == 1
    assert f"run: {digest.WRITE_COMMAND}" in capsys.readouterr().err


def test_write_refuses_a_catalog_with_errors_and_leaves_the_digest_alone(bundled_copy, monkeypatch, tmp_path):
    target = tmp_path / "digest.json"
    monkeypatch.setattr(digest, "DIGEST_FILE", target)
    (bundled_copy / "providers.d" / "groq.yaml").write_text("name: groq\nbase_url: 42\n")
    assert any("groq.yaml" in e and "base_url" in e for e in digest.write())
    assert not target.exists()


def test_write_then_check_round_trip(bundled_copy, monkeypatch, tmp_path):
    monkeypatch.setattr(digest, "DIGEST_FILE", tmp_path / "digest.json")
    assert digest.stale()  # no digest yet: every file is a difference
    assert digest.write() == []
    assert digest.stale() == []
    assert digest.unchanged_bundled([str(p) for p in bundled_copy.glob("*.d/*.yaml")])


HEAVY = ("httpx2", "jsonschema", "jinja2", "yaml", "jsonpath_rfc9535", "asyncio")


def _fresh(code: str) -> str:
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT, timeout=120)
    return run.stdout.strip()


def test_importing_the_package_loads_no_heavy_library():
    loaded = _fresh(f"import sys, llm_router; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert loaded == "[]"


def test_importing_the_config_types_loads_neither_the_loader_nor_the_compilers():
    loaded = _fresh(f"import sys, llm_router.config.model; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert loaded == "[]"


def test_loading_the_bundled_catalog_never_imports_the_schema_validator_yaml_jinja_nor_jsonpath():
    code = ("import sys; from llm_router import Router; r = Router.from_dir(env={}); "
            "print(len(r.models), [m for m in ('jsonschema', 'yaml', 'jinja2', 'jsonpath_rfc9535') if m in sys.modules])")
    count, loaded = _fresh(code).split(" ", 1)
    assert int(count) > 20 and loaded == "[]"


def test_importing_the_router_loads_neither_jinja_nor_the_yaml_or_jsonpath_parsers():
    loaded = _fresh("import sys; from llm_router import Router; "
                    "print([m for m in ('jinja2', 'yaml', 'jsonpath_rfc9535', 'jsonschema') if m in sys.modules])")
    assert loaded == "[]"


def test_jinjas_version_is_read_without_importing_it():
    version = _fresh("import sys; from llm_router import templating; print(templating._jinja_version(), 'jinja2' in sys.modules)")
    assert version == f"{jinja2.__version__} False"


def test_the_lazy_names_of_the_package_are_the_real_ones():
    import llm_router
    from llm_router.router import Router
    from llm_router.state import StateUnavailableError

    assert llm_router.Router is Router and llm_router.StateUnavailableError is StateUnavailableError
    with pytest.raises(AttributeError, match="no attribute 'Routr'"):
        llm_router.Routr  # noqa: B018


# --- the snapshot of the bundled files as parsed (written beside the digest by the same command) ---


def _parsed_afresh(path: Path) -> tuple[object, dict]:
    problems: list = []
    result = parse_text(path.read_text(encoding="utf-8"), str(path), problems)
    assert result is not None and problems == []
    return result


def test_the_snapshot_holds_every_bundled_file_as_it_parses_today():
    """Same data (types included: True is not 1) and same line for every key path as parsing the file now."""
    root = catalog_dir()
    held = digest.snapshot(root).files
    files = [*root.glob("providers.d/*.yaml"), *root.glob("models.d/*.yaml")]
    assert sorted(held) == sorted(str(f) for f in files)
    for file in files:
        data, marks = _parsed_afresh(file)
        from_snapshot = parse_yaml(file, [], held)
        assert from_snapshot is not None
        assert repr(from_snapshot[0]) == repr(data) and from_snapshot[0] == data
        assert from_snapshot[1] == marks


def test_a_bundled_file_changed_since_the_snapshot_is_parsed_with_its_own_lines(bundled_copy, tmp_path, monkeypatch):
    monkeypatch.setattr(digest, "DIGEST_FILE", tmp_path / "digest.json")
    assert digest.write() == [] and digest.snapshot(bundled_copy).files
    path = bundled_copy / "providers.d" / "groq.yaml"
    before = load_dirs([bundled_copy]).providers["groq"].marks[("name",)]
    path.write_text("# a line above\n" + path.read_text())
    after = load_dirs([bundled_copy]).providers["groq"].marks[("name",)]
    assert after == (before[0], before[1] + 1) == _parsed_afresh(path)[1][("name",)]


def test_a_snapshot_the_digest_does_not_vouch_for_is_not_read(bundled_copy, tmp_path, monkeypatch):
    monkeypatch.setattr(digest, "DIGEST_FILE", tmp_path / "digest.json")
    assert digest.write() == []
    snapshot_file = tmp_path / digest.SNAPSHOT_NAME
    snapshot_file.write_bytes(snapshot_file.read_bytes() + b"\0")
    assert digest.snapshot(bundled_copy) == digest.NO_SNAPSHOT
    snapshot_file.unlink()
    assert digest.snapshot(bundled_copy) == digest.NO_SNAPSHOT
    catalog, problems = load_catalog([bundled_copy], {})  # parsed as before
    assert len(catalog.models) > 20 and not [p for p in problems if p.severity == "error"]


def test_a_digest_current_but_a_snapshot_behind_is_stale(bundled_copy, tmp_path, monkeypatch):
    """What a merge can leave: the digest's hashes from one branch, the snapshot from another."""
    monkeypatch.setattr(digest, "DIGEST_FILE", tmp_path / "digest.json")
    assert digest.write() == [] and digest.stale() == []
    path = bundled_copy / "providers.d" / "groq.yaml"
    path.write_text(path.read_text() + "\n")
    body = json.loads(digest.DIGEST_FILE.read_text())
    body["sha256"]["providers.d/groq.yaml"] = hashlib.sha256(path.read_bytes()).hexdigest()
    digest.DIGEST_FILE.write_text(json.dumps(body))
    assert digest.stale() == [f"{digest.SNAPSHOT_NAME}: does not hold every bundled file as it is now"]
    assert digest.write() == [] and digest.stale() == []


def test_only_the_bundled_dir_is_read_from_the_snapshot(write_config):
    site = write_config({"models.d/acme.yaml": "models: {}\n"})
    assert digest.snapshot(site) == digest.NO_SNAPSHOT


def test_the_snapshot_holds_what_parsing_each_bundled_template_tells_today():
    """A trusted leaf is not parsed at load: the params it names, its lookup chain, its variables and (for a
    URL) its pieces come from here."""
    held = digest.snapshot(catalog_dir())
    assert held.jinja == jinja2.__version__ and len(held.leaves) > 50
    assert {source: template_ast.leaf_facts(source) for source in held.leaves} == dict(held.leaves)
    assert ("messages",) in {facts[1] for facts in held.leaves.values()}


def test_template_facts_found_with_another_jinja_are_not_used(monkeypatch):
    monkeypatch.setattr(templating, "_TRUSTED_LEAVES", {})
    facts = {"{{ params.x }}": (("x",), ("params", "x"), ("params",), (("params", "x"),), ())}
    templating.trust_leaves(facts, "0.0-other")
    assert templating._TRUSTED_LEAVES == {}
    templating.trust_leaves(facts, jinja2.__version__)
    assert {"{{ params.x }}": templating.LeafFacts(
        frozenset({"x"}), ("params", "x"), frozenset({"params"}), (("params", "x"),), frozenset())} == templating._TRUSTED_LEAVES
