"""The caller's input, checked before anything is sent: messages, prompt and params are JSON data
of sane size; and the rough token estimate the tpm limit reserves."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from .config.model import ModelConfig
from .engine import RequestOptions
from .engine.conversation import NO_OPTIONS, STATE_KEY
from .errors import InvalidRequestError
from .files import FileInput
from .templating import last_user_text

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MAX_INPUT_CHARS = 10_000_000  # the characters of a call's messages, prompt and params together
MAX_DEPTH = 64  # how deep a value a caller passes may nest (a tool's JSON Schema nests a few levels per object)


def input_text(messages: Any, prompt: Any) -> str:
    return json.dumps(messages, ensure_ascii=False) if messages else (prompt or "")


def estimate_tokens(messages: Any, prompt: Any, params: Mapping[str, Any]) -> int:
    """A rough reservation for the tpm limit (4 characters a token), settled after the reply."""
    text = input_text(messages, prompt)
    asked = next((params[k] for k in ("max_tokens", "max_completion_tokens", "max_output_tokens") if k in params), 0)
    return len(text) // 4 + (asked if type(asked) is int and 0 < asked <= MAX_INPUT_CHARS else 0)


def check_input(model: ModelConfig, messages: Any, prompt: Any, params: Mapping[str, Any]) -> tuple[Any, str | None]:
    """Reject malformed calls before anything is sent, naming the field; derive the prompt for image
    models. Every value is JSON data (no NaN, no sets or objects, string keys, valid UTF-8), nests at
    most MAX_DEPTH levels, and all of them together hold at most MAX_INPUT_CHARS characters."""
    if model.kind not in ("chat", "image"):
        from .operations import METHODS

        raise InvalidRequestError(f"{model.name!r} is a{'n' if model.kind[0] in 'aeiou' else ''} {model.kind} model: "
                                  f"call router.{METHODS[model.kind]}(...)")
    size = 0
    if messages is not None:
        if not isinstance(messages, list) or not messages:
            raise InvalidRequestError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
        for i, message in enumerate(messages):
            size += _check_message(message, i)
            if size > MAX_INPUT_CHARS:
                _check_total(size, f"messages[{i}]")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InvalidRequestError(f"prompt must be a string, got {type(prompt).__name__}")
        size += json_size(prompt, "prompt")
        _check_total(size, "prompt")
    if prompt is None and messages is None:
        raise InvalidRequestError("give messages=[...] or prompt='...'")
    if model.kind == "image" and prompt is None:
        prompt = last_user_text(messages or [])
        if not prompt:
            raise InvalidRequestError(f"{model.name} is an image model: give prompt='...' or a user message")
    if messages is None and model.kind == "chat":
        messages = [{"role": "user", "content": prompt}]
    if params:
        _check_total(size + check_params(params), "params")
    return messages, prompt


def check_params(params: Mapping[str, Any], where: str = "param") -> int:
    """Each param is JSON data (a file param, read into a FileInput, is checked by its operation);
    returns the characters they hold."""
    return sum(json_size(value, f"{where} {key!r}") for key, value in params.items() if not isinstance(value, FileInput))


def _check_total(size: int, where: str) -> None:
    if size > MAX_INPUT_CHARS:
        raise InvalidRequestError(f"the call holds more than {MAX_INPUT_CHARS:,} characters (reached at {where}); "
                                  "send less")


# per part type: its field, the types that field may have, and the string fields inside it
_PARTS: dict[str, tuple[tuple[type, ...], tuple[str, ...]]] = {
    "text": ((str,), ()), "image_url": ((str, dict), ("url", "detail")), "file": ((dict,), ("file_data", "filename", "file_id"))}


def _check_message(message: Any, i: int) -> int:
    """One OpenAI-style message: its role, its content's shape, its provider state; all JSON data."""
    if type(message) is dict and len(message) == 2 and type(message.get("content")) is str \
            and message.get("role") in ROLES and message["content"].isascii():
        return len(message["content"]) + 8  # the common message, `{"role": "user", "content": "..."}`
    where = f"messages[{i}]"
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise InvalidRequestError(f"{where} must be a dict with a string 'role'")
    role = message["role"]
    if role not in ROLES:
        raise InvalidRequestError(f"{where} has unknown role {role!r}; roles: {', '.join(sorted(ROLES))}")
    content = message.get("content")
    if not isinstance(content, (str, list)) and not (content is None and role == "assistant"):
        raise InvalidRequestError(f"{where}.content must be a string or a list of content parts")
    for j, part in enumerate(content if isinstance(content, list) else ()):
        _check_part(part, f"{where}.content[{j}]")
    state = message.get(STATE_KEY)
    if state is not None and not (isinstance(state, dict) and isinstance(state.get("wire"), str)
                                  and isinstance(state.get("data"), (list, type(None)))):
        raise InvalidRequestError(f"{where}.{STATE_KEY} must be {{'wire': ..., 'data': [...]}} as a reply's message "
                                  "carries it; pass the assistant message back unchanged, or leave it out")
    name = message.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidRequestError(f"{where}.name must be a string")
    return json_size(message, where)


def _check_part(part: Any, where: str) -> None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise InvalidRequestError(f"{where} must be a dict with a string 'type' (text, image_url, file, ...)")
    kind = part["type"]
    if kind not in _PARTS:
        return  # another kind: passed on as it is, or refused by a wire format that cannot take it
    types, inner_fields = _PARTS[kind]
    inner = part.get(kind)
    if not isinstance(inner, types):
        raise InvalidRequestError(f"{where}.{kind} must be a {' or '.join(t.__name__ for t in types)} in a {kind!r} part")
    for field in inner_fields:
        if isinstance(inner, dict) and inner.get(field) is not None and not isinstance(inner[field], str):
            raise InvalidRequestError(f"{where}.{kind}.{field} must be a string")


class _NotJSON(Exception):
    """Where in a value the walk found what JSON cannot carry; the path is filled in on the way out."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []


def json_size(value: Any, where: str) -> int:
    """The characters a JSON value holds, or InvalidRequestError naming the part that is not JSON
    data (NaN or Infinity, a set, an object, a key that is not a string, a lone surrogate) or that
    nests deeper than MAX_DEPTH."""
    try:
        return _walk(value, 0)
    except _NotJSON as bad:
        raise InvalidRequestError(f"{where}{''.join(reversed(bad.path))} {bad.problem}") from None


def _check_walked(total: int) -> None:
    """The walk stops where a value passes the limit (one list holding one big list many times
    would take as long to walk as to write out)."""
    if total > MAX_INPUT_CHARS:
        raise _NotJSON(f"holds more than {MAX_INPUT_CHARS:,} characters; send less")


def _walk(value: Any, depth: int) -> int:
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _NotJSON("is not valid UTF-8 text (lone surrogates)") from None
        return len(value)
    if value is None or isinstance(value, (bool, int)):
        return 1
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJSON(f"is {value}, which JSON cannot carry")
        return 1
    if isinstance(value, (dict, list, tuple)) and depth >= MAX_DEPTH:
        raise _NotJSON(f"nests deeper than {MAX_DEPTH} levels")
    total = 0
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) and (isinstance(key, bool) or not isinstance(key, int)):
                raise _NotJSON(f"has the key {key!r} ({type(key).__name__}); JSON keys are strings")
            try:
                total += len(str(key)) + _walk(item, depth + 1)
                _check_walked(total)
            except _NotJSON as bad:
                bad.path.append(f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]")
                raise
        return total
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            try:
                total += _walk(item, depth + 1) + 1
                _check_walked(total)
            except _NotJSON as bad:
                bad.path.append(f"[{i}]")
                raise
        return total
    name = type(value).__name__
    raise _NotJSON(f"is not JSON data (got {'an' if name[0] in 'aeiou' else 'a'} {name})")


# --- tools, tool history and output formats ---------------------------------------------------------

_TOOL_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
TOOL_CHOICES = ("auto", "none", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")


CACHE_OVERRIDES = {"system": bool, "tools": bool, "last_turns": int}
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")
RESERVED_HEADERS = frozenset({"authorization", "host", "content-length", "content-type", "transfer-encoding",
                              "connection", "cookie", "proxy-authorization", "te", "upgrade", "keep-alive"})


def check_headers(headers: Any) -> dict[str, str] | None:
    """Extra request headers a caller sends upstream: names lower-cased; CR/LF, non-ASCII and the
    headers that carry credentials or framing are refused."""
    if headers is None:
        return None
    if not isinstance(headers, Mapping):
        raise InvalidRequestError("extra_headers must be a mapping of header names to string values")
    checked = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidRequestError(f"extra_headers: {name!r} is not a header name")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidRequestError(f"extra_headers: {name!r} may not be set by a caller")
        if not isinstance(value, str) or not value.isascii() or any(c in value for c in "\r\n\0"):
            raise InvalidRequestError(f"extra_headers: the value of {name!r} must be ASCII text without CR/LF")
        checked[name.lower()] = value
    return checked or None


def check_options(messages: Any, tools: Any, tool_choice: Any, parallel_tool_calls: Any,
                  response_format: Any, prompt_cache: Any = None, extra_headers: Any = None) -> RequestOptions:
    """The caller's tools, tool_choice, parallel_tool_calls, response_format, prompt_cache and extra
    headers, and the tool history in `messages`, checked before anything is sent."""
    headers = check_headers(extra_headers)
    if prompt_cache is not None and not isinstance(prompt_cache, bool):
        if not isinstance(prompt_cache, dict) or any(
                k not in CACHE_OVERRIDES or type(v) is not CACHE_OVERRIDES[k] for k, v in prompt_cache.items()):
            raise InvalidRequestError("prompt_cache must be true, false or {'system': bool, 'tools': bool, 'last_turns': int}")
        if not 0 <= prompt_cache.get("last_turns", 0) <= 8:
            raise InvalidRequestError("prompt_cache last_turns must be from 0 to 8")
    if tools is None and tool_choice is None and parallel_tool_calls is None and response_format is None and (
            prompt_cache is None or isinstance(prompt_cache, bool)) and not _has_tool_history(messages):
        if not prompt_cache and headers is None:
            return NO_OPTIONS  # the common call: nothing to check
        return RequestOptions(prompt_cache=prompt_cache, headers=headers)
    names = _check_tools(tools)
    if tool_choice is not None:
        _check_tool_choice(tool_choice, names)
        json_size(tool_choice, "tool_choice")
    if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
        raise InvalidRequestError(f"parallel_tool_calls must be true or false, got {type(parallel_tool_calls).__name__}")
    if response_format is not None:
        _check_response_format(response_format)
    _check_total(json_size(tools, "tools") + json_size(response_format, "response_format"), "tools and response_format")
    if isinstance(messages, list):
        _check_tool_history(messages)
    return RequestOptions(tools, tool_choice, parallel_tool_calls, response_format, prompt_cache, headers)


def _check_tools(tools: Any) -> set[str]:
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise InvalidRequestError("tools must be a list of {'type': 'function', 'function': {...}} dicts")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise InvalidRequestError(f"{where} must be {{'type': 'function', 'function': {{'name': ..., 'parameters': {{...}}}}}}")
        function = tool["function"]
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise InvalidRequestError(f"{where}.function.name must be 1-128 letters, digits, '_', '-', '.' or ':' (got {name!r})")
        if name in names:
            raise InvalidRequestError(f"{where}: two tools are named {name!r}")
        names.add(name)
        parameters = function.get("parameters")
        if parameters is not None and (not isinstance(parameters, dict) or parameters.get("type", "object") != "object"):
            raise InvalidRequestError(f"{where}.function.parameters must be a JSON Schema object with type 'object'")
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidRequestError(f"{where}.function.description must be a string")
    return names


def _check_tool_choice(choice: Any, names: set[str]) -> None:
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise InvalidRequestError(f"tool_choice must be one of {', '.join(TOOL_CHOICES)} or "
                                      f"{{'type': 'function', 'function': {{'name': ...}}}}, got {choice!r}")
        if choice == "required" and not names:
            raise InvalidRequestError("tool_choice 'required' needs tools")
        return
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) and isinstance(choice.get("function"), dict) else None
    if not isinstance(choice, dict) or choice.get("type") != "function" or not isinstance(name, str):
        raise InvalidRequestError("tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}")
    if name not in names:
        raise InvalidRequestError(f"tool_choice names {name!r}, which is not in tools ({', '.join(sorted(names)) or 'none given'})")


def _check_response_format(fmt: Any) -> None:
    if not isinstance(fmt, dict) or fmt.get("type") not in RESPONSE_FORMATS:
        raise InvalidRequestError(f"response_format must be {{'type': ...}} with a type of {', '.join(RESPONSE_FORMATS)}")
    if fmt["type"] == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not _TOOL_NAME.fullmatch(spec["name"]):
            raise InvalidRequestError("response_format json_schema needs {'json_schema': {'name': ..., 'schema': {...}}}; "
                                      "the name is 1-128 letters, digits, '_', '-', '.' or ':'")
        schema = spec.get("schema")
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            raise InvalidRequestError("response_format json_schema.schema must be a JSON Schema object with type 'object'")


def _check_tool_history(messages: list[Any]) -> None:
    """Assistant tool calls are well formed and each is answered by one tool message before the
    conversation moves on; each tool message answers a call."""
    open_calls: dict[str, int] = {}  # call id → the message that made it
    known: set[str] = set()
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in known:
                raise InvalidRequestError(f"messages[{i}] is a tool result for call {call_id!r}, but no earlier assistant "
                                          "message made a call with that id")
            if call_id not in open_calls:
                raise InvalidRequestError(f"messages[{i}] answers call {call_id!r} a second time, or after the conversation moved on")
            del open_calls[call_id]
            continue
        if open_calls:
            missing = ", ".join(repr(c) for c in open_calls)
            raise InvalidRequestError(f"messages[{i}] follows tool call(s) {missing} of messages[{next(iter(open_calls.values()))}] "
                                      "that no tool message answered; add a {'role': 'tool', 'tool_call_id': ..., 'content': ...} for each")
        calls = message.get("tool_calls")
        if calls is None:
            continue
        if role != "assistant" or not isinstance(calls, list):
            raise InvalidRequestError(f"messages[{i}].tool_calls must be a list on an assistant message")
        for j, call in enumerate(calls):
            where = f"messages[{i}].tool_calls[{j}]"
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"] or not isinstance(function, dict):
                raise InvalidRequestError(f"{where} must be {{'id': ..., 'type': 'function', 'function': {{'name': ..., 'arguments': '...'}}}}")
            if not isinstance(function.get("name"), str) or not function["name"]:
                raise InvalidRequestError(f"{where}.function.name must be a non-empty string")
            arguments = function.get("arguments")
            if not isinstance(arguments, str):
                raise InvalidRequestError(f"{where}.function.arguments must be JSON text (a string), got {type(arguments).__name__}")
            try:
                parsed = json.loads(arguments)
            except ValueError:
                hint = " (use '{}' for a call without arguments)" if not arguments.strip() else ""
                raise InvalidRequestError(f"{where}.function.arguments is not valid JSON: {arguments[:80]!r}{hint}") from None
            if not isinstance(parsed, dict):
                raise InvalidRequestError(f"{where}.function.arguments must be a JSON object")
            if call["id"] in known:
                raise InvalidRequestError(f"{where}: the call id {call['id']!r} is used twice")
            known.add(call["id"])
            open_calls[call["id"]] = i
    if open_calls:
        raise InvalidRequestError(f"tool call(s) {', '.join(repr(c) for c in open_calls)} have no tool message answering them")


def needed_capabilities(messages: Any, options: RequestOptions) -> frozenset[str]:
    """What a model must declare to take this call: tools, vision, structured_output."""
    if options is NO_OPTIONS and not _has_images(messages):
        return NO_NEEDS
    needs = set()
    if options.tools or options.tool_choice is not None or _has_tool_history(messages):
        needs.add("tools")
    fmt = options.response_format
    if fmt is not None and fmt.get("type") in ("json_schema", "json_object"):
        needs.add("structured_output")
    if _has_images(messages):
        needs.add("vision")
    return frozenset(needs)


NO_NEEDS: frozenset[str] = frozenset()


def plain_text(messages: list[dict[str, Any]] | None) -> bool:
    """Every message (checked: `check_input`) is text in a string, and none is a tool call or a
    tool's result: no tool history and no image (most calls)."""
    for message in messages or ():
        if type(message.get("content")) is not str or message["role"] == "tool" or "tool_calls" in message:
            return False
    return True


def _has_tool_history(messages: Any) -> bool:
    return isinstance(messages, list) and any("tool_calls" in m or m["role"] == "tool" for m in messages)


def _has_images(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content")
        if type(content) is list and any(isinstance(p, dict) and p.get("type") == "image_url" for p in content):
            return True
    return False
