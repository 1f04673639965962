"""The YAML examples in the README are real config: each one that names its file validates."""

import re

from conftest import ROOT

from llm_router import Router
from llm_router._resources import catalog_dir

BLOCK = re.compile(r"```yaml\n# ((?:providers|models)\.d/[\w.-]+\.yaml)\n(.*?)```", re.S)


def readme_examples() -> dict[str, str]:
    return {path: body for path, body in BLOCK.findall((ROOT / "README.md").read_text())}


def test_readme_has_provider_and_model_examples():
    examples = readme_examples()
    assert "providers.d/recraft.yaml" in examples
    assert "providers.d/bfl.yaml" in examples
    assert "models.d/recraft.yaml" in examples


def test_readme_examples_validate_layered_on_the_bundled_catalog(write_config):
    site = write_config(readme_examples())
    router = Router.from_dir(catalog_dir(), site, env={})
    assert router.providers["bfl"].operations["image"].poll is not None
    assert router.models["recraftv3"].kind == "image"


def test_models_named_in_the_readme_python_example_are_in_the_bundled_catalog():
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r'(?:model_name|fallback_model)="([^"]+)"', readme))
    assert {"o3", "gpt-4.1", "flux-pro-1.1"} <= named
    router = Router.from_dir(env={})
    assert named <= set(router.models), named - set(router.models)


def test_every_test_the_docs_name_as_proof_exists():
    named = set()
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        named |= set(re.findall(r"tests/(test_\w+\.py)::(\w+)", doc.read_text()))
    assert len(named) > 30
    missing = [f"{file}::{name}" for file, name in sorted(named)
               if not re.search(rf"def {name}\b", (ROOT / "tests" / file).read_text())]
    assert not missing, missing
