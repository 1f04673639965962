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


def test_the_engine_imports_no_part_of_the_validator() -> None:
    code = "import llm_router.engine, llm_router.engine.request, llm_router.engine.send, llm_router.engine.poll"
    assert _loaded(code, VALIDATOR) == []
