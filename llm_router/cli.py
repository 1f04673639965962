"""The `llm-router` command: argument parsing and output formats; the work is the library's."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Problem, RouterError

if TYPE_CHECKING:
    from .router import Router


def _dirs(args: argparse.Namespace) -> list[Path]:
    if args.dirs:
        return [Path(d) for d in args.dirs]
    from ._resources import catalog_dir

    return [catalog_dir()]


def _print_problems(problems: list[Problem], fmt: str, files: int) -> None:
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity != "error"]
    if fmt == "json":
        print(json.dumps({
            "ok": not errors, "files": files,
            "problems": [{"file": p.file, "line": p.line, "severity": p.severity, "key": p.key, "message": p.message} for p in problems],
        }, indent=2))
        return
    for p in problems:
        if fmt == "github":
            print(_annotation("error" if p.severity == "error" else "warning", p.file, p.line, p.message))
        else:
            print(p)
    summary = f"{len(errors)} error(s), {len(warnings)} warning(s) in {files} file(s)"
    print(("✗ " if errors else "✓ ") + summary, file=sys.stderr)


def _annotation(level: str, file: str, line: int | None, message: str) -> str:
    where = _escape(file).replace(":", "%3A").replace(",", "%2C") + (f",line={line}" if line else "")
    return f"::{level} file={where}::{_escape(message)}"


def _escape(text: str) -> str:
    """GitHub workflow-command escaping (a newline would end the annotation)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def cmd_validate(args: argparse.Namespace) -> int:
    from .contracts import check_dirs
    from .gateway.config import check_gateway_dirs  # gateway.yaml files; needs no web framework

    dirs, env = _dirs(args), dict(os.environ)
    problems, files = check_dirs(dirs, env)
    gateway_problems, gateway_files = check_gateway_dirs(dirs, env)
    problems, files = problems + gateway_problems, files + gateway_files
    if args.strict:
        problems = [Problem(p.file, p.line, p.message, "error", p.key) for p in problems]
    _print_problems(problems, args.format, files)
    return 1 if any(p.severity == "error" for p in problems) else 0


def _router(args: argparse.Namespace) -> Router:
    from .router import Router

    return Router.from_dir(*_dirs(args))


def cmd_models(args: argparse.Namespace) -> int:
    from .pricing import summary

    router = _router(args)
    rows = []
    for name, model in sorted(router.models.items()):
        rows.append({"name": name, "provider": model.provider, "kind": model.kind, "price": summary(model.pricing, model.kind),
                     "capabilities": sorted(model.capabilities), "params": sorted(model.params),
                     "fallbacks": list(model.fallbacks)})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        capabilities = ",".join(r["capabilities"]) or "-"
        print(f"{r['name']:<{width}}  {r['provider']:<18} {r['kind']:<10}  {capabilities:<30} {r['price']}")
    return 0


def _call_args(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --param takes KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
        except RecursionError:
            raise SystemExit(f"error: --param {key}: the JSON value nests too deep") from None
    call: dict[str, Any] = {"params": params}
    if args.system:
        call["messages"] = [{"role": "system", "content": args.system}, {"role": "user", "content": args.prompt}]
    else:
        call["messages"] = [{"role": "user", "content": args.prompt}]
    return call


def cmd_render(args: argparse.Namespace) -> int:
    router = _router(args)
    call = _call_args(args)
    model = router.resolve(args.model)
    if model.kind == "image":
        view = router.render(args.model, prompt=args.prompt, **call["params"])
    else:
        view = router.render(args.model, call["messages"], stream=args.stream, **call["params"])
    print(json.dumps(view, indent=2, ensure_ascii=False))
    return 0


async def _query(router: Router, args: argparse.Namespace) -> int:
    call = _call_args(args)
    async with router:
        model = router.resolve(args.model)
        if args.stream:
            async for chunk in router.stream(args.model, call["messages"], **call["params"]):
                if chunk.is_final:
                    print()
                    _print_meta(chunk.model_name, chunk.provider, chunk.usage, chunk.cost, None)
                else:
                    print(chunk.delta, end="", flush=True)
            return 0
        if model.kind == "image":
            response = await router.query(args.model, prompt=args.prompt, **call["params"])
        else:
            response = await router.query(args.model, call["messages"], **call["params"])
        if args.format == "json":
            print(json.dumps({"content": response.content, "model": response.model_name, "provider": response.provider,
                              "finish_reason": response.finish_reason, "cost": response.cost, "latency": response.latency,
                              "usage": {k: getattr(response.usage, k) for k in response.usage.__slots__}}, indent=2))
        else:
            print(response.content)
            _print_meta(response.model_name, response.provider, response.usage, response.cost, response.latency)
    return 0


def _print_meta(model: str, provider: str, usage: Any, cost: float | None, latency: float | None) -> None:
    cost_text = "unknown" if cost is None else f"${cost:.6f}"
    latency_text = "" if latency is None else f", {latency * 1000:.0f} ms"
    print(f"[{model} via {provider}: {usage.input_tokens} in / {usage.output_tokens} out tokens, cost {cost_text}{latency_text}]",
          file=sys.stderr)


def cmd_query(args: argparse.Namespace) -> int:
    return asyncio.run(_query(_router(args), args))


def cmd_demo(args: argparse.Namespace) -> int:
    from ._resources import catalog_dir
    from .config import load_catalog
    from .demo import start_demo_server
    from .router import Router

    async def run() -> int:
        server, url = await start_demo_server()
        async with server:
            env = {**os.environ, "DEMO_BASE_URL": url}
            catalog, problems = load_catalog([catalog_dir()], env)
            errors = [p for p in problems if p.severity == "error"]
            usable = [p for p in catalog.providers.values() if not p.abstract]
            print(f"validated the bundled catalog: {len(catalog.models)} models, {len(usable)} providers, "
                  f"{len(errors)} error(s)")
            router = Router.from_dir(env=env)
            async with router:
                print(f"demo provider listening on {url} (loopback, no key)")
                response = await router.query("demo-echo", [{"role": "user", "content": args.prompt}], temperature=0.2)
                print(f"query  → {response.content!r}  [{response.usage.input_tokens} in / {response.usage.output_tokens} out, "
                      f"cost ${response.cost:.8f}, {response.latency * 1000:.1f} ms]")
                print("stream → ", end="")
                async for chunk in router.stream("demo-echo", [{"role": "user", "content": args.prompt}]):
                    print(chunk.delta, end="", flush=True)
                print()
        return 0 if not errors else 1

    return asyncio.run(run())


def cmd_test(args: argparse.Namespace) -> int:
    from .contracts import replay_dirs

    started = time.perf_counter()
    report = replay_dirs(_dirs(args), args.provider)
    seconds = time.perf_counter() - started
    passed = sum(r.ok for r in report.results)
    failed = len(report.results) - passed
    if args.format == "json":
        print(json.dumps({
            "ok": report.ok and bool(report.results), "passed": passed, "failed": failed, "seconds": round(seconds, 3),
            "results": [{"name": r.contract.name, "provider": r.contract.provider, "file": r.contract.file,
                         "line": r.contract.line, "ok": r.ok, "diffs": r.diffs, "seconds": round(r.seconds, 4)}
                        for r in report.results],
            "problems": [{"file": p.file, "line": p.line, "severity": p.severity, "message": p.message}
                         for p in report.problems],
        }, indent=2))
    else:
        for p in report.errors:
            print(_annotation("error", p.file, p.line, p.message) if args.format == "github" else p)
        for r in report.results:
            if r.ok:
                print(f"PASS {r.contract.name}")
            elif args.format == "github":
                print(f"FAIL {r.contract.name}")
                print(_annotation("error", r.contract.file, r.contract.line,
                                  f"contract {r.contract.name} failed:\n" + "\n".join(r.diffs)))
            else:
                print(f"FAIL {r.contract.name}  ({r.contract.file}:{r.contract.line})")
                for diff in r.diffs:
                    print(f"     {diff}")
        where = f" for provider {args.provider}" if args.provider else ""
        if report.errors:
            print(f"✗ {len(report.errors)} problem(s) in the contracts or config", file=sys.stderr)
        elif not report.results:
            print(f"✗ no contracts found{where} (providers.d/contracts/*.yaml)", file=sys.stderr)
        else:
            mark = "✓" if failed == 0 else "✗"
            print(f"{mark} {passed} passed, {failed} failed{where} in {seconds:.2f}s", file=sys.stderr)
    if report.errors or failed:
        return 1
    return 0 if report.results else 2


def cmd_record(args: argparse.Namespace) -> int:
    from .recording import contract_name, dump_contract, record

    out = Path(args.out)
    params = _call_args(args)["params"]
    data = asyncio.run(record(_dirs(args), dict(os.environ), args.model, args.prompt, params, args.stream, contract_name(out)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dump_contract(data), encoding="utf-8")
    print(f"wrote {out} ({len(data['replies'])} repl{'y' if len(data['replies']) == 1 else 'ies'}, "
          f"{'error ' + data['expect']['error']['type'] if 'error' in data['expect'] else 'success'}); "
          f"replay it with: llm-router test <config dir>", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .gateway.server import ServeOptions, serve
    except ModuleNotFoundError as exc:
        raise SystemExit(f"error: llm-router serve needs the gateway extra ({exc.name} is not installed): "
                         "pip install 'llm-router[gateway]'") from None
    return serve(ServeOptions([str(d) for d in _dirs(args)], args.host, args.port, args.workers, args.graceful_timeout,
                              args.log_level, not args.no_access_log))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-router", description="A declarative router for LLM and image APIs.")
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check config dirs; exit 0 only when clean")
    validate.add_argument("dirs", nargs="*", help="config dirs (default: the bundled catalog); later ones override earlier")
    validate.add_argument("--format", choices=["text", "json", "github"], default="text")
    validate.add_argument("--strict", action="store_true", help="treat warnings (unset API keys) as errors")
    validate.set_defaults(func=cmd_validate)

    models = sub.add_parser("models", help="list registered models")
    models.add_argument("dirs", nargs="*")
    models.add_argument("--format", choices=["text", "json"], default="text")
    models.set_defaults(func=cmd_models)

    for name, func, text in (("render", cmd_render, "print the exact request a call would send (key masked, nothing sent)"),
                             ("query", cmd_query, "call a model and print the answer")):
        command = sub.add_parser(name, help=text)
        command.add_argument("model")
        command.add_argument("prompt")
        command.add_argument("--dir", dest="dirs", action="append", help="config dir (repeatable; default: bundled)")
        command.add_argument("--system", help="a system message")
        command.add_argument("--param", "-p", action="append", help="KEY=VALUE (VALUE parsed as JSON when it can be)")
        command.add_argument("--stream", action="store_true")
        command.add_argument("--format", choices=["text", "json"], default="text")
        command.set_defaults(func=func)

    test = sub.add_parser("test", help="replay every provider contract offline through the engine; exit 0 only when all pass")
    test.add_argument("dirs", nargs="*", help="config dirs (default: the bundled catalog); later ones override earlier")
    test.add_argument("--provider", help="only the contracts of this provider")
    test.add_argument("--format", choices=["text", "json", "github"], default="text")
    test.set_defaults(func=cmd_test)

    rec = sub.add_parser("record", help="make one real call and write it as a contract, secrets masked")
    rec.add_argument("model")
    rec.add_argument("prompt")
    rec.add_argument("--out", required=True, help="the contract file to write (e.g. providers.d/contracts/acme-chat.yaml)")
    rec.add_argument("--dir", dest="dirs", action="append", help="config dir (repeatable; default: bundled)")
    rec.add_argument("--param", "-p", action="append", help="KEY=VALUE (VALUE parsed as JSON when it can be)")
    rec.add_argument("--stream", action="store_true", help="record a streamed call")
    rec.set_defaults(func=cmd_record, system=None)

    prices = sub.add_parser("prices", help="compare the catalog's prices with a models.dev price data file")
    prices.add_argument("dirs", nargs="*")
    prices.add_argument("--check", required=True, metavar="FILE", help="price data in the models.dev format (api.json)")
    prices.add_argument("--write", action="store_true", help="write the differing prices into the YAML, in place")
    prices.add_argument("--verbose", action="store_true", help="also list the models the price data has no price for")
    prices.set_defaults(func=cmd_prices)
    serve = sub.add_parser("serve", help="run the OpenAI-compatible HTTP gateway (needs the `gateway` extra)")
    serve.add_argument("dirs", nargs="*", help="config dirs (default: the bundled catalog); gateway.yaml from the last that has one")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0: any free port (the log says which)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes sharing the socket")
    serve.add_argument("--graceful-timeout", type=float, default=30.0,
                       help="seconds requests and streams in flight get to finish on SIGTERM")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    serve.add_argument("--no-access-log", action="store_true", help="no log line per request")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="run a real query offline against a loopback demo provider")
    demo.add_argument("prompt", nargs="?", default="hello from llm-router")
    demo.set_defaults(func=cmd_demo)
    return parser


def cmd_prices(args: argparse.Namespace) -> int:
    from .prices import PriceDataError, compare, read_price_data, write

    try:
        data = read_price_data(args.check)
    except PriceDataError as exc:
        raise SystemExit(f"error: {exc}") from None
    diffs, unmatched = compare(_dirs(args), data, dict(os.environ))
    left = write(diffs) if args.write else diffs
    for diff in diffs:
        print(diff if diff in left else f"{diff} (written)")
    if unmatched and args.verbose:
        print(f"no price data for: {', '.join(unmatched)}", file=sys.stderr)
    written = len(diffs) - len(left)
    print(f"{'✓' if not left else '✗'} {len(diffs)} price(s) differ{f', {written} written' if args.write else ''}; "
          f"{len(unmatched)} model(s) not in the price data", file=sys.stderr)
    return 1 if left else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RouterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`llm-router models | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
