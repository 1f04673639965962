"""What users need has a public name: the bundled catalog's dir is `llm_router.catalog_dir()`, so a
site layer is validated and loaded on top of it without reaching into a private module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import llm_router
from llm_router import Router, catalog_dir

EXAMPLE = Path(__file__).resolve().parent.parent / "docs/examples/balanced"


def test_catalog_dir_is_exported_and_holds_the_bundled_catalog() -> None:
    assert "catalog_dir" in llm_router.__all__
    assert all((catalog_dir() / sub).is_dir() for sub in ("providers.d", "models.d", "schemas"))


def test_a_site_layer_is_validated_and_loaded_on_the_bundled_catalog_through_public_names() -> None:
    printed = subprocess.run([sys.executable, "-c", "from llm_router import catalog_dir; print(catalog_dir())"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    done = subprocess.run([sys.executable, "-m", "llm_router", "validate", printed, str(EXAMPLE)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    router = Router.from_dir(catalog_dir(), EXAMPLE, env={})
    assert "openai" in router.providers and any(m.deployments for m in router.models.values())
