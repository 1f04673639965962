"""Config dirs whose providers are loopback MockServers: the setup the routing-policy tests share."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mockserver import MockServer

from llm_router import Router
from llm_router._resources import catalog_dir

FAST_RETRY = "{max_attempts: 2, backoff: {initial_s: 0.01, max_s: 0.02}}"
NO_RETRY = "{max_attempts: 1}"


def provider_yaml(name: str, retry: str | None = FAST_RETRY) -> str:
    """An OpenAI-compatible provider whose key and base URL come from <NAME>_API_KEY / <NAME>_BASE_URL."""
    env = name.upper()
    text = (f"extends: openai-compatible\nname: {name}\nbase_url: http://127.0.0.1:9/v1\nbase_url_env: {env}_BASE_URL\n"
            f"auth: {{header: Authorization, scheme: Bearer, env: {env}_API_KEY}}\nhosts: [127.0.0.1]\n")
    return text + (f"errors:\n  retry: {retry}\n" if retry is not None else "")


def loopback_router(
    write_config: Callable[[dict[str, str]], Any],
    servers: Mapping[str, MockServer],
    models_yaml: str,
    router_yaml: str | None = None,
    *,
    retry: str | None = FAST_RETRY,
    key: Callable[[str], str] = lambda name: "sk-test-123456",
    env: Mapping[str, str] | None = None,
    **router_kwargs: Any,
) -> Router:
    """The bundled catalog, plus one provider per server (named by its key in `servers`) and `models_yaml`."""
    files = {f"providers.d/{name}.yaml": provider_yaml(name, retry) for name in servers}
    files["models.d/m.yaml"] = models_yaml
    if router_yaml is not None:
        files["router.yaml"] = router_yaml
    environment = dict(env or {})
    for name, srv in servers.items():
        environment[f"{name.upper()}_API_KEY"] = key(name)
        environment[f"{name.upper()}_BASE_URL"] = srv.url + "/v1"
    return Router.from_dir(catalog_dir(), write_config(files), env=environment, **router_kwargs)
