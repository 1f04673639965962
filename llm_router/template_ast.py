"""What a parsed template says (Jinja's AST): what the sandbox refuses, the variables it reads, the params
and vars it names, whether it is a plain lookup, a URL's pieces; and the facts of a leaf the digest's
snapshot records (templating.LeafFacts). Imported, with Jinja and the sandbox, only when a template
is parsed: templating.py is the runtime and needs neither.
"""

from __future__ import annotations

from typing import Any

from jinja2 import meta, nodes
from jinja2.exceptions import TemplateError

from .templating import ENGINE_FILTERS, TemplateCompileError, sandboxed

ENV = sandboxed().ENV
refusals = sandboxed().refusals


def check(ast: nodes.Template, allowed: frozenset[str], where: str, source: str) -> set[str]:
    """What the sandbox refuses, unknown filters and tests, unknown variables: a compile error.
    Returns the variables the template reads."""
    refused = refusals(ast)
    if refused:
        raise TemplateCompileError(f"{where}: the sandbox refuses {'; '.join(refused)} in {source!r}")
    missing = sorted({n.name for n in ast.find_all((nodes.Filter, nodes.Test))
                      if n.name not in (ENV.filters if isinstance(n, nodes.Filter) else ENV.tests)})
    if missing:
        raise TemplateCompileError(
            f"{where}: unknown filter or test {', '.join(missing)} in {source!r}; "
            f"engine filters: {', '.join(sorted(ENGINE_FILTERS))}"
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
    return set(undeclared)


def leaf_facts(source: str) -> tuple[Any, ...]:
    """What parsing a leaf tells (templating.LeafFacts), as plain tuples (what marshal holds, for the snapshot)."""
    ast = ENV.parse(source)
    pieces = url_pieces(ast)
    return (tuple(sorted(param_names(ast))), lookup_chain(ast), tuple(sorted(meta.find_undeclared_variables(ast))),
            None if pieces is None else tuple(pieces), tuple(sorted(vars_named(ast))))


def param_names(ast: nodes.Template) -> set[str]:
    """The params.X and params['X'] it names."""
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


def vars_named(ast: nodes.Template) -> set[str]:
    """The `vars.X` and `vars['X']` it names."""
    names = set()
    for node in ast.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "vars":
            names.add(node.attr)
    for item in ast.find_all(nodes.Getitem):
        if isinstance(item.node, nodes.Name) and item.node.name == "vars" and isinstance(item.arg, nodes.Const) \
                and isinstance(item.arg.value, str):
            names.add(item.arg.value)
    return names


def lookup_chain(ast: nodes.Template) -> tuple[str, ...] | None:
    """The keys of an expression that is only `name.key['key']...`, else None."""
    (output,) = ast.body if len(ast.body) == 1 else (None,)
    if not isinstance(output, nodes.Output):
        return None
    exprs = [n for n in output.nodes if not (isinstance(n, nodes.TemplateData) and not n.data.strip())]
    return _chain_of(exprs[0]) if len(exprs) == 1 else None


def _chain_of(node: nodes.Node) -> tuple[str, ...] | None:
    keys = []
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


def url_pieces(ast: nodes.Template) -> list[str | tuple[str, ...]] | None:
    """A URL template that is only text and plain lookups, as its pieces; None for anything else."""
    (output,) = ast.body if len(ast.body) == 1 else (None,)
    if not isinstance(output, nodes.Output):
        return None
    pieces: list[str | tuple[str, ...]] = []
    for node in output.nodes:
        if isinstance(node, nodes.TemplateData):
            pieces.append(node.data)
            continue
        chain = _chain_of(node)
        if chain is None:
            return None
        pieces.append(chain)
    return pieces
