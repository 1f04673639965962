"""Request templates: YAML structures whose string leaves are sandboxed Jinja.

A leaf that is exactly one `{{ expr }}` yields the object the expression evaluates to (a list
stays a list, the string "478" stays a string); a leaf that mixes text and expressions renders to
a string. An undefined or None result drops its key, and an object emptied by dropped keys is
dropped too. User data (messages, prompt, params) only ever arrives as variables.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_BUILT_ITEMS = 100_000  # what `*` / `**` in a config expression may build


class TemplateCompileError(ValueError):
    pass


class TemplateRenderError(ValueError):
    pass


class _DropType:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _DropType()
"""What a renderer returns when its key should be left out of the request."""

Renderer = Callable[[Mapping[str, Any]], Any]


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, (int, float)) and abs(right) > 64:
                raise SecurityError("exponent too large in a config expression")
            return left**right
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                if len(seq) * count > MAX_BUILT_ITEMS:
                    raise SecurityError("a config expression tried to build a value too large")
        return operator.mul(left, right)


# --- filters every provider may use -----------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def system_text(messages: Iterable[Mapping[str, Any]]) -> str | None:
    """The system (and developer) messages joined by blank lines; None when there are none."""
    texts = [_text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")]
    return "\n\n".join(texts) if texts else None


def without_system(messages: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [m for m in messages if m.get("role") not in ("system", "developer")]


def last_user_text(messages: Iterable[Mapping[str, Any]]) -> str | None:
    for message in reversed(list(messages)):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return None


_DATA_URL = re.compile(r"data:(?P<mime>[\w/+.-]+);base64,(?P<data>.*)", re.S)


def _image_part(style: str, url: str) -> dict[str, Any]:
    match = _DATA_URL.match(url)
    if style == "anthropic":
        if match:
            return {"type": "image", "source": {"type": "base64", "media_type": match["mime"], "data": match["data"]}}
        return {"type": "image", "source": {"type": "url", "url": url}}
    if match:  # gemini
        return {"inline_data": {"mime_type": match["mime"], "data": match["data"]}}
    return {"file_data": {"file_uri": url}}


def content_parts(messages: Iterable[Mapping[str, Any]], style: str) -> list[dict[str, Any]]:
    """OpenAI-style message content as another wire format's parts ('anthropic' or 'gemini').

    Anthropic keeps plain-string content as is; Gemini always gets a list of parts.
    """
    if style not in ("anthropic", "gemini"):
        raise TemplateRenderError(f"content_parts: unknown style {style!r}; use 'anthropic' or 'gemini'")
    converted = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) and style == "anthropic":
            converted.append(dict(message))
            continue
        raw_parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        parts: list[dict[str, Any]] = []
        for part in raw_parts:
            kind = part.get("type")
            if kind == "text":
                parts.append({"type": "text", "text": part["text"]} if style == "anthropic" else {"text": part["text"]})
            elif kind == "image_url":
                image = part["image_url"]
                parts.append(_image_part(style, image["url"] if isinstance(image, dict) else image))
            else:
                parts.append(dict(part))
        converted.append({**message, "content": parts})
    return converted


def rename_roles(messages: Iterable[Mapping[str, Any]], mapping: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{**m, "role": mapping.get(m.get("role", ""), m.get("role"))} for m in messages]


def rename_keys(messages: Iterable[Mapping[str, Any]], mapping: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{mapping.get(k, k): v for k, v in m.items()} for m in messages]


ENV = _Environment(undefined=ChainableUndefined, autoescape=False, keep_trailing_newline=True)
ENV.filters.update(
    system_text=system_text,
    without_system=without_system,
    last_user_text=last_user_text,
    content_parts=content_parts,
    rename_roles=rename_roles,
    rename_keys=rename_keys,
)

# --- compiling a YAML structure into a renderer ---------------------------------------------------

_WHOLE = re.compile(r"\A\s*\{\{(?P<expr>.*)\}\}\s*\Z", re.S)


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


class CompiledTemplate:
    """A compiled YAML structure; `render(context)` builds a fresh value (or DROP)."""

    __slots__ = ("render", "param_names", "variables")

    def __init__(self, render: Renderer, param_names: frozenset[str], variables: frozenset[str]) -> None:
        self.render = render
        self.param_names = param_names  # params.X named anywhere, so they are not merged again
        self.variables = variables


def compile_structure(value: Any, allowed: frozenset[str], where: str = "") -> CompiledTemplate:
    """Compile a YAML value; raise TemplateCompileError naming the key path on any fault."""
    params: set[str] = set()
    variables: set[str] = set()
    render = _compile(value, allowed, where, params, variables)
    return CompiledTemplate(render, frozenset(params), frozenset(variables))


def _compile(value: Any, allowed: frozenset[str], where: str, params: set[str], variables: set[str]) -> Renderer:
    if isinstance(value, dict):
        items = [(k, _compile(v, allowed, f"{where}.{k}" if where else str(k), params, variables)) for k, v in value.items()]
        if not items:
            return lambda ctx: {}

        def render_dict(ctx: Mapping[str, Any]) -> Any:
            out = {}
            for key, render in items:
                rendered = render(ctx)
                if rendered is not DROP:
                    out[key] = rendered
            return out if out else DROP

        return render_dict
    if isinstance(value, list):
        renderers = [_compile(v, allowed, f"{where}[{i}]", params, variables) for i, v in enumerate(value)]

        def render_list(ctx: Mapping[str, Any]) -> Any:
            out = [r for r in (render(ctx) for render in renderers) if r is not DROP]
            return out if out or not renderers else DROP

        return render_list
    if isinstance(value, str) and is_template(value):
        return _compile_string(value, allowed, where, params, variables)
    return lambda ctx: value


def _compile_string(source: str, allowed: frozenset[str], where: str, params: set[str], variables: set[str]) -> Renderer:
    try:
        ast = ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateCompileError(f"{where}: template syntax error: {exc.message} in {source!r}") from None
    undeclared = meta.find_undeclared_variables(ast)
    unknown = sorted(undeclared - allowed)
    if unknown:
        raise TemplateCompileError(
            f"{where}: unknown variable(s) {', '.join(unknown)} in {source!r}; "
            f"available here: {', '.join(sorted(allowed))}"
        )
    unsafe = sorted({n.attr for n in ast.find_all(nodes.Getattr) if n.attr.startswith("_")})
    if unsafe:
        raise TemplateCompileError(f"{where}: the sandbox refuses private attribute(s) {', '.join(unsafe)} in {source!r}")
    variables.update(undeclared)
    params.update(_param_names(ast))
    whole = _WHOLE.match(source)
    if whole and source.count("{{") == 1 and "{%" not in source:
        try:
            expression = ENV.compile_expression(whole["expr"], undefined_to_none=False)
        except TemplateSyntaxError as exc:
            raise TemplateCompileError(f"{where}: expression error: {exc.message} in {source!r}") from None

        def render_expression(ctx: Mapping[str, Any]) -> Any:
            try:
                result = expression(ctx)
            except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
                raise TemplateRenderError(f"{where}: {type(exc).__name__}: {exc}") from None
            if result is None or isinstance(result, ChainableUndefined):
                return DROP
            return result

        return render_expression
    template = ENV.from_string(source)

    def render_text(ctx: Mapping[str, Any]) -> Any:
        try:
            return template.render(ctx)
        except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise TemplateRenderError(f"{where}: {type(exc).__name__}: {exc}") from None

    return render_text


def _param_names(ast: nodes.Template) -> set[str]:
    names = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if isinstance(target, nodes.Name) and target.name == "params":
            if isinstance(node, nodes.Getattr):
                names.add(node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                names.add(node.arg.value)
    return names
