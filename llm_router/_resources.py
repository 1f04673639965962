"""Where the bundled catalog and the schemas live: inside the wheel, or at the top of a checkout."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def catalog_dir() -> Path:
    """The dir holding the bundled providers.d/, models.d/ and schemas/."""
    for candidate in (_PACKAGE / "_catalog", _PACKAGE.parent):
        if (candidate / "providers.d").is_dir() and (candidate / "schemas").is_dir():
            return candidate
    raise FileNotFoundError("the bundled catalog is missing from this installation of llm_router")


def schema_path(name: str) -> Path:
    return catalog_dir() / "schemas" / f"{name}.schema.json"
