"""Multi-segment upstream names in a URL path (fal.ai's `fal-ai/flux/schnell`, Replicate's
`owner/model`, Hugging Face's `org/model`): '/' separates segments, each segment is percent-encoded,
and what would change the URL's structure (an empty or dot segment, a backslash, an encoded
separator) is refused before sending, at call time and, for a catalog model, by `validate`."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from mockserver import MockServer, Reply

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.cli import main
from llm_router.errors import ConfigurationError, InvalidRequestError

KEY = "sk-url-segments-0001"

# An image API that places the model's upstream name in its path, as fal.ai and Replicate do.
PATHED = """\
name: pathed
base_url: http://127.0.0.1:9/v1
base_url_env: PATHED_BASE_URL
auth: {header: Authorization, scheme: Key, env: PATHED_KEY}
hosts: [127.0.0.1]
operations:
  image:
    path: "/{{ model.upstream }}"
    body: {prompt: "{{ prompt }}"}
    response:
      content: $.images[0].url
      content_kind: url
"""


def _models(upstream: str) -> str:
    return f"models:\n  painter:\n    provider: pathed\n    kind: image\n    upstream: {upstream!r}\n    pricing: unknown\n"


@pytest.fixture
def srv():
    with MockServer() as server:
        server.route("POST", re.compile(r".*"), Reply.json({"images": [{"url": "https://x/y.png"}]}))
        yield server


async def _query(write_config, srv: MockServer, upstream: str) -> Any:
    """An ad-hoc `pathed/<upstream>` call."""
    cfg = write_config({"providers.d/pathed.yaml": PATHED, "models.d/m.yaml": _models("placeholder")})
    async with Router.from_dir(catalog_dir(), cfg, env={"PATHED_KEY": KEY, "PATHED_BASE_URL": srv.url + "/v1"}) as router:
        async with asyncio.timeout(10):
            return await router.query(f"pathed/{upstream}", prompt="a cat")


@pytest.mark.parametrize(("upstream", "path"), [
    ("fal-ai/flux/schnell", "/v1/fal-ai/flux/schnell"),
    ("black-forest-labs/flux-1.1-pro", "/v1/black-forest-labs/flux-1.1-pro"),
    ("org/my model?x=1#y", "/v1/org/my%20model%3Fx%3D1%23y"),
    ("owner/ünï/v:1@2", "/v1/owner/%C3%BCn%C3%AF/v:1@2"),
    ("a/..b/.c", "/v1/a/..b/.c"),  # dots inside a segment are not dot segments
    ("a/%41", "/v1/a/%2541"),  # a '%' is sent as a literal '%'
])
async def test_a_multi_segment_upstream_reaches_the_path_with_each_segment_encoded(write_config, srv, upstream, path) -> None:
    response = await _query(write_config, srv, upstream)
    assert response.content == "https://x/y.png"
    sent = srv.requests[0]
    assert sent.path == path and sent.raw_query == ""
    assert sent.headers["authorization"] == f"Key {KEY}"


@pytest.mark.parametrize("upstream", [
    "../../admin", "a/../../admin", "a/..", "a/.", "./a", "a//b", "/a", "a/", "a\\b", "a/b\\..\\c",
    "a%2Fb", "a%2fb", "a%5Cb", "a/%2e%2e/b", "a/%2E/b", "%2e", "a/.%2e",
])
async def test_an_upstream_that_would_change_the_paths_structure_is_refused_and_nothing_is_sent(write_config, srv, upstream) -> None:
    with pytest.raises(InvalidRequestError, match="cannot be placed in a URL") as info:
        await _query(write_config, srv, upstream)
    assert "model.upstream" in str(info.value) and KEY not in str(info.value)
    assert srv.count() == 0, [r.path for r in srv.requests]


async def test_the_bundled_bfl_provider_takes_a_multi_segment_ad_hoc_name_and_refuses_bfl_dot_dot_admin() -> None:
    with MockServer() as srv:
        srv.route("POST", re.compile(r".*"), Reply.json({"id": "j", "polling_url": srv.url + "/v1/get_result?id=j"}))
        srv.route("GET", "/v1/get_result", Reply.json({"status": "Ready", "result": {"sample": "https://x/y.png"}}))
        async with Router.from_dir(env={"BFL_API_KEY": KEY, "BFL_BASE_URL": srv.url + "/v1"}) as router:
            async with asyncio.timeout(10):
                await router.query("bfl/flux/pro 2", prompt="a cat")
                with pytest.raises(InvalidRequestError, match="cannot be placed in a URL"):
                    await router.query("bfl/../../admin", prompt="a cat")
        assert [r.path for r in srv.requests] == ["/v1/flux/pro%202", "/v1/get_result"]


# --- validate ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("deployment", [False, True])
def test_validate_flags_a_catalog_model_whose_upstream_would_be_refused_at_its_line(write_config, capsys, deployment) -> None:
    models = _models("flux/../../admin") if not deployment else (
        "models:\n  painter:\n    kind: image\n    pricing: unknown\n    deployments:\n"
        "      - {provider: pathed, name: a}\n      - provider: pathed\n        name: b\n        upstream: 'x/%2F/y'\n")
    cfg = write_config({"providers.d/pathed.yaml": PATHED, "models.d/m.yaml": models})
    assert main(["validate", str(cfg)]) == 1
    out = capsys.readouterr().out
    line = 5 if not deployment else 9
    assert f"models.d/m.yaml:{line}:" in out, out
    assert "model 'painter': provider 'pathed' places the upstream name in its URL" in out
    assert "every call would be refused" in out
    with pytest.raises(ConfigurationError):
        Router.from_dir(cfg, env={"PATHED_KEY": KEY})


def test_validate_accepts_multi_segment_upstreams_in_a_path_and_anything_in_a_body(write_config, capsys) -> None:
    """The bundled catalog's `openai/gpt-4o` (OpenRouter) goes in a body; `fal-ai/flux/schnell` here in a path."""
    cfg = write_config({"providers.d/pathed.yaml": PATHED, "models.d/m.yaml": _models("fal-ai/flux/schnell"),
                        "models.d/body.yaml": "models:\n  bodied: {provider: openai, upstream: 'a/../b', pricing: unknown}\n"})
    assert main(["validate", str(catalog_dir()), str(cfg)]) == 0, capsys.readouterr().out
