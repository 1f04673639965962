"""`llm-router prices --check FILE [--write]`: the catalog's prices against a price data file in the
models.dev format (tests/data/models_dev.json: a few entries in that format, with prices changed on
purpose), every difference as path:line, and --write changing just those numbers in place."""

from __future__ import annotations

import shutil

import pytest
from conftest import ROOT

from llm_router.cli import main

DATA = ROOT / "tests" / "data" / "models_dev.json"


@pytest.fixture
def catalog_copy(tmp_path):
    for sub in ("providers.d", "models.d"):
        shutil.copytree(ROOT / sub, tmp_path / sub)
    return tmp_path


def test_check_prints_each_difference_with_file_and_line(catalog_copy, capsys):
    assert main(["prices", str(catalog_copy), "--check", str(DATA)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    gemini = catalog_copy / "models.d" / "gemini.yaml"
    assert any(line.startswith(f"{gemini}:") and "'gemini-2.5-pro': pricing.cached_input_per_million is 0.125, "
               "the price data says 0.31" in line for line in lines), out
    assert any("'gemini-2.5-pro': pricing.tiers.0.cached_input_per_million is 0.25, the price data says 0.625" in line
               for line in lines), out
    assert any(f"{catalog_copy / 'models.d' / 'openai.yaml'}:" in line and "'o3': pricing.input_per_million is 2," in line
               for line in lines), out
    assert not any("claude-sonnet-4-5" in line or "gpt-4.1'" in line for line in lines)  # they agree, tiers included
    assert "4 price(s) differ" in err


def test_write_changes_only_those_numbers_and_keeps_comments(catalog_copy, capsys):
    before = (catalog_copy / "models.d" / "gemini.yaml").read_text()
    assert main(["prices", str(catalog_copy), "--check", str(DATA), "--write"]) == 0
    after = (catalog_copy / "models.d" / "gemini.yaml").read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert len(changed) == 3, changed  # 2.5 Pro base and tier cache reads, 2.5 Flash cache read
    assert all(a.split(":")[0] == b.split(":")[0] for a, b in changed)
    assert [line for line in after.splitlines() if line.startswith("#")] == [
        line for line in before.splitlines() if line.startswith("#")]
    capsys.readouterr()
    assert main(["prices", str(catalog_copy), "--check", str(DATA)]) == 0
    assert main(["validate", str(catalog_copy)]) == 0


def test_a_file_that_is_not_price_data_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "prices.json"
    bad.write_text('["not", "providers"]')
    with pytest.raises(SystemExit, match="not price data in the models.dev format"):
        main(["prices", "--check", str(bad)])
    with pytest.raises(SystemExit, match="cannot read the price data"):
        main(["prices", "--check", str(tmp_path / "missing.json")])


def test_a_provider_is_matched_by_its_price_sheet_id(catalog_copy, capsys):
    (catalog_copy / "providers.d" / "gemini.yaml").write_text(
        (catalog_copy / "providers.d" / "gemini.yaml").read_text().replace("price_sheet_id: google", "price_sheet_id: nope"))
    main(["prices", str(catalog_copy), "--check", str(DATA), "--verbose"])
    out, err = capsys.readouterr()
    assert "gemini-2.5-pro" not in out and "gemini-2.5-pro (nope/gemini-2.5-pro)" in err
