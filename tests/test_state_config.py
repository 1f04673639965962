"""The `state:` block of router.yaml: which backend holds limits, cooldowns and budgets; Redis is
imported only when configured."""

import subprocess
import sys

import pytest

from llm_router import ConfigurationError, Router
from llm_router._resources import catalog_dir
from llm_router.config import load_catalog
from llm_router.config.model import StateSettings
from llm_router.state import LocalState

MODELS = "models:\n  m: {provider: openai, pricing: unknown}\n"


def problems_for(write_config, router_yaml):
    site = write_config({"models.d/m.yaml": MODELS, "router.yaml": router_yaml})
    _, problems = load_catalog([catalog_dir(), site], {"OPENAI_API_KEY": "k"})
    return [str(p) for p in problems if p.severity == "error"], site


def test_import_llm_router_does_not_import_redis():
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import llm_router"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert "redis" not in out.stderr.lower()


def test_the_default_state_is_in_process(write_config):
    site = write_config({"models.d/m.yaml": MODELS})
    router = Router.from_dir(catalog_dir(), site, env={"OPENAI_API_KEY": "k"})
    assert router._catalog.settings.state == StateSettings()
    assert isinstance(router._state, LocalState)


def test_a_state_passed_to_from_dir_wins_over_router_yaml(write_config):
    site = write_config({"models.d/m.yaml": MODELS,
                         "router.yaml": "state: {backend: redis, url: 'redis://127.0.0.1:1/0'}\n"})
    mine = LocalState()
    router = Router.from_dir(catalog_dir(), site, env={"OPENAI_API_KEY": "k"}, state=mine)
    assert router._state is mine


async def test_redis_state_is_built_from_url_env_with_its_prefix_and_policy(write_config):
    site = write_config({"models.d/m.yaml": MODELS, "router.yaml": """\
state:
  backend: redis
  url: "redis://127.0.0.1:1/0"
  url_env: MY_REDIS_URL
  key_prefix: "team-a:"
  on_error: fail
"""})
    router = Router.from_dir(catalog_dir(), site, env={"OPENAI_API_KEY": "k", "MY_REDIS_URL": "redis://127.0.0.1:2/3"})
    from llm_router.state.redis import RedisState

    state = router._state
    assert isinstance(state, RedisState)
    assert (state.key_prefix, state.on_error) == ("team-a:", "fail")
    assert state.where == "127.0.0.1:2/3"  # url_env wins over url
    await router.aclose()


async def test_redis_state_falls_back_to_url_when_url_env_is_unset(write_config):
    site = write_config({"models.d/m.yaml": MODELS, "router.yaml": """\
state: {backend: redis, url: "redis://127.0.0.1:1/0", url_env: MY_REDIS_URL}
"""})
    router = Router.from_dir(catalog_dir(), site, env={"OPENAI_API_KEY": "k"})
    assert router._state.where == "127.0.0.1:1/0" and router._state.on_error == "local"
    await router.aclose()


def test_redis_backend_without_url_or_url_env_is_an_error_with_its_line(write_config):
    errors, site = problems_for(write_config, "log_content: false\nstate:\n  backend: redis\n")
    assert len(errors) == 1
    assert errors[0].startswith(f"{site / 'router.yaml'}:2: state")


@pytest.mark.parametrize("yaml_text,line,expected", [
    ("state:\n  backend: rediss\n", 2, "did you mean 'redis'"),
    ("state:\n  backend: redis\n  url: redis://h\n  on_error: explode\n", 4, "'local', 'fail'"),
    ("state:\n  backend: redis\n  url: http://h\n", 3, "does not match"),
    ("state:\n  backend: local\n  prefix: x\n", 3, "did you mean 'key_prefix'"),
])
def test_each_bad_state_key_is_reported_at_its_line(write_config, yaml_text, line, expected):
    errors, site = problems_for(write_config, yaml_text)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{site / 'router.yaml'}:{line}:") and expected in errors[0]


async def test_a_plain_model_costs_one_acquire_with_limits_and_no_state_call_without(write_config):
    import asyncio

    from mockserver import MockServer, Reply, openai_chat_reply

    class Counting(LocalState):
        def __init__(self):
            super().__init__()
            self.calls = []

        async def acquire(self, slot, tokens, max_wait_s):
            self.calls.append(("acquire", slot.key))
            return await super().acquire(slot, tokens, max_wait_s)

        async def release(self, ticket, outcome):
            self.calls.append(("release", ticket.slot.key))

        async def health(self, keys):
            self.calls.append(("health",))
            return await super().health(keys)

        async def spent(self, keys):
            self.calls.append(("spent",))
            return {}

    state = Counting()
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        site = write_config({"models.d/m.yaml": """\
models:
  limited: {provider: openai, pricing: unknown, limits: {rpm: 100}}
  plain: {provider: openai, pricing: unknown}
"""})
        router = Router.from_dir(catalog_dir(), site, state=state,
                                 env={"OPENAI_API_KEY": "sk-test-123456", "OPENAI_BASE_URL": srv.url + "/v1"})
        async with router, asyncio.timeout(10):
            await router.query("limited", [{"role": "user", "content": "hi"}])
            await router.query("plain", [{"role": "user", "content": "hi"}])
            await router.query("openai/gpt-x", [{"role": "user", "content": "hi"}])
    assert state.calls == [("acquire", "limited")]


def test_redis_url_env_unset_without_a_url_warns_in_validate_and_fails_building_the_router(write_config):
    site = write_config({"models.d/m.yaml": MODELS, "router.yaml": "state:\n  backend: redis\n  url_env: MY_REDIS_URL\n"})
    _, problems = load_catalog([catalog_dir(), site], {"OPENAI_API_KEY": "k"})
    expected = (f"{site / 'router.yaml'}:3: warning: state: MY_REDIS_URL is not set and `url` is not given; "
                "set the variable or add `url: redis://...`")
    assert [str(p) for p in problems if p.file == str(site / "router.yaml")] == [expected]
    assert not [p for p in problems if p.severity == "error"]
    with pytest.raises(ConfigurationError, match="MY_REDIS_URL is not set"):
        Router.from_dir(catalog_dir(), site, env={"OPENAI_API_KEY": "k"})


async def test_with_on_error_fail_a_call_is_refused_before_sending_and_an_answered_call_keeps_its_answer(write_config):
    import asyncio

    from mockserver import MockServer, Reply, openai_chat_reply

    from llm_router import StateUnavailableError

    class Broken(LocalState):
        fail_acquire = True

        async def acquire(self, slot, tokens, max_wait_s):
            if self.fail_acquire:
                raise StateUnavailableError("shared state: Redis at 127.0.0.1:1/0 is unavailable")
            return await super().acquire(slot, tokens, max_wait_s)

        async def release(self, ticket, outcome):
            raise StateUnavailableError("shared state: Redis at 127.0.0.1:1/0 is unavailable")

    state = Broken()
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        site = write_config({"models.d/m.yaml": "models:\n  m: {provider: openai, pricing: unknown, limits: {tpm: 100000}}\n"})
        router = Router.from_dir(catalog_dir(), site, state=state,
                                 env={"OPENAI_API_KEY": "sk-test-123456", "OPENAI_BASE_URL": srv.url + "/v1"})
        async with router, asyncio.timeout(10):
            with pytest.raises(StateUnavailableError):
                await router.query("m", [{"role": "user", "content": "hi"}])
            assert srv.count() == 0
            state.fail_acquire = False
            reply = await router.query("m", [{"role": "user", "content": "hi"}])  # release fails after the answer
        assert reply.content == "ok" and srv.count() == 1
