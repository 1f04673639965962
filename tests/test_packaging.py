"""The wheel carries the bundled catalog, the schemas, the catalog's digest and its parsed snapshot, and a bare copy
of it loads them from inside the package, trusting the digest (so neither the schema validator nor PyYAML is imported)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from llm_router import Router

ROOT = Path(__file__).resolve().parent.parent

PROBE = """\
import sys
sys.path.insert(0, {site!r})
import llm_router
from llm_router import Router
from llm_router._resources import catalog_dir
r = Router.from_dir(env={{}})
print(len(r.models))
print(llm_router.__file__)
print(catalog_dir())
print("jsonschema" in sys.modules)
print("yaml" in sys.modules)
"""


def test_wheel_holds_the_catalog_and_loads_it_from_inside_the_package(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                           check=False, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("llm_router-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    catalog = "llm_router/_catalog/"
    assert f"{catalog}providers.d/openai.yaml" in names
    for folder in ("providers.d", "models.d"):  # contracts (providers.d/contracts/) ship too
        shipped = {p.relative_to(ROOT / folder).as_posix() for p in (ROOT / folder).rglob("*.yaml")}
        assert shipped and {n.removeprefix(f"{catalog}{folder}/") for n in names if n.startswith(f"{catalog}{folder}/")} == shipped
    schemas = {p.name for p in (ROOT / "schemas").glob("*.json")}
    assert {"provider.schema.json", "models.schema.json", "router.schema.json"} <= schemas
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith(f"{catalog}schemas/")} == schemas
    assert "llm_router/_catalog_digest.json" in names
    assert "llm_router/_catalog_snapshot.marshal" in names

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-c", PROBE.format(site=str(site))], check=False, capture_output=True, text=True,
                         cwd=elsewhere, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    count, module, catalog_path, validator_loaded, yaml_loaded = run.stdout.splitlines()
    assert validator_loaded == "False"  # every bundled file matched the digest shipped beside it
    assert yaml_loaded == "False"  # and was read from the snapshot shipped beside it
    assert int(count) == len(Router.from_dir(ROOT, env={}).models) > 20
    assert Path(module).is_relative_to(site)
    assert Path(catalog_path) == site / "llm_router" / "_catalog"
