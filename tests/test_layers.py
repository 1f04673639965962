"""Dependencies point one way (STYLE.md, "Layout"): the engine never imports the validator, the
config layer never imports runtime state, and `validate` never goes through the router. Each is
checked in a fresh interpreter, by what a real entry point leaves in `sys.modules`."""

from __future__ import annotations

import json
import subprocess
import sys


def _loaded(code: str, modules: list[str]) -> list[str]:
    script = f"import sys\n{code}\nprint(__import__('json').dumps([m for m in {modules!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


VALIDATOR = ["llm_router.config.checks", "llm_router.config.schema", "llm_router.config.build", "jsonschema"]
RUNTIME = ["llm_router.state", "llm_router.router", "llm_router.routing.lease", "llm_router.engine", "llm_router.routing.balance"]


def test_the_engine_imports_no_part_of_the_validator() -> None:
    code = "import llm_router.engine, llm_router.engine.request, llm_router.engine.send, llm_router.engine.poll"
    assert _loaded(code, VALIDATOR) == []


def test_the_config_layer_imports_no_runtime_state() -> None:
    code = "from llm_router.config import load_catalog\nfrom llm_router._resources import catalog_dir\n" \
           "catalog, problems = load_catalog([catalog_dir()], {})\nassert catalog.models"
    assert _loaded(code, RUNTIME) == []


def test_validate_does_not_go_through_the_router_or_the_engine() -> None:
    code = "import io, contextlib\nfrom llm_router.cli import main\n" \
           "with contextlib.redirect_stdout(io.StringIO()): assert main(['validate']) == 0"
    assert _loaded(code, RUNTIME) == []
