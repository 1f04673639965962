"""Test-time switch: make respx patch httpx2's transports (DESIGN.md, "Why httpx2"); and the fixtures
most test files share: a config dir to write into, and a loopback mock server."""

import httpx2

httpx2.alias_httpx()

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from mockserver import MockServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_config(tmp_path):
    """Write {relative path: text} into a fresh config dir and return the dir."""

    def write(files: dict[str, str]) -> Path:
        for rel, text in files.items():
            path = tmp_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return tmp_path

    return write


@pytest.fixture
def srv():
    """A mock server on 127.0.0.1 for the test (tests/mockserver.py); stopped after it."""
    with MockServer() as server:
        yield server
