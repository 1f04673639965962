"""Request templates: YAML structures whose string leaves are sandboxed Jinja.

A leaf that is exactly one `{{ expr }}` yields the object the expression evaluates to (a list
stays a list, the string "478" stays a string); a leaf that mixes text and expressions renders to
a string. An undefined or None result drops its key, and an object emptied by dropped keys is
dropped too. User data (messages, prompt, params) only ever arrives as variables.
"""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
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


_WIDE_FORMAT = re.compile(r"\d{6,}")  # a format width of a million or more, as in "{:>99999999}"


def _refuse_big(*values: Any) -> None:
    for value in values:
        if type(value) is int and abs(value) > MAX_BUILT_ITEMS:
            raise SecurityError("a config expression tried to build a value too large")


def _refuse_wide_format(text: Any) -> None:
    if isinstance(text, str) and _WIDE_FORMAT.search(text):
        raise SecurityError("a format width too large in a config expression")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict)) else 1


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, also capping what `*`, `**`, `%`, padding methods and filters may build."""

    intercepted_binops = frozenset(["*", "**", "%"])

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, (int, float)) and abs(right) > 64:
                raise SecurityError("exponent too large in a config expression")
            return left**right
        if operator_name == "%":
            if isinstance(left, str):
                _refuse_wide_format(left)
                if "*" in left:  # "%*d" takes its width from the arguments
                    _refuse_big(*(right if isinstance(right, tuple) else (right,)))
            return left % right
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > MAX_BUILT_ITEMS:
                raise SecurityError("a config expression tried to build a value too large")
        return operator.mul(left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(getattr(__obj, "__self__", None), str):  # "a".ljust(n), "a".zfill(n)
            _refuse_big(*args, *kwargs.values())
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:  # "{:>99999999}".format(1)
            _refuse_wide_format(value.__self__)
        return wrapped


def _capped(name: str, check: Callable[..., None]) -> None:
    """Wrap a built-in filter with a size check that runs before it builds anything."""
    original = ENV.filters[name]
    skip = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0  # environment/eval_context

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check(*args[skip:], **kwargs)
        return original(*args, **kwargs)

    ENV.filters[name] = wrapper


def _check_widths(value: Any, *args: Any, **kwargs: Any) -> None:
    """The value filtered may be any data; the filter's own arguments are widths."""
    _refuse_big(*args, *kwargs.values())


def _check_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _refuse_wide_format(value)
    if isinstance(value, str) and "*" in value:  # "%*d" takes its width from the arguments
        _refuse_big(*args, *kwargs.values())


def _check_join(value: Any, d: Any = "", *args: Any, **kwargs: Any) -> None:
    separator = kwargs.get("d", d)
    if (
        isinstance(value, (list, tuple))
        and isinstance(separator, str)
        and sum(_size(i) for i in value) + len(value) * len(separator) > MAX_BUILT_ITEMS
    ):
        raise SecurityError("a config expression tried to build a value too large")


def _check_replace(text: Any, old: Any = None, new: Any = None, *args: Any, **kwargs: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        count = len(text) + 1 if not old else text.count(old)
        if len(text) + count * len(new) > MAX_BUILT_ITEMS:
            raise SecurityError("a config expression tried to build a value too large")


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


ENV = _Environment(undefined=ChainableUndefined, autoescape=False, keep_trailing_newline=True)
_ENGINE_FILTERS = dict(
    system_text=system_text,
    without_system=without_system,
    last_user_text=last_user_text,
    from_json=from_json,
    rename_roles=rename_roles,
    rename_keys=rename_keys,
)
ENV.filters.update(_ENGINE_FILTERS)
for _name in ("center", "indent", "wordwrap", "truncate"):
    _capped(_name, _check_widths)
_capped("format", _check_format)
_capped("tojson", lambda value, *args, **kwargs: _refuse_big(*args, *kwargs.values()))
_capped("join", _check_join)
_capped("replace", _check_replace)

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


_LEAVES: dict[tuple[str, frozenset[str]], tuple[Renderer, frozenset[str], frozenset[str]]] = {}


def _compile_string(source: str, allowed: frozenset[str], where: str, params: set[str], variables: set[str]) -> Renderer:
    """One template leaf, compiled once per distinct source: providers that extend one base, and a
    stream body merged from the operation's, repeat the same leaves (a render error then names the
    key path where the leaf was first compiled)."""
    key = (source, allowed)
    cached = _LEAVES.get(key)
    if cached is None:
        leaf_params: set[str] = set()
        leaf_variables: set[str] = set()
        render = _compile_leaf(source, allowed, where, leaf_params, leaf_variables)
        if len(_LEAVES) >= 8192:
            _LEAVES.clear()
        cached = _LEAVES[key] = (render, frozenset(leaf_params), frozenset(leaf_variables))
    render, leaf_params_found, leaf_variables_found = cached
    params.update(leaf_params_found)
    variables.update(leaf_variables_found)
    return render


def _compile_leaf(source: str, allowed: frozenset[str], where: str, params: set[str], variables: set[str]) -> Renderer:
    try:
        ast = ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateCompileError(f"{where}: template syntax error: {exc.message} in {source!r}") from None
    missing = sorted({n.name for n in ast.find_all((nodes.Filter, nodes.Test))
                      if n.name not in (ENV.filters if isinstance(n, nodes.Filter) else ENV.tests)})
    if missing:
        raise TemplateCompileError(
            f"{where}: unknown filter or test {', '.join(missing)} in {source!r}; "
            f"engine filters: {', '.join(sorted(_ENGINE_FILTERS))}"
        )
    try:
        undeclared = meta.find_undeclared_variables(ast)
    except TemplateError as exc:
        raise TemplateCompileError(f"{where}: {exc} in {source!r}") from None
    unknown = sorted(undeclared - allowed)
    if unknown:
        raise TemplateCompileError(
            f"{where}: unknown variable(s) {', '.join(unknown)} in {source!r}; "
            f"available here: {', '.join(sorted(allowed))}"
        )
    unsafe = sorted(_private_names(ast))
    if unsafe:
        raise TemplateCompileError(f"{where}: the sandbox refuses private attribute(s) {', '.join(unsafe)} in {source!r}")
    variables.update(undeclared)
    params.update(_param_names(ast))
    whole = _WHOLE.match(source)
    if whole and source.count("{{") == 1 and "{%" not in source:
        chain = _lookup_chain(ast)
        variable = chain[0] if chain is not None and len(chain) == 1 and not hasattr({}, chain[0]) else None
        compiled: list[Any] = []  # a plain lookup is rarely evaluated by Jinja: compiled on first need, not at load

        def expression(ctx: Mapping[str, Any]) -> Any:
            if not compiled:
                compiled.append(_compile_expression(whole["expr"], where, source))
            return compiled[0](ctx)

        if chain is None:
            compiled.append(_compile_expression(whole["expr"], where, source))

        def render_variable(ctx: Mapping[str, Any]) -> Any:  # `{{ tools }}`: one dict lookup
            if type(ctx) is dict:
                value = ctx.get(variable)
                return DROP if value is None else value
            return render_expression(ctx)

        def render_expression(ctx: Mapping[str, Any]) -> Any:
            if chain is not None:  # `messages`, `model.upstream`: plain lookups, no Jinja context
                result = _lookup(ctx, chain)
                if result is not _SLOW:
                    return DROP if result is None else result
            try:
                result = expression(ctx)
            except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
                raise TemplateRenderError(f"{where}: {type(exc).__name__}: {exc}") from None
            if result is None or isinstance(result, ChainableUndefined):
                return DROP
            return result

        return render_variable if variable is not None else render_expression
    try:
        template = ENV.from_string(source)
    except TemplateError as exc:
        raise TemplateCompileError(f"{where}: {exc} in {source!r}") from None
    _flatten_globals(template)

    def render_text(ctx: Mapping[str, Any]) -> Any:
        try:
            return template.render(ctx)
        except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise TemplateRenderError(f"{where}: {type(exc).__name__}: {exc}") from None

    return render_text


def _compile_expression(expr: str, where: str, source: str) -> Any:
    try:
        expression = ENV.compile_expression(expr, undefined_to_none=False)
    except TemplateError as exc:
        raise TemplateCompileError(f"{where}: expression error: {exc} in {source!r}") from None
    _flatten_globals(expression._template)
    return expression


def _flatten_globals(template: Any) -> None:
    """A template's globals as one plain dict instead of Jinja's ChainMap over the environment's:
    each render copies them into a new context, and copying a ChainMap was two thirds of the cost
    of evaluating an expression (19 us → 7 us). The environment's globals never change after import."""
    template.globals = dict(template.globals)


_SLOW: Any = object()  # the fast lookup cannot decide; ask Jinja
_PLAIN_MAPPINGS = (dict, MappingProxyType)


def _lookup_chain(ast: nodes.Template) -> tuple[str, ...] | None:
    """The keys of an expression that is only `name.key['key']...`, else None."""
    (output,) = ast.body if len(ast.body) == 1 else (None,)
    if not isinstance(output, nodes.Output):
        return None
    exprs = [n for n in output.nodes if not (isinstance(n, nodes.TemplateData) and not n.data.strip())]
    if len(exprs) != 1:
        return None
    node, keys = exprs[0], []
    while not isinstance(node, nodes.Name):
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            keys.append(node.arg.value)
        else:
            return None
        node = node.node
    keys.append(node.name)
    return tuple(reversed(keys))


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


def _private_names(ast: nodes.Template) -> set[str]:
    """Private names reached as `x.__a`, `x['__a']` or `x | attr('__a')`: refused at load."""
    names = {n.attr for n in ast.find_all(nodes.Getattr) if n.attr.startswith("_")}
    for node in ast.find_all((nodes.Getitem, nodes.Filter)):
        keys: list[nodes.Expr] = []
        if isinstance(node, nodes.Getitem):
            keys = [node.arg]
        elif isinstance(node, nodes.Filter) and node.name == "attr":
            keys = list(node.args)
        names.update(k.value for k in keys if isinstance(k, nodes.Const) and isinstance(k.value, str) and k.value.startswith("_"))
    return names


def _param_names(ast: nodes.Template) -> set[str]:
    names = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        if not (isinstance(node, (nodes.Getattr, nodes.Getitem)) and isinstance(node.node, nodes.Name)
                and node.node.name == "params"):
            continue
        if isinstance(node, nodes.Getattr):
            names.add(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            names.add(node.arg.value)
    return names
