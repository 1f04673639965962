"""The bundled catalog's files that the digest vouches for load without the template checks and
compile each template when it is first rendered; every request they render is the one a fully
checked load renders, and a bundled file edited since the digest was written is checked again."""

from __future__ import annotations

import re
import shutil
from typing import Any

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llm_router import Router, templating
from llm_router._resources import catalog_dir
from llm_router.config import build, digest, load_catalog
from llm_router.errors import RouterError
from llm_router.templating import TemplateRenderError, compile_structure

HI = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}}}}}]
ENV = {"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k", "GEMINI_API_KEY": "k"}


@pytest.fixture
def bundled_copy(tmp_path, monkeypatch):
    """A byte-for-byte copy of the bundled catalog that the digest treats as the bundled one."""
    copy = tmp_path / "catalog"
    for folder in ("providers.d", "models.d", "schemas"):
        shutil.copytree(catalog_dir() / folder, copy / folder, ignore=shutil.ignore_patterns("contracts"))
    monkeypatch.setattr(digest, "catalog_dir", lambda: copy)
    return copy


def _jinja_compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count what Jinja compiles into code (templates and expressions), from empty compile caches."""
    monkeypatch.setattr(build, "_COMPILED", {})
    monkeypatch.setattr(templating, "_LEAVES", {})
    seen: list[str] = []
    real_template, real_expression = ImmutableSandboxedEnvironment.from_string, ImmutableSandboxedEnvironment.compile_expression

    def from_string(self, source, *args, **kwargs):
        seen.append("template")
        return real_template(self, source, *args, **kwargs)

    def compile_expression(self, source, *args, **kwargs):
        seen.append(source)
        return real_expression(self, source, *args, **kwargs)

    monkeypatch.setattr(ImmutableSandboxedEnvironment, "from_string", from_string)
    monkeypatch.setattr(ImmutableSandboxedEnvironment, "compile_expression", compile_expression)
    return seen


def test_a_trusted_load_compiles_no_template_and_a_full_one_compiles_them(monkeypatch):
    seen = _jinja_compiles(monkeypatch)
    _, problems = load_catalog([catalog_dir()], {})
    assert seen == [] and not [p for p in problems if p.severity == "error"]
    load_catalog([catalog_dir()], {}, trust_digest=False)
    assert len(seen) > 5


def _calls(router: Router) -> list[tuple[str, dict[str, Any]]]:
    """A few calls per bundled model: plain, streamed, with tools, at each reasoning effort."""
    calls: list[tuple[str, dict[str, Any]]] = []
    for name, model in sorted(router.models.items()):
        if model.kind == "image":
            calls.append((name, {"prompt": "a cat"}))
            continue
        calls += [(name, {"messages": HI}), (name, {"messages": HI, "stream": True})]
        if "tools" in model.capabilities:
            calls.append((name, {"messages": HI, "tools": TOOLS, "tool_choice": "auto"}))
        for effort in model.reasoning.efforts if model.reasoning else ():
            calls.append((name, {"messages": HI, "reasoning_effort": effort}))
    return calls


def _render(router: Router, name: str, kwargs: dict[str, Any]) -> Any:
    try:
        view = router.render(name, **kwargs)
    except RouterError as exc:
        return type(exc).__name__, str(exc)
    # a multipart body's boundary is random per request: compare everything else
    return re.sub(r"boundary=[\w-]+", "boundary=B", repr(view))


def test_every_bundled_request_renders_the_same_trusted_or_checked_in_full():
    trusted, problems = load_catalog([catalog_dir()], ENV)
    checked, _ = load_catalog([catalog_dir()], ENV, trust_digest=False)
    assert not [p for p in problems if p.severity == "error"]
    fast, slow = Router(trusted, ENV), Router(checked, ENV)
    calls = _calls(slow)
    assert len(calls) > 100
    for name, kwargs in calls:
        assert _render(fast, name, kwargs) == _render(slow, name, kwargs), (name, kwargs)


def test_an_edited_bundled_file_has_its_templates_checked_again(bundled_copy):
    path = bundled_copy / "providers.d" / "anthropic.yaml"
    text = path.read_text()
    assert 'max_tokens: "{{ params.max_tokens | default(1024) }}"' in text
    path.write_text(text.replace('max_tokens: "{{ params.max_tokens | default(1024) }}"',
                                 'max_tokens: "{{ parms.max_tokens | default(1024) }}"', 1))
    _, problems = load_catalog([bundled_copy], {})
    errors = [p for p in problems if p.severity == "error"]
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "parms.max_tokens" in text)
    assert [(p.file, p.line) for p in errors] == [(str(path), line)]
    assert "unknown variable(s) parms" in errors[0].message


def test_a_trusted_template_that_would_not_compile_fails_its_render_not_the_process():
    """Not checked at load, by design: what it would have said comes as a render error (a request error)."""
    template = compile_structure({"a": "{{ x | no_such_filter }}"}, frozenset({"x"}), "body", trusted=True)
    with pytest.raises(TemplateRenderError, match="no_such_filter"):
        template.render({"x": 1})


def test_a_trusted_load_parses_no_template(monkeypatch):
    """The digest's snapshot says what parsing each bundled leaf would (its params, its lookup chain, its
    variables, a URL's pieces), so Jinja parses none of them at load."""
    monkeypatch.setattr(build, "_COMPILED", {})
    monkeypatch.setattr(templating, "_LEAVES", {})
    parsed: list[str] = []  # by the compiler of leaves (config/vars.py parses `vars` templates for its checks)
    leaves: list[tuple[str, bool]] = []
    real_parse, real_leaf = templating.ENV.parse, templating._compile_leaf

    def parse(source, *args, **kwargs):
        if leaves and leaves[-1][0] == source:
            parsed.append(source)
        return real_parse(source, *args, **kwargs)

    def compile_leaf(source, allowed, where, params, variables, url, trusted):
        leaves.append((source, url))
        try:
            return real_leaf(source, allowed, where, params, variables, url, trusted)
        finally:
            leaves.append(("", False))

    monkeypatch.setattr(templating.ENV, "parse", parse)
    monkeypatch.setattr(templating, "_compile_leaf", compile_leaf)
    _, problems = load_catalog([catalog_dir()], {})
    assert not [p for p in problems if p.severity == "error"]
    assert len(leaves) > 100 and any(url for _, url in leaves) and parsed == []
