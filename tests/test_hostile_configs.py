"""Hostile configs: any config loads or raises ConfigurationError with a file and a line, and
`validate` never hangs or crashes (recursive aliases, alias bombs, deep nesting, devices, FIFOs,
huge files, `.nan` and `.inf`). A template's render has a real budget: repetition, formatting
widths, string methods, `~` and `+` in loops, nested loops cannot build huge values or stall the
event loop, and private names built at render time are refused."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mockserver import MockServer, Reply, openai_chat_reply

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.config.load import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES
from llm_router.errors import ConfigurationError, InvalidRequestError
from llm_router.sandbox import MAX_RENDER_SIZE, MAX_RENDER_STEPS

KEY = "sk-hostile-config-0001"
HI = [{"role": "user", "content": "hi"}]
MODEL = "models:\n  m: {provider: evil, pricing: unknown, params: [n, s]}\n"


def _provider(extra_body: str = "", top: str = "") -> str:
    return f"""\
extends: openai-compatible
name: evil
base_url: http://127.0.0.1:9/v1
base_url_env: EVIL_BASE_URL
auth: {{header: Authorization, scheme: Bearer, env: EVIL_KEY}}
hosts: [127.0.0.1]
{top}operations:
  chat:
    path: /chat/completions
    body:
      model: "{{{{ model.upstream }}}}"
      messages: "{{{{ messages }}}}"{extra_body}
"""


def _problems(cfg: Path) -> list:
    with pytest.raises(ConfigurationError) as info:
        Router.from_dir(catalog_dir(), cfg, env={"EVIL_KEY": KEY})
    problems = [p for p in info.value.problems if "evil" in p.file]
    assert problems, info.value
    return problems


# --- YAML ------------------------------------------------------------------------------------------------------------

BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10))


@pytest.mark.parametrize(("text", "fragment", "line"), [
    ("a: &x [*x]\n", "recursive alias", 1),
    ("a: &x {b: {c: *x}}\n", "recursive alias", 1),
    ("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + BOMB, f"more than {MAX_VALUES:,} values", 5),
    # PyYAML >= 6.0.4's own parser stops at its nesting limit first; either way a problem at line 1
    ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", (f"nested deeper than {MAX_DEPTH} levels", "maximum nesting depth"), 1),
    ("".join("  " * i + f"k{i}:\n" for i in range(100)) + "  " * 100 + "v\n", f"deeper than {MAX_DEPTH}", MAX_DEPTH + 1),
    ("a: *nowhere\n", "names no anchor", 1),
    ("name: evil\n---\nname: other\n", "one YAML document", 2),
    ("name: evil\ntimeouts: {total_s: .nan}\n", "'.nan' is not a finite number", 2),
    ("name: evil\ntimeouts:\n  read_s: .inf\n", "'.inf' is not a finite number", 3),
    ("name: evil\nmax_connections: -.Inf\n", "'-.Inf' is not a finite number", 2),
])
def test_a_hostile_yaml_file_is_a_configuration_error_with_its_line(write_config, text: str, fragment: str | tuple[str, ...],
                                                                    line: int) -> None:
    fragments = fragment if isinstance(fragment, tuple) else (fragment,)
    cfg = write_config({"providers.d/evil.yaml": text, "models.d/m.yaml": MODEL})
    started = time.monotonic()
    problems = _problems(cfg)
    assert time.monotonic() - started < 10
    assert any(f in p.message and p.line == line for p in problems for f in fragments), problems


def test_a_nan_price_is_a_configuration_error_at_its_line(write_config) -> None:
    cfg = write_config({"providers.d/evil.yaml": _provider(),
                        "models.d/m.yaml": "models:\n  m:\n    provider: evil\n    pricing: {input_per_million: .nan, output_per_million: 1}\n"})
    with pytest.raises(ConfigurationError) as info:
        Router.from_dir(catalog_dir(), cfg, env={"EVIL_KEY": KEY})
    assert any(p.file.endswith("m.yaml") and p.line == 4 and "finite" in p.message for p in info.value.problems)


def _special(tmp_path: Path, kind: str) -> Path:
    cfg = tmp_path / "cfg"
    (cfg / "providers.d").mkdir(parents=True)
    (cfg / "models.d").mkdir()
    (cfg / "models.d/m.yaml").write_text("models: {}\n")
    target = cfg / "providers.d/evil.yaml"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        target.symlink_to("/dev/zero")
    elif kind == "huge":
        target.write_bytes(b"name: evil\n" + b"# filler\n" * (MAX_FILE_BYTES // 9 + 1))
    elif kind == "directory":
        target.mkdir()
    return cfg


@pytest.mark.parametrize(("kind", "fragment"), [("fifo", "not a regular file"), ("device", "not a regular file"),
                                                ("huge", "a config file may hold at most"), ("directory", "not a regular file")])
def test_a_file_that_is_a_device_a_fifo_or_huge_is_a_configuration_error_and_never_read(tmp_path, kind: str, fragment: str) -> None:
    cfg = _special(tmp_path, kind)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        Router.from_dir(cfg, env={})
    assert time.monotonic() - started < 5
    assert any(fragment in p.message and p.file.endswith("evil.yaml") for p in info.value.problems), info.value


@pytest.mark.parametrize("kind", ["fifo", "bomb"])
def test_validate_exits_1_at_once_on_a_fifo_or_an_alias_bomb(tmp_path, kind: str) -> None:
    if kind == "fifo":
        cfg = _special(tmp_path, "fifo")
    else:
        cfg = tmp_path / "cfg"
        (cfg / "providers.d").mkdir(parents=True)
        (cfg / "providers.d/evil.yaml").write_text("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + BOMB)
    done = subprocess.run([sys.executable, "-m", "llm_router", "validate", str(cfg)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "evil.yaml" in done.stdout and "Traceback" not in done.stderr


# --- the template sandbox's render budget -----------------------------------------------------------------------------

ATTACKS = [
    "{{ 'a' * 10**9 }}",
    "{{ ('a' * 99999) * 99999 }}",
    "{{ (('a' * 9999) * 9) * 9999 }}",
    "{{ [[0] * 1000] * 1000 }}",
    "{{ 2 ** 100000 }}",
    "{{ (10 ** 64) ** 64 }}",
    "{{ 10 ** 4000 * 10 ** 4000 }}",
    "{{ '%*d' % (params.n * 1000, 1) }}",
    "{{ '{:>{}}'.format(1, 999999999) }}",
    "{{ '{:>99999999}'.format(1) }}",
    "{{ '%99999999d' % 1 }}",
    "{{ '%99999999d' | format(1) }}",
    "{{ '{0}{0}{0}{0}{0}{0}{0}{0}'.format('x' * 50000) }}",
    "{{ 'a'.ljust(10**9) }}", "{{ 'a'.center(10**7) }}", "{{ 'a'.zfill(10**7) }}", "{{ 'a'.rjust(10**7) }}",
    "{{ ('a' * 1000).replace('', 'b' * 1000) }}",
    "{{ ('x' * 1000).join(['y' * 1000] * 1000) }}",
    "{{ ('\\t' * 1000).expandtabs(1000) }}",
    "{{ 'a'.translate({97: 'b' * 1000}) }}",
    "{{ (1).to_bytes(10**9, 'big') }}",
    "{{ 'a' | center(10**8) }}",
    "{{ ('x\\n' * 1000) | indent(10000) }}",
    "{{ ('x ' * 1000) | wordwrap(1, wrapstring='y' * 10000) }}",
    "{{ params | tojson(indent=10**8) }}",
    "{{ (['x' * 99999] * 1000) | join }}",
    "{{ 'ab' | replace('', 'x' * 50000) }}",
    "{{ [1] | batch(10**9, 0) | list }}",
    "{{ [1] | slice(10**8) | list }}",
    "{{ [[1]] * 100000 | sum(start=[]) }}",
    "{{ range(10**9) | list }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(s=['x']) %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
    "{% for i in range(100000) %}{{ params.s }}{% endfor %}",
    "{{ [[[0] * 100] * 100] * 100 }}",
    "{% set a = [0] * 1000 %}{% set b = [a, a, a, a, a, a, a, a, a, a] %}{% set c = [b, b, b, b, b, b, b, b, b, b] %}{{ [c, c, c, c] }}",
    "{% set a = [0] * 1000 %}{% set b = (a, a, a, a, a, a, a, a, a, a) %}{% set c = {'x': b, 'y': b, 'z': b} %}{{ [c, c, c, c] | tojson }}",
    "{% set a = [0] * 1000 %}{% set b = dict(x=a, y=a, z=a, w=a) %}{% set c = dict(x=b, y=b, z=b, w=b) %}"
    "{% set d = dict(x=c, y=c, z=c, w=c) %}{{ dict(x=d, y=d, z=d, w=d) }}",
    "{{ {'a': [[0] * 1000] * 1000} }}",
    "{{ ([[0] * 1000] * 1000) ~ '' }}",
    "{{ ([[0] * 1000] * 1000) | string }}",
    "{% set ns = namespace(s=[[0] * 1000]) %}{% for i in range(30) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
    "{{ model.upstream[('_' ~ '_class__')] }}",
    "{{ model.upstream[('_' ~ '_class__')][('_' ~ '_mro__')] }}",
    "{{ (model.upstream ~ '')[('_' ~ '_init__')] }}",
]


@pytest.mark.parametrize("expr", ATTACKS)
async def test_a_config_expression_cannot_build_huge_values_or_stall_and_nothing_is_sent(write_config, expr: str) -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        cfg = write_config({"providers.d/evil.yaml": _provider(f"\n      evil: {json.dumps(expr)}"), "models.d/m.yaml": MODEL})
        router = Router.from_dir(catalog_dir(), cfg, env={"EVIL_KEY": KEY, "EVIL_BASE_URL": srv.url + "/v1"})
        async with router:
            started = time.monotonic()
            with pytest.raises(InvalidRequestError, match="could not render the request"):
                async with asyncio.timeout(10):
                    await router.query("m", HI, n=99999, s="x" * 1000)
            assert time.monotonic() - started < 3  # the budget stops it long before the event loop would notice
        assert srv.count() == 0


@pytest.mark.parametrize(("expr", "fragment"), [
    ("{{ model | attr('_' ~ '_class__') }}", "attr() with a name built at render time"),
    ("{{ model | attr(params.s) }}", "attr() with a name built at render time"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "{% macro %}"),
    ("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", "recursive loops"),
    ("{% call f() %}x{% endcall %}", "{% call %}"),
    ("{% include 'x' %}", "{% include %}"),
    ("{% from 'x' import y %}{{ y }}", "{% from ... import %}"),
    ("{{ lipsum(100000) }}", "unknown variable(s) lipsum"),
    ("{{ cycler(1, 2) }}", "unknown variable(s) cycler"),
])
def test_what_the_sandbox_refuses_at_compile_time_is_a_configuration_error_with_its_line(write_config, expr: str, fragment: str) -> None:
    cfg = write_config({"providers.d/evil.yaml": _provider(f"\n      evil: {json.dumps(expr)}"), "models.d/m.yaml": MODEL})
    (problem,) = _problems(cfg)
    assert fragment in problem.message and problem.line == 13, problem


LEGIT = [
    ("{{ 'Prompt: ' ~ params.s }}", "Prompt: " + "y" * 300_000),
    ("{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}", "user:hi;"),
    ("{{ ('ab' * 3) ~ params.s[:2] }}", "abababyy"),
    ("{{ '%s-%05d' % ('id', 42) }}", "id-00042"),
    ("{{ params.s | length }}", 300_000),
    ("{{ [params.s, 'c'] | join(',') | length }}", 300_002),
]


@pytest.mark.parametrize(("expr", "expected"), LEGIT)
async def test_ordinary_templates_render_within_the_budget_even_with_large_input(write_config, expr: str, expected) -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        cfg = write_config({"providers.d/evil.yaml": _provider(f"\n      evil: {json.dumps(expr)}"), "models.d/m.yaml": MODEL})
        async with Router.from_dir(catalog_dir(), cfg, env={"EVIL_KEY": KEY, "EVIL_BASE_URL": srv.url + "/v1"}) as router:
            async with asyncio.timeout(10):
                await router.query("m", HI, s="y" * 300_000)
        assert srv.requests[0].json()["evil"] == expected


def test_the_budget_is_large_enough_for_a_loop_over_a_long_conversation() -> None:
    """A template that walks 5,000 messages stays well inside the step budget."""
    from llm_router.templating import compile_structure

    compiled = compile_structure({"t": "{% for m in messages %}{{ m.role[0] }}{% endfor %}"}, frozenset({"messages"}))
    messages = [{"role": "user", "content": "x"}] * 5000
    assert compiled.render({"messages": messages}) == {"t": "u" * 5000}
    assert MAX_RENDER_STEPS >= 100_000 and MAX_RENDER_SIZE >= 100_000


async def test_a_render_refused_for_its_budget_leaves_nothing_behind_for_the_next_call(write_config) -> None:
    """Found by the fuzz: a refused render's spent budget reached the next render's URL (a plain path is
    rendered without Jinja) as a raw SecurityError."""
    provider = _provider('\n      evil: "{{ \'a\' * params.n }}"').replace("path: /chat/completions",
                                                                        'path: "/{{ model.upstream }}/chat"')
    with MockServer() as srv:
        srv.route("POST", "/v1/up/chat", Reply.json(openai_chat_reply("ok")))
        cfg = write_config({"providers.d/evil.yaml": provider,
                            "models.d/m.yaml": "models:\n  m: {provider: evil, upstream: up, pricing: unknown, params: [n]}\n"})
        async with Router.from_dir(catalog_dir(), cfg, env={"EVIL_KEY": KEY, "EVIL_BASE_URL": srv.url + "/v1"}) as router:
            for n in (10**9, 3, 10**9, 3):
                async with asyncio.timeout(10):
                    if n > 3:
                        with pytest.raises(InvalidRequestError, match="too large"):
                            await router.query("m", HI, n=n)
                    else:
                        assert (await router.query("m", HI, n=n)).content == "ok"
        assert [r.json()["evil"] for r in srv.requests] == ["aaa", "aaa"]
