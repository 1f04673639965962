"""Schema-checked data → typed, frozen config; every template and JSONPath compiled here, once."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..errors import Problem
from ..paths import JSONPath, PathSyntaxError, common_head, common_prefix, head_steps, heads
from ..templating import CompiledTemplate, TemplateCompileError, compile_structure
from . import model as m
from .load import Doc, KeyPath, merge

REQUEST_VARS = frozenset({"model", "params", "vars"})
BODY_VARS = frozenset({"model", "messages", "prompt", "params", "system", "tools", "tool_choice",
                       "parallel_tool_calls", "response_format", "reasoning", "vars"})
AUTH_VARS = frozenset({"vars"})
TOKEN_REQUEST_VARS = frozenset({"vars", "key"})
PART_VARS = {"text": "part", "image_url": "part", "image_data": "part", "file": "part", "tool_call": "call",
             "tool_result": "result"}
POLL_VARS = frozenset({"model", "params", "submit"})
USAGE_COUNTS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
                "search_units", "characters", "audio_seconds", "video_seconds")  # Usage's fields, in order
FRACTIONAL_COUNTS = frozenset({"audio_seconds", "video_seconds"})
# the body's variables by operation kind (chat and image: BODY_VARS)
KIND_VARS = {"embed": frozenset({"model", "params", "input", "vars"}),
             "rerank": frozenset({"model", "params", "query", "documents", "vars"}),
             "speech": frozenset({"model", "params", "text", "vars"}), "transcribe": frozenset({"model", "params", "file", "vars"}),
             "video": frozenset({"model", "params", "prompt", "vars"})}
# what a reply of each kind holds: the extraction key that is its result
RESULTS = {"chat": ("content",), "image": ("content", "binary"), "embed": ("vectors",), "rerank": ("ranking",),
           "speech": ("binary", "content"), "transcribe": ("content",), "video": ("content", "binary")}


def _given(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The keys the config states; the dataclass defaults (the schema's) cover the rest."""
    return {k: data[k] for k in keys if k in data}


class _Builder:
    """Compiles one doc; a fault is recorded as a problem at its line and the value left out."""

    def __init__(self, doc: Doc, problems: list[Problem], trusted: bool = False) -> None:
        self.doc = doc
        self.problems = problems
        self.trusted = trusted  # vouched for by the digest: see templating.compile_structure

    def fail(self, path: KeyPath, message: str) -> None:
        file, line = self.doc.where(path)
        self.problems.append(Problem(file, line, message, key=".".join(map(str, path))))

    def path(self, value: Any, at: KeyPath) -> JSONPath | None:
        if value is None:
            return None
        key = (value, self.trusted)
        compiled = _PATHS.get(key)
        if compiled is not None:
            return compiled
        try:
            compiled = JSONPath(value, trusted=self.trusted)
        except PathSyntaxError as exc:
            self.fail(at, f"{'.'.join(map(str, at))}: {exc}")
            return None
        if len(_PATHS) >= 8192:
            _PATHS.clear()
        _PATHS[key] = compiled
        return compiled

    def paths(self, value: Any, at: KeyPath) -> tuple[JSONPath, ...]:
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        compiled = (self.path(v, (*at, i) if isinstance(value, list) else at) for i, v in enumerate(items))
        return tuple(p for p in compiled if p is not None)

    def template(self, value: Any, at: KeyPath, allowed: frozenset[str], url: bool = False) -> CompiledTemplate | None:
        """`url`: a path or a poll URL, where each expression places one percent-encoded value."""
        if value is None:
            return None
        try:
            return _compile_cached(value, allowed, ".".join(map(str, at)), url, self.trusted)
        except TemplateCompileError as exc:
            self.fail(_faulty_leaf(value, at, allowed, url), str(exc))
            return None


_COMPILED: dict[tuple[str, frozenset[str], str, bool, bool], CompiledTemplate] = {}
# a compiled JSONPath holds no state: one per distinct expression (and trust: a trusted one that needs the
# library is parsed by it on first use, an untrusted one at load, so a syntax error has a file and line)
_PATHS: dict[tuple[str, bool], JSONPath] = {}


def _compile_cached(value: Any, allowed: frozenset[str], where: str, url: bool, trusted: bool) -> CompiledTemplate:
    """compile_structure, once per distinct input: the providers that extend one base share its
    templates, and compiling Jinja is most of the cost of loading the catalog. A compiled template
    holds no state between renders, so sharing one is safe."""
    key = (repr(value), allowed, where, url, trusted)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = compile_structure(value, allowed, where, url, trusted)
        if len(_COMPILED) >= 4096:
            _COMPILED.clear()
        _COMPILED[key] = compiled
    return compiled


def _faulty_leaf(value: Any, at: KeyPath, allowed: frozenset[str], url: bool) -> KeyPath:
    """The path of the innermost part that does not compile, so the error names its own line."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in children:
        try:
            compile_structure(item, allowed, url=url)
        except TemplateCompileError:
            return _faulty_leaf(item, (*at, key), allowed, url)
    return at


def _usage(b: _Builder, data: dict[str, Any] | None, at: KeyPath) -> m.UsagePaths:
    data = data or {}
    counts = {k: b.paths(data.get(k), (*at, k)) for k in USAGE_COUNTS}
    counted = tuple((i, paths, name not in FRACTIONAL_COUNTS) for i, (name, paths) in enumerate(counts.items()) if paths)
    return m.UsagePaths(**counts, head=common_head([p for paths in counts.values() for p in paths]), counted=counted)


def _tool_calls(b: _Builder, data: dict[str, Any] | None, at: KeyPath) -> m.ToolCallPaths | None:
    if data is None:
        return None
    return m.ToolCallPaths(**{k: b.path(data.get(k), (*at, k)) for k in m.ToolCallPaths.__dataclass_fields__})


def _extra(b: _Builder, data: dict[str, Any] | None, at: KeyPath) -> Mapping[str, JSONPath]:
    compiled = {k: b.path(v, (*at, k)) for k, v in (data or {}).items()}
    return MappingProxyType({k: p for k, p in compiled.items() if p is not None})


def _state_block(b: _Builder, data: dict[str, Any] | None, at: KeyPath) -> m.StateBlock | None:
    if data is None:
        return None
    index = b.path(data["index"], (*at, "index"))
    if index is None:
        return None
    return m.StateBlock(index, b.path(data.get("start"), (*at, "start")), _extra(b, data.get("append"), (*at, "append")),
                        _extra(b, data.get("json"), (*at, "json")))


def _job_url(b: _Builder, data: dict[str, Any], at: KeyPath) -> m.JobUrl | None:
    url = m.JobUrl(b.path(data.get("from"), (*at, "from")),
                   b.template(data.get("template"), (*at, "template"), POLL_VARS, url=True))
    return url if url.from_ is not None or url.template is not None else None


def _extraction(b: _Builder, data: dict[str, Any], at: KeyPath, kind: str, in_poll: bool = False) -> m.Extraction | None:
    shapes = RESULTS[kind]
    given = [key for key in ("content", "vectors", "ranking", "binary") if key in data]
    if not any(key in shapes for key in given):
        b.fail(at, f"{'.'.join(map(str, at))}: a{'n' if kind[0] in 'aeiou' else ''} {kind} operation's reply needs "
               f"{' or '.join(f'`{k}`' for k in shapes)}" + (f" (it has {', '.join(f'`{k}`' for k in given)})" if given else ""))
        return None
    if in_poll and "binary" in data:
        b.fail((*at, "binary"), f"{'.'.join(map(str, at))}: a poll result is read as JSON; `binary` is for the operation's own reply")
        return None
    content = b.path(data.get("content"), (*at, "content"))
    if content is None and "content" in data:
        return None
    if "url" in data and not in_poll:
        b.fail((*at, "url"), f"{'.'.join(map(str, at))}.url: a result at another URL needs a job to poll; "
                             "declare it under `poll.result`, or remove it")
    empty = data.get("empty")
    headers: dict[str, str] = {}
    extra = {k: _reply_value(b, v, (*at, "extra", k), f"extra.{k}", headers, in_poll) for k, v in data.get("extra", {}).items()}
    finish_reason = _reply_value(b, data.get("finish_reason"), (*at, "finish_reason"), "finish_reason", headers, in_poll)
    reply_id = _reply_value(b, data.get("id"), (*at, "id"), "id", headers, in_poll)
    usage = _usage(b, data.get("usage"), (*at, "usage"))
    tool_calls = _tool_calls(b, data.get("tool_calls"), (*at, "tool_calls"))
    reasoning = b.path(data.get("reasoning"), (*at, "reasoning"))
    state = b.path(data.get("state"), (*at, "state"))
    reply_heads = None
    if kind == "chat":
        items = tool_calls.items if tool_calls is not None else None
        reply_heads = heads([
            *(head_steps(path) if path is not None else None for path in (content, finish_reason, reply_id)),
            # tool calls without `items`: the reply itself is one
            (head_steps(items) if items is not None else ()) if tool_calls is not None else None,
            *(head_steps(path) if path is not None else None for path in (reasoning, state)),
            *(head_steps(path) for path in extra.values() if path is not None),
            *(head_steps(path) for _, paths, _ in usage.counted for path in paths),
        ])
    return m.Extraction(
        content=content,
        **_given(data, "content_kind"),
        finish_reason=finish_reason,
        id=reply_id,
        usage=usage,
        tool_calls=tool_calls,
        reasoning=reasoning,
        state=state,
        extra=MappingProxyType({k: p for k, p in extra.items() if p is not None}),
        url=_job_url(b, data["url"], (*at, "url")) if "url" in data and in_poll else None,
        empty=m.EmptyResult(empty["kind"], b.path(empty.get("message"), (*at, "empty", "message"))) if empty else None,
        vectors=_vectors(b, data.get("vectors"), (*at, "vectors")),
        ranking=_ranking(b, data.get("ranking"), (*at, "ranking")),
        binary=m.BinaryBody(**data["binary"]) if "binary" in data else None,
        headers=MappingProxyType(headers),
        heads=reply_heads,
    )


def _reply_value(b: _Builder, value: Any, at: KeyPath, field: str, headers: dict[str, str], in_poll: bool) -> JSONPath | None:
    """A JSONPath, or `{header: name}`, recorded in `headers` (the field is then None)."""
    if not isinstance(value, dict):
        return b.path(value, at)
    if in_poll:
        b.fail(at, f"{'.'.join(map(str, at))}: a poll result cannot read reply headers; use a JSONPath")
    else:
        headers[field] = value["header"].lower()
    return None


def _vectors(b: _Builder, data: dict[str, Any] | None, at: KeyPath) -> m.VectorPaths | None:
    if data is None:
        return None
    items, vector = b.path(data["items"], (*at, "items")), b.path(data["vector"], (*at, "vector"))
    if items is None or vector is None:
        return None
    return m.VectorPaths(items, vector, b.path(data.get("index"), (*at, "index")), **_given(data, "encoding"))


def _ranking(b: _Builder, data: dict[str, Any] | None, at: KeyPath) -> m.RankingPaths | None:
    if data is None:
        return None
    paths = [b.path(data[k], (*at, k)) for k in ("items", "index", "score")]
    items, index, score = paths
    return m.RankingPaths(items, index, score) if items is not None and index is not None and score is not None else None


def _conversation(b: _Builder, data: dict[str, Any], at: KeyPath) -> m.Conversation:
    parts = data.get("parts", {})
    return m.Conversation(
        wire=data["wire"],
        **_given(data, "system", "merge_consecutive", "text_content", "structured_output", "forced_tools_with_reasoning"),
        roles=MappingProxyType(dict(data.get("roles", {}))),
        message=b.template(data.get("message"), (*at, "message"), frozenset({"role", "parts"})),
        parts=m.PartTemplates(**{
            kind: b.template(parts.get(kind), (*at, "parts", kind), frozenset({var})) for kind, var in PART_VARS.items()
        }),
        tool=b.template(data.get("tool"), (*at, "tool"), frozenset({"tool"})),
        cache=m.CacheBreakpoints(**{**data["cache"], "marker": MappingProxyType(dict(data["cache"]["marker"]))})
        if "cache" in data else None,
        tool_choice=MappingProxyType({
            k: t for k, v in data.get("tool_choice", {}).items()
            if (t := b.template(v, (*at, "tool_choice", k), frozenset({"name", "parallel"}))) is not None
        }),
    )


def _errors(b: _Builder, data: dict[str, Any] | None) -> m.ErrorPolicy:
    data = data or {}
    retry = data.get("retry", {})
    rules = []
    for i, rule in enumerate(data.get("classify", [])):
        when = None
        if "when" in rule:
            path = b.path(rule["when"]["path"], ("errors", "classify", i, "when", "path"))
            when = m.ClassifyWhen(path, frozenset(rule["when"]["in"])) if path else None
        rules.append(m.ClassifyRule(frozenset(rule["status"]), rule["kind"], when))
    return m.ErrorPolicy(
        message=b.path(data.get("message"), ("errors", "message")),
        code=b.path(data.get("code"), ("errors", "code")),
        retry=m.RetryPolicy(
            backoff=m.Backoff(**retry.get("backoff", {})),
            **_given(retry, "max_attempts", "max_wait_s"),
            **({"retry_after": tuple(retry["retry_after"])} if "retry_after" in retry else {}),  # type: ignore[arg-type]
        ),
        classify=tuple(rules),
    )


def _handler(b: _Builder, data: dict[str, Any], at: KeyPath) -> m.StreamHandler:
    delta = b.path(data.get("delta"), (*at, "delta"))
    finish_reason = b.path(data.get("finish_reason"), (*at, "finish_reason"))
    usage = _usage(b, data["usage"], (*at, "usage")) if "usage" in data else None
    tool_calls = _tool_calls(b, data.get("tool_calls"), (*at, "tool_calls"))
    reasoning = b.path(data.get("reasoning"), (*at, "reasoning"))
    usage_paths = [p for name in USAGE_COUNTS for p in getattr(usage, name)] if usage is not None else []
    items = tool_calls.items if tool_calls is not None else None
    return m.StreamHandler(
        delta=delta,
        finish_reason=finish_reason,
        usage=usage,
        **_given(data, "end"),
        error=b.path(data.get("error"), (*at, "error")),
        tool_calls=tool_calls,
        reasoning=reasoning,
        state=b.path(data.get("state"), (*at, "state")),
        state_block=_state_block(b, data.get("state_block"), (*at, "state_block")),
        extra=_extra(b, data.get("extra"), (*at, "extra")),
        heads=heads([
            head_steps(delta) if delta is not None else None,
            head_steps(finish_reason) if finish_reason is not None else None,
            common_prefix(usage_paths) if usage is not None else None,
            # tool calls without `items`: the event itself is one
            (head_steps(items) if items is not None else ()) if tool_calls is not None else None,
            head_steps(reasoning) if reasoning is not None else None,
        ]),
    )


def _stream(b: _Builder, data: dict[str, Any], body: Any, at: KeyPath) -> m.StreamSpec | None:
    merged_body = merge(body, data["body"]) if "body" in data and body is not None else data.get("body", body)
    compiled_body = b.template(merged_body if merged_body is not None else {}, (*at, "body"), BODY_VARS)
    if compiled_body is None:
        return None
    route_by = data.get("route_by")
    framing = data.get("format", "sse")
    if route_by == "event" and framing == "ndjson":
        b.fail((*at, "route_by"), "stream.route_by: `event` is the framing's event name, and NDJSON lines have none; "
                                  "route by a JSONPath into each line instead (e.g. route_by: $.type)")
    if "done" in data and framing != "sse":
        b.fail((*at, "done"), f"stream.done is an SSE data value; a {framing} stream ends with its body (or an event "
                              "whose handler says `end: true`)")
    if "exception_status" in data and framing != "aws_eventstream":
        b.fail((*at, "exception_status"), "stream.exception_status names the exception messages of an aws_eventstream; "
                                          f"a {framing} stream has none (remove it, or set `format: aws_eventstream`)")
    return m.StreamSpec(
        body=compiled_body,
        own_keys=frozenset(str(k) for k in data.get("body") or {}),
        path=b.template(data.get("path"), (*at, "path"), REQUEST_VARS, url=True),
        query=b.template(data.get("query"), (*at, "query"), REQUEST_VARS),
        route_by=route_by,
        route_path=b.path(route_by, (*at, "route_by")) if route_by and route_by != "event" else None,
        on=MappingProxyType({k: _handler(b, v, (*at, "on", k)) for k, v in data.get("on", {}).items()}),
        handler=_handler(b, data["handler"], (*at, "handler")) if "handler" in data else None,
        error=b.path(data.get("error"), (*at, "error")),
        done=data.get("done"),
        exception_status=MappingProxyType(dict(data.get("exception_status", {}))),
        **_given(data, "format", "max_frame_bytes", "unknown_event"),
    )


def _poll(b: _Builder, data: dict[str, Any], at: KeyPath, kind: str) -> m.PollSpec | None:
    states = {k: frozenset(m.status_key(v) for v in data.get(k, [])) for k in ("pending", "done", "failed")}
    seen: dict[tuple[bool, Any], str] = {}
    for bucket, keys in states.items():
        for key in keys:
            if key in seen:
                shown = repr(key[1]) if isinstance(key[1], str) else json.dumps(key[1])
                b.fail((*at, bucket), f"poll status {shown} is in both `{seen[key]}` and `{bucket}`; each status belongs to one list")
            seen[key] = bucket
    poll_url = _job_url(b, data["url"], (*at, "url"))
    status = b.path(data["status"], (*at, "status"))
    result = _extraction(b, data["result"], (*at, "result"), kind, in_poll=True)
    failed_when = data.get("failed_when")
    if status is None or result is None or poll_url is None:
        return None
    backoff = data.get("backoff")
    return m.PollSpec(
        url=poll_url,
        status=status,
        pending=states["pending"],
        done=states["done"],
        failed=states["failed"],
        result=result,
        backoff=m.PollBackoff(**backoff) if backoff is not None else None,
        **_given(data, "method", "interval_s", "deadline_s", "max_polls", "unknown", "missing"),
        message=b.path(data.get("message"), (*at, "message")),
        failed_when=_failed_when(b, failed_when, (*at, "failed_when")) if failed_when else None,
    )


def _failed_when(b: _Builder, data: dict[str, Any], at: KeyPath) -> m.FailedWhen | None:
    path = b.path(data["path"], (*at, "path"))
    if path is None:
        return None
    return m.FailedWhen(path, b.path(data.get("message"), (*at, "message")), b.path(data.get("code"), (*at, "code")))


def _cancel(b: _Builder, data: dict[str, Any], at: KeyPath) -> m.CancelSpec | None:
    url = _job_url(b, data["url"], (*at, "url"))
    return m.CancelSpec(data["method"], url, **_given(data, "timeout_s")) if url is not None else None


def _operation(b: _Builder, kind: str, data: dict[str, Any]) -> m.Operation | None:
    at: KeyPath = ("operations", kind)
    path = b.template(data["path"], (*at, "path"), REQUEST_VARS, url=True)
    body = b.template(data.get("body"), (*at, "body"), KIND_VARS.get(kind, BODY_VARS))
    placement = data.get("params", "none")
    params = m.ParamPlacement("into", placement["merge_into"]) if isinstance(placement, dict) else m.ParamPlacement(placement)
    response = _extraction(b, data["response"], (*at, "response"), kind) if "response" in data else None
    body_ok = body is not None or "body" not in data  # a broken body is reported once, not again as the stream's
    stream = _stream(b, data["stream"], data.get("body"), (*at, "stream")) if "stream" in data and body_ok else None
    poll = _poll(b, data["poll"], (*at, "poll"), kind) if "poll" in data else None
    if "arrays" in data and data.get("encoding", "json") == "json":
        b.fail((*at, "arrays"), f"operations.{kind}.arrays: applies to multipart and form bodies only (set `encoding`)")
    if "stream" in data and kind in KIND_VARS:
        b.fail((*at, "stream"), f"operations.{kind}.stream: only chat operations stream; remove `stream`")
    if path is None or (response is None and poll is None):
        return None
    return m.Operation(
        kind=kind,
        path=path,
        **_given(data, "method"),
        query=b.template(data.get("query"), (*at, "query"), REQUEST_VARS),
        headers=b.template(data.get("headers"), (*at, "headers"), REQUEST_VARS),
        body=body,
        params=params,
        response=response,
        stream=stream,
        poll=poll,
        cancel=_cancel(b, data["cancel"], (*at, "cancel")) if "cancel" in data else None,
        conversation=_conversation(b, data["conversation"], (*at, "conversation")) if "conversation" in data else None,
        call_ids=m.CallIds(**data["call_ids"]) if "call_ids" in data else None,
        finish_reasons=MappingProxyType(dict(data.get("finish_reasons", {}))),
        **_given(data, "encoding", "arrays", "max_file_bytes"),
        file_params=frozenset(data.get("file_params", ())),
    )


def _token_exchange(b: _Builder, data: dict[str, Any]) -> m.TokenExchange | None:
    at: KeyPath = ("auth", "token")
    url = b.template(data["url"], (*at, "url"), AUTH_VARS)
    form = b.template(data["form"], (*at, "form"), TOKEN_REQUEST_VARS)
    access_token = b.path(data.get("access_token", "$.access_token"), (*at, "access_token"))
    expires_in = b.path(data.get("expires_in", "$.expires_in"), (*at, "expires_in"))
    if url is None or form is None or access_token is None or expires_in is None:
        return None
    return m.TokenExchange(url, form, access_token, expires_in,
                           headers=b.template(data.get("headers"), (*at, "headers"), TOKEN_REQUEST_VARS),
                           **_given(data, "lifetime_s", "refresh_before_s"))


def _auth(b: _Builder, data: dict[str, Any] | None) -> m.Auth | None:
    if not data:
        return None
    google, sigv4 = data.get("google_service_account"), data.get("aws_sigv4")
    region = b.template(sigv4["region"], ("auth", "aws_sigv4", "region"), AUTH_VARS) if sigv4 else None
    return m.Auth(
        **_given(data, "env", "header", "scheme", "query", "optional"),
        token=_token_exchange(b, data["token"]) if "token" in data else None,
        google_service_account=m.GoogleServiceAccount(**{**google, "scopes": tuple(google["scopes"])}) if google else None,
        aws_sigv4=m.AwsSigV4(sigv4["service"], region) if sigv4 and region else None,
    )


def _vars(data: dict[str, Any]) -> Mapping[str, m.Var]:
    return MappingProxyType({
        name: m.Var(env=tuple(var["env"]) if isinstance(var["env"], list) else (var["env"],), **_given(var, "default", "description"))
        for name, var in data.items()
    })


def build_provider(doc: Doc, problems: list[Problem], trusted: bool = False) -> m.ProviderConfig:
    """`trusted`: every file the doc came from is vouched for by the digest (templating.compile_structure)."""
    b = _Builder(doc, problems, trusted)
    data = doc.data
    operations = {}
    for kind, op in data.get("operations", {}).items():
        compiled = _operation(b, kind, op)
        if compiled is not None:
            operations[kind] = compiled
    return m.ProviderConfig(
        name=data["name"],
        base_url=data.get("base_url", "").rstrip("/"),
        file=doc.file,
        **_given(data, "description", "price_sheet_id", "abstract", "max_connections"),
        base_url_env=data.get("base_url_env"),
        vars=_vars(data.get("vars", {})),
        auth=_auth(b, data.get("auth")),
        headers=MappingProxyType(dict(data.get("headers", {}))),
        hosts=tuple(data.get("hosts", ())),
        timeouts=m.Timeouts(**data.get("timeouts", {})),
        operations=MappingProxyType(operations),
        errors=_errors(b, data.get("errors")),
    )


def _pricing(data: Any) -> m.Pricing | None:
    if data == "unknown":
        return None
    tiers = sorted((m.PriceTier(**t) for t in data.get("tiers", ())), key=lambda t: t.above_input_tokens)
    by_quality = {q: MappingProxyType(dict(sizes)) for q, sizes in data.get("per_image_by_quality", {}).items()}
    by_param = data.get("per_output_second_by")
    return m.Pricing(**{**data, "per_image_by_size": MappingProxyType(data.get("per_image_by_size", {})),
                        "tiers": tuple(tiers), "per_image_by_quality": MappingProxyType(by_quality),
                        "per_output_second_by": m.PriceByParam(by_param["param"], MappingProxyType(dict(by_param["prices"])))
                        if by_param else None,
                        "seconds_from": m.SecondsFrom(**data["seconds_from"]) if "seconds_from" in data else None})


def _deployments(data: list[dict[str, Any]], upstream: str, pricing: m.Pricing | None) -> tuple[m.Deployment, ...]:
    providers = [d["provider"] for d in data]
    out = []
    for i, d in enumerate(data):
        default_name = d["provider"] if providers.count(d["provider"]) == 1 else f"{d['provider']}#{i}"
        out.append(m.Deployment(
            provider=d["provider"],
            name=d.get("name", default_name),
            upstream=d.get("upstream", upstream),
            key_env=d.get("key_env"),
            base_url_env=d.get("base_url_env"),
            **_given(d, "weight"),
            limits=m.Limits(**d.get("limits", {})),
            pricing=_pricing(d["pricing"]) if "pricing" in d else pricing,
        ))
    return tuple(out)


def _reasoning(data: dict[str, Any] | None) -> m.Reasoning | None:
    if data is None:
        return None
    return m.Reasoning(
        efforts=MappingProxyType({k: m.ReasoningTarget(**v) for k, v in data["efforts"].items()}),
        budget=m.ReasoningBudget(**data["budget"]) if "budget" in data else None,
        max_tokens=m.ReasoningMaxTokens(**data["max_tokens"]) if "max_tokens" in data else None,
        drops=frozenset(data.get("drops", ())),
    )


def _cooldown(data: dict[str, Any] | None) -> m.Cooldown | None:
    return m.Cooldown(**data) if data is not None else None


def build_model(doc: Doc) -> m.ModelConfig:
    data = doc.data
    pricing = _pricing(data["pricing"])
    upstream = data.get("upstream", doc.name)
    deployments = _deployments(data["deployments"], upstream, pricing) if "deployments" in data else ()
    return m.ModelConfig(
        name=doc.name,
        provider=deployments[0].provider if deployments else data["provider"],
        upstream=upstream,
        pricing=pricing,
        file=doc.file,
        **_given(data, "kind", "description", "streaming", "strategy", "structured_output"),
        limits=m.Limits(**data.get("limits", {})),
        params=frozenset(data.get("params", ())),
        capabilities=frozenset(data.get("capabilities", ())),
        reasoning=_reasoning(data.get("reasoning")),
        defaults=MappingProxyType(dict(data.get("defaults", {}))),
        rename=MappingProxyType(dict(data.get("rename", {}))),
        fallbacks=tuple(data.get("fallbacks", ())),
        on_unsupported_param=data.get("on_unsupported_param"),
        deployments=deployments,
        cooldown=_cooldown(data.get("cooldown")),
    )


def build_settings(doc: Doc | None) -> m.RouterSettings:
    data = doc.data if doc is not None else {}
    defaults = m.RouterSettings()
    return m.RouterSettings(
        on_unsupported_param=data.get("on_unsupported_param", defaults.on_unsupported_param),
        fallback_on=frozenset(data["fallback_on"]) if "fallback_on" in data else defaults.fallback_on,
        limit_wait_s=data.get("limit_wait_s", defaults.limit_wait_s),
        log_content=data.get("log_content", defaults.log_content),
        prompt_cache=data.get("prompt_cache", defaults.prompt_cache),
        strategy=data.get("strategy", defaults.strategy),
        cooldown=_cooldown(data.get("cooldown")),
        budgets=tuple(m.Budget(**b) for b in data.get("budgets", ())),
        state=m.StateSettings(**data.get("state", {})),
    )
