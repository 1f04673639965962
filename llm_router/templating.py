"""Request templates: YAML structures whose string leaves are sandboxed Jinja.

A leaf that is exactly one `{{ expr }}` yields the object the expression evaluates to (a list
stays a list, the string "478" stays a string); a leaf that mixes text and expressions renders to
a string. An undefined or None result drops its key, and an object emptied by dropped keys is
dropped too. User data (messages, prompt, params) only ever arrives as variables.

This is the runtime; parsing a template (template_ast.py) and compiling one load Jinja and the
sandbox on first need, so a plain-lookup leaf (`{{ messages }}`) never does.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from .urlsafe import UnsafeUrlValue, url_value

if TYPE_CHECKING:
    from jinja2 import nodes

__all__ = ["DROP", "CompiledTemplate", "TemplateCompileError", "TemplateRenderError", "compile_structure"]


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


# --- filters every provider may use -----------------------------------------------------------


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def system_text(messages: Iterable[Mapping[str, Any]]) -> str | None:
    """The system (and developer) messages joined by blank lines; None when there are none."""
    texts = [text_of(m.get("content")) for m in messages if m.get("role") in ("system", "developer")]
    return "\n\n".join(t for t in texts if t) or None


def without_system(messages: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [m for m in messages if m.get("role") not in ("system", "developer")]


def last_user_text(messages: Iterable[Mapping[str, Any]]) -> str | None:
    for message in reversed(list(messages)):
        if message.get("role") == "user":
            return text_of(message.get("content"))
    return None


def from_json(text: Any) -> Any:
    """JSON text parsed (a value that is not a string is returned as it is)."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        raise TemplateRenderError(f"from_json: not valid JSON: {text[:80]!r}") from None


def rename_roles(messages: Iterable[Mapping[str, Any]], mapping: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{**m, "role": mapping.get(m.get("role", ""), m.get("role"))} for m in messages]


def rename_keys(messages: Iterable[Mapping[str, Any]], mapping: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{mapping.get(k, k): v for k, v in m.items()} for m in messages]


ENGINE_FILTERS = dict(
    system_text=system_text,
    without_system=without_system,
    last_user_text=last_user_text,
    from_json=from_json,
    rename_roles=rename_roles,
    rename_keys=rename_keys,
)


@functools.cache
def sandboxed() -> ModuleType:
    """The sandbox (sandbox.py), with the engine's filters: Jinja and the sandbox load on first need
    (a template to parse or to compile), not with the package: 50 ms that a router of plain-lookup
    templates (most bundled providers' requests) never pays. See trusted leaves below."""
    from . import sandbox

    sandbox.ENV.filters.update(ENGINE_FILTERS)  # URL_ENV shares them
    return sandbox


def __getattr__(name: str) -> Any:
    """`ENV` and `URL_ENV`, the sandboxed environments, load on first use (see sandboxed)."""
    if name in ("ENV", "URL_ENV"):
        return getattr(sandboxed(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _render_faults() -> tuple[type[BaseException], ...]:
    """What a render may raise from a config expression's own fault (a recursion: str() of deeply nested
    data); asked for only when a render raised."""
    from jinja2.exceptions import TemplateError

    return (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, RecursionError)


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
        # the variables it reads, found by the checks (a trusted template other than a URL is not
        # checked, and its set is empty: only URL templates' are ever asked for)
        self.variables = variables


def compile_structure(value: Any, allowed: frozenset[str], where: str = "", url: bool = False,
                      trusted: bool = False) -> CompiledTemplate:
    """Compile a YAML value; raise TemplateCompileError naming the key path on any fault. `url`: a
    URL (a path, or a poll URL) whose every expression places one percent-encoded value.

    `trusted`: the value comes from a bundled file its digest vouches for (config/digest.py), which
    passed these checks when the digest was written, and passes them with today's code
    (tests/test_startup.py loads the bundled catalog in full): its templates other than URLs are
    parsed but not checked again, and Jinja compiles each one when it is first rendered."""
    params: set[str] = set()
    variables: set[str] = set()
    render = _compile(value, allowed, where, params, variables, url, trusted)
    return CompiledTemplate(render, frozenset(params), frozenset(variables))


def _compile(value: Any, allowed: frozenset[str], where: str, params: set[str], variables: set[str], url: bool,
             trusted: bool) -> Renderer:
    if isinstance(value, dict):
        items = [(k, _compile(v, allowed, f"{where}.{k}" if where else str(k), params, variables, url, trusted))
                 for k, v in value.items()]
        if not items:
            return lambda ctx: {}
        # a `{{ name }}` leaf (render_variable) is its one dict lookup, done here without calling it
        leaves = [(key, getattr(render, "variable", None), render) for key, render in items]

        def render_dict(ctx: Mapping[str, Any]) -> Any:
            out = {}
            plain = type(ctx) is dict
            for key, variable, render in leaves:
                if plain and variable is not None:
                    rendered = ctx.get(variable)
                    if rendered is not None:
                        out[key] = rendered
                elif (rendered := render(ctx)) is not DROP:  # a constant null stays in the body
                    out[key] = rendered
            return out if out else DROP

        return render_dict
    if isinstance(value, list):
        renderers = [_compile(v, allowed, f"{where}[{i}]", params, variables, url, trusted) for i, v in enumerate(value)]

        def render_list(ctx: Mapping[str, Any]) -> Any:
            out = [r for r in (render(ctx) for render in renderers) if r is not DROP]
            return out if out or not renderers else DROP

        return render_list
    if isinstance(value, str) and is_template(value):
        return _compile_string(value, allowed, where, params, variables, url, trusted)
    return lambda ctx: value


_LEAVES: dict[tuple[str, frozenset[str], bool, bool], tuple[Renderer, frozenset[str], frozenset[str]]] = {}


def _compile_string(source: str, allowed: frozenset[str], where: str, params: set[str], variables: set[str],
                    url: bool, trusted: bool) -> Renderer:
    """One template leaf, compiled once per distinct source: providers that extend one base, and a
    stream body merged from the operation's, repeat the same leaves (a render error then names the
    key path where the leaf was first compiled). A trusted leaf is never handed to an untrusted
    file: the key says which it is."""
    key = (source, allowed, url, trusted)
    cached = _LEAVES.get(key)
    if cached is None:
        leaf_params: set[str] = set()
        leaf_variables: set[str] = set()
        render = _compile_leaf(source, allowed, where, leaf_params, leaf_variables, url, trusted)
        if len(_LEAVES) >= 8192:
            _LEAVES.clear()
        cached = _LEAVES[key] = (render, frozenset(leaf_params), frozenset(leaf_variables))
    render, leaf_params_found, leaf_variables_found = cached
    params.update(leaf_params_found)
    variables.update(leaf_variables_found)
    return render


class LeafFacts(NamedTuple):
    """What parsing a template leaf tells, all a trusted leaf needs at load."""

    params: frozenset[str]  # the params it names (not merged into the request again)
    chain: tuple[str, ...] | None  # a `{{ expr }}` leaf that is a plain lookup: its keys
    variables: frozenset[str]  # the variables it reads (the checks ask for a URL's)
    pieces: tuple[str | tuple[str, ...], ...] | None  # a URL of text and plain lookups: its pieces
    vars: frozenset[str]  # the `vars.X` it names (config/vars.py checks they are declared)


# The facts of trusted leaves, by source, from the digest's snapshot (config/digest.py): such a leaf
# is not parsed at load at all, and Jinja compiles it when it is first rendered. The facts are a pure
# function of the source (and of Jinja's version, which the snapshot records).
_TRUSTED_LEAVES: dict[str, LeafFacts] = {}


@functools.cache
def _jinja_version() -> str:
    """Jinja's version, without importing Jinja: the `__version__` line of its __init__.py ("" if not found)."""
    if "jinja2" in sys.modules:
        return str(sys.modules["jinja2"].__version__)
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("jinja2")
    try:
        text = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
    except OSError:
        return ""
    found = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    return found[1] if found else ""


def trust_leaves(facts: Mapping[str, Sequence[Any]], jinja_version: str) -> None:
    """Remember the facts of the leaves of digest-vouched files (used for trusted leaves only), when
    they were found with this version of Jinja."""
    if jinja_version != _jinja_version():
        return
    for source, (params, chain, variables, pieces, names) in facts.items():
        _TRUSTED_LEAVES[source] = LeafFacts(frozenset(params), chain, frozenset(variables), pieces, frozenset(names))


@functools.lru_cache(maxsize=4096)
def vars_named(source: str) -> frozenset[str]:
    """The `vars.X` and `vars['X']` a template names (none for a template that does not parse: the
    template compiler reports it, with its line). Once per source: providers that extend one base
    repeat its templates; and from the snapshot's facts for a bundled one."""
    known = _TRUSTED_LEAVES.get(source)  # a pure function of the source, whichever file it is in
    if known is not None:
        return known.vars
    from jinja2.exceptions import TemplateError

    from . import template_ast

    try:
        return frozenset(template_ast.vars_named(sandboxed().ENV.parse(source)))
    except TemplateError:
        return frozenset()


def _compile_leaf(source: str, allowed: frozenset[str], where: str, params: set[str], variables: set[str],
                  url: bool, trusted: bool) -> Renderer:
    known = _TRUSTED_LEAVES.get(source) if trusted else None
    ast: nodes.Template | None = None
    if known is not None:
        params.update(known.params)
        if url:  # a URL's variables are asked for by the checks (config/checks.py)
            variables.update(known.variables)
    else:
        from jinja2 import TemplateSyntaxError

        from . import template_ast

        try:
            ast = sandboxed().ENV.parse(source)
        except TemplateSyntaxError as exc:
            raise TemplateCompileError(f"{where}: template syntax error: {exc.message} in {source!r}") from None
        if url or not trusted:
            variables.update(template_ast.check(ast, allowed, where, source))
        params.update(template_ast.param_names(ast))
    whole = _WHOLE.match(source)
    if whole and source.count("{{") == 1 and "{%" not in source and not url:
        chain = known.chain if known is not None else template_ast.lookup_chain(ast)  # type: ignore[arg-type]  # parsed when not known
        return _expression_renderer(chain, whole["expr"], where, source, trusted)
    pieces: list[str | tuple[str, ...]] | None = None
    if url and known is not None:
        pieces = list(known.pieces) if known.pieces is not None else None
    elif url:
        pieces = template_ast.url_pieces(ast)  # type: ignore[arg-type]  # parsed when not known; before Jinja instruments the tree
    compiled: list[Any] = []

    def template() -> Any:
        if not compiled:
            from jinja2.exceptions import TemplateError

            env = sandboxed().URL_ENV if url else sandboxed().ENV
            try:
                compiled.append(_flatten_globals(env.from_string(ast if ast is not None else source)))
            except TemplateError as exc:
                raise TemplateCompileError(f"{where}: {exc} in {source!r}") from None
        return compiled[0]

    if not trusted:
        template()

    def render_text(ctx: Mapping[str, Any]) -> Any:
        try:  # the text output is charged to the render's budget as it is written (the sandbox's finalize)
            return template().render(ctx)
        except UnsafeUrlValue as exc:
            raise TemplateRenderError(f"{where}: {exc} (in {source!r})") from None
        except _render_faults() as exc:
            raise TemplateRenderError(f"{where}: {type(exc).__name__}: {exc}") from None

    if pieces is None:
        return render_text
    fixed = pieces

    def render_url(ctx: Mapping[str, Any]) -> Any:
        """`/models/{{ model.upstream }}:go`: text and plain lookups, each value encoded, without Jinja."""
        out = []
        for piece in fixed:
            if isinstance(piece, str):
                out.append(piece)
                continue
            value = _lookup(ctx, piece)
            if value is _SLOW:
                return render_text(ctx)
            try:
                out.append(url_value(value))
            except UnsafeUrlValue as exc:
                raise TemplateRenderError(f"{where}: {exc} (in {source!r})") from None
        return "".join(out)

    return render_url


def _expression_renderer(chain: tuple[str, ...] | None, expr: str, where: str, source: str, trusted: bool) -> Renderer:
    """A leaf that is exactly one `{{ expr }}`: the value itself. A plain lookup (`messages`,
    `model.upstream`; `chain`, its keys) is a dict lookup; anything else runs in the sandbox
    (compiled at load, or for a trusted file when first needed)."""
    variable = chain[0] if chain is not None and len(chain) == 1 and not hasattr({}, chain[0]) else None
    compiled: list[Any] = []  # a plain lookup is rarely evaluated by Jinja: compiled on first need, not at load

    def expression(ctx: Mapping[str, Any]) -> Any:
        if not compiled:
            compiled.append(_compile_expression(expr, where, source))
        return compiled[0](ctx)

    if chain is None and not trusted:
        compiled.append(_compile_expression(expr, where, source))

    def render_variable(ctx: Mapping[str, Any]) -> Any:  # `{{ tools }}`: one dict lookup
        if type(ctx) is dict:
            value = ctx.get(variable)
            return DROP if value is None else value
        return render_expression(ctx)

    render_variable.variable = variable  # type: ignore[attr-defined]  # a dict of leaves looks it up itself

    lookup = _lookup_plain if chain is not None and _plain_chain(chain) else _lookup

    def render_expression(ctx: Mapping[str, Any]) -> Any:
        if chain is not None:  # `messages`, `model.upstream`: plain lookups, no Jinja context
            result = lookup(ctx, chain)
            if result is not _SLOW:
                return DROP if result is None else result
        try:
            result = expression(ctx)
            sandboxed().charge_value(result)  # what goes into the request, walked deep: never more than the budget
        except _render_faults() as exc:
            raise TemplateRenderError(f"{where}: {type(exc).__name__}: {exc}") from None
        if result is None or isinstance(result, sandboxed().ChainableUndefined):
            return DROP
        return result

    return render_variable if variable is not None else render_expression


def _compile_expression(expr: str, where: str, source: str) -> Any:
    from jinja2.exceptions import TemplateError

    try:
        expression = sandboxed().ENV.compile_expression(expr, undefined_to_none=False)
    except TemplateError as exc:
        raise TemplateCompileError(f"{where}: expression error: {exc} in {source!r}") from None
    _flatten_globals(expression._template)
    return expression


def _flatten_globals(template: Any) -> Any:
    """A template's globals as one plain dict instead of Jinja's ChainMap over the environment's:
    each render copies them into a new context, and copying a ChainMap was two thirds of the cost
    of evaluating an expression (19 us → 7 us). The environment's globals never change after import."""
    template.globals = dict(template.globals)
    return template


_SLOW: Any = object()  # the fast lookup cannot decide; ask Jinja
_PLAIN_MAPPINGS = (dict, MappingProxyType)


def _lookup(ctx: Mapping[str, Any], chain: tuple[str, ...]) -> Any:
    """What Jinja would give for the chain, as long as every step is a plain mapping lookup; a
    missing key is undefined (None here). A name that is also a mapping method goes to Jinja."""
    value: Any = ctx
    for key in chain:
        if type(value) not in _PLAIN_MAPPINGS or hasattr(value, key):
            return _SLOW
        value = value.get(key)
        if value is None:
            return None
    return value


def _lookup_plain(ctx: Mapping[str, Any], chain: tuple[str, ...]) -> Any:
    """`_lookup` for a chain none of whose names is an attribute of a plain mapping (`_plain_chain`),
    so the `hasattr` test is known to be False at every step."""
    value: Any = ctx
    for key in chain:
        if type(value) not in _PLAIN_MAPPINGS:
            return _SLOW
        value = value.get(key)
        if value is None:
            return None
    return value


def _plain_chain(chain: tuple[str, ...]) -> bool:
    """No name of the chain is an attribute of dict or MappingProxyType (their instances have no
    attributes of their own, so the type says it for every instance)."""
    return not any(hasattr(mapping, key) for key in chain for mapping in _PLAIN_MAPPINGS)
