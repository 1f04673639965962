"""`llm-router validate`: exit codes, `path:line: message` lines, JSON and GitHub formats, keys never shown."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llm_router.cli import main

SECRET = "sk-test-VERY-SECRET-7d1f0c"

PROVIDER = """\
name: acme
base_url: https://api.acme.test/v1
auth: {header: Authorization, scheme: Bearer, env: ACME_API_KEY}
hosts: [api.acme.test]
operations:
  chat:
    path: /chat
    body: {model: "{{ model.upstream }}", messages: "{{ messages }}"}
    params: merge
    response:
      content: $.choices[0].message.content
"""

OTHER = PROVIDER.replace("name: acme", "name: other").replace("ACME_API_KEY", "OTHER_API_KEY")

MODELS = """\
models:
  m1:
    provider: acme
    pricing: {input_per_million: 1, output_per_million: 2}
  m2:
    provider: other
    pricing: unknown
"""

BAD_MODELS = MODELS + "    fallback: [m1]\n"  # line 8: an unknown key


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def clean(tmp_path):
    return write(tmp_path / "clean", {"providers.d/acme.yaml": PROVIDER, "providers.d/other.yaml": OTHER, "models.d/m.yaml": MODELS})


@pytest.fixture
def bad(tmp_path):
    return write(tmp_path / "bad", {"providers.d/acme.yaml": PROVIDER, "providers.d/other.yaml": OTHER, "models.d/m.yaml": BAD_MODELS})


@pytest.fixture
def keys(monkeypatch):
    """Both keys set: a clean config validates with no warning."""
    monkeypatch.setenv("ACME_API_KEY", SECRET)
    monkeypatch.setenv("OTHER_API_KEY", SECRET)


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run([sys.executable, "-m", "llm_router", *args], check=False, capture_output=True, text=True, timeout=60,
                          env={**base, **(env or {})}, cwd=cwd)


def test_clean_dir_exits_0_with_a_summary(clean, keys, capsys):
    assert main(["validate", str(clean)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "0 error(s), 0 warning(s) in 3 file(s)" in err


def test_bad_dir_exits_1_with_path_line_message(bad, keys, capsys):
    assert main(["validate", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{bad / 'models.d/m.yaml'}:8: models.m2: unknown key 'fallback' — did you mean 'fallbacks'?"]
    assert "1 error(s)" in err


def test_subprocess_validate_exit_codes_and_lines(clean, bad):
    env = {"ACME_API_KEY": SECRET, "OTHER_API_KEY": SECRET}
    ok = run("validate", str(clean), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    failed = run("validate", str(bad), env=env)
    assert failed.returncode == 1
    assert re.fullmatch(rf"{re.escape(str(bad / 'models.d/m.yaml'))}:8: models\.m2: unknown key 'fallback' .*\n", failed.stdout)
    assert "Traceback" not in failed.stderr


def test_every_error_in_several_dirs_is_listed(bad, tmp_path, keys, capsys):
    site = write(tmp_path / "site", {"models.d/s.yaml": "models:\n  s1:\n    provider: acmee\n    pricing: unknown\n"})
    assert main(["validate", str(bad), str(site)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith(f"{site / 'models.d/s.yaml'}:3: model 's1': names provider 'acmee'")


def test_json_format_lists_problems_with_file_line_severity(bad, monkeypatch, capsys):
    monkeypatch.setenv("ACME_API_KEY", SECRET)
    monkeypatch.delenv("OTHER_API_KEY", raising=False)
    assert main(["validate", str(bad), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["files"] == 3
    problems = {(Path(p["file"]).name, p["line"], p["severity"]) for p in report["problems"]}
    assert problems == {("m.yaml", 8, "error")}  # the catalog was not built, so no key check ran


def test_json_format_of_a_clean_dir_with_a_missing_key(clean, monkeypatch, capsys):
    monkeypatch.setenv("ACME_API_KEY", SECRET)
    monkeypatch.delenv("OTHER_API_KEY", raising=False)
    assert main(["validate", str(clean), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    (warning,) = report["problems"]
    assert warning["severity"] == "warning" and warning["key"] == "auth.env"
    assert (Path(warning["file"]).name, warning["line"]) == ("other.yaml", 3)


def test_github_format_prints_workflow_annotations(bad, keys, capsys):
    assert main(["validate", str(bad), "--format", "github"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines() == [f"::error file={bad / 'models.d/m.yaml'},line=8::models.m2: unknown key 'fallback' — did you mean 'fallbacks'?"]


def test_github_format_of_a_missing_key_is_a_warning(clean, monkeypatch, capsys):
    monkeypatch.delenv("ACME_API_KEY", raising=False)
    monkeypatch.setenv("OTHER_API_KEY", SECRET)
    assert main(["validate", str(clean), "--format", "github"]) == 0
    assert capsys.readouterr().out.startswith(f"::warning file={clean / 'providers.d/acme.yaml'},line=3::ACME_API_KEY is not set")


def test_missing_key_is_a_warning_and_an_error_with_strict(clean):
    env = {"ACME_API_KEY": SECRET}  # OTHER_API_KEY is unset
    lenient = run("validate", str(clean), env=env)
    assert lenient.returncode == 0
    assert lenient.stdout == f"{clean / 'providers.d/other.yaml'}:3: warning: OTHER_API_KEY is not set; calls to provider 'other' will fail until it is\n"
    strict = run("validate", "--strict", str(clean), env=env)
    assert strict.returncode == 1
    assert strict.stdout == f"{clean / 'providers.d/other.yaml'}:3: OTHER_API_KEY is not set; calls to provider 'other' will fail until it is\n"


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
@pytest.mark.parametrize("strict", [[], ["--strict"]])
def test_output_never_contains_a_key_value(clean, bad, fmt, strict):
    env = {"ACME_API_KEY": SECRET}  # set for one provider; the other one's missing key is reported
    for config in (clean, bad):
        result = run("validate", str(config), "--format", fmt, *strict, env=env)
        assert SECRET not in result.stdout + result.stderr
        assert "ACME_API_KEY" not in result.stdout  # a set key is not even mentioned


def test_bundled_catalog_validates_with_only_warnings_without_keys(capsys, monkeypatch):
    for name in list(os.environ):
        if name.endswith("_API_KEY"):
            monkeypatch.delenv(name)
    assert main(["validate"]) == 0
    out, _ = capsys.readouterr()
    assert out and all(": warning: " in line and "_API_KEY is not set" in line for line in out.splitlines())
    assert main(["validate", "--strict"]) == 1


def test_missing_dir_is_an_error_line(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'nope'}: config dir does not exist")


def test_github_format_escapes_the_file_property(tmp_path, keys, capsys):
    config = write(tmp_path / "a,b:c", {"providers.d/acme.yaml": PROVIDER, "providers.d/other.yaml": OTHER,
                                         "models.d/m.yaml": BAD_MODELS})
    assert main(["validate", str(config), "--format", "github"]) == 1
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"::error file={tmp_path}/a%2Cb%3Ac/models.d/m.yaml,line=8::models.m2: unknown key 'fallback'")


# --- contract files (providers.d/contracts/*.yaml) are validated too -----------------------------------

CONTRACT = """\
name: acme-chat
provider: acme
call:
  model: m1
  messages: [{role: user, content: hi}]
replies:
  - body: {choices: [{message: {content: Hi}}]}
expect: {content: Hi}
"""


def _contract_config(write_config, contract: str) -> Path:
    return write_config({"providers.d/acme.yaml": PROVIDER, "providers.d/other.yaml": OTHER, "models.d/m.yaml": MODELS,
                         "providers.d/contracts/acme-chat.yaml": contract})


def test_validate_accepts_a_good_contract(write_config, capsys) -> None:
    assert main(["validate", str(_contract_config(write_config, CONTRACT))]) == 0


def test_validate_reports_a_contract_naming_an_unknown_provider_at_its_line(write_config, capsys) -> None:
    config = _contract_config(write_config, CONTRACT.replace("provider: acme", "provider: acmee"))
    assert main(["validate", str(config)]) == 1
    out = capsys.readouterr().out
    assert f"{config / 'providers.d' / 'contracts' / 'acme-chat.yaml'}:2: contract 'acme-chat' names unknown provider 'acmee'" in out


def test_validate_reports_a_contract_calling_an_unknown_model_at_its_line(write_config, capsys) -> None:
    config = _contract_config(write_config, CONTRACT.replace("model: m1", "model: m9"))
    assert main(["validate", str(config)]) == 1
    assert "acme-chat.yaml:4: contract 'acme-chat' calls unknown model 'm9'" in capsys.readouterr().out


def test_validate_reports_a_model_of_another_provider(write_config, capsys) -> None:
    config = _contract_config(write_config, CONTRACT.replace("model: m1", "model: m2"))
    assert main(["validate", str(config)]) == 1
    assert "is for provider 'acme', but model 'm2' is served by 'other'" in capsys.readouterr().out


def test_validate_reports_a_reply_with_two_bodies_at_its_line(write_config, capsys) -> None:
    config = _contract_config(write_config, CONTRACT.replace("  - body: {choices", "  - text: x\n    body: {choices"))
    assert main(["validate", str(config)]) == 1
    assert "acme-chat.yaml:7: replies[0]: give exactly one of body, text, sse, base64 (got body, text)" in capsys.readouterr().out


def test_validate_reports_unknown_contract_keys_with_a_hint(write_config, capsys) -> None:
    config = _contract_config(write_config, CONTRACT.replace("expect: {content: Hi}", "expect: {content: Hi}\nreplys: []"))
    assert main(["validate", str(config)]) == 1
    assert "acme-chat.yaml:9: unknown key 'replys' — did you mean 'replies'?" in capsys.readouterr().out


def test_validate_checks_the_bundled_contracts(capsys) -> None:
    assert main(["validate"]) == 0
    assert "error" not in capsys.readouterr().out
