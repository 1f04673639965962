"""The caller's input, checked before anything is sent: messages, prompt and params are JSON data
of sane size; and the rough token estimate the tpm limit reserves."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .config.model import ModelConfig
from .errors import InvalidRequestError
from .templating import last_user_text

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MAX_INPUT_CHARS = 10_000_000


def input_text(messages: Any, prompt: Any) -> str:
    return json.dumps(messages, ensure_ascii=False) if messages else (prompt or "")


def estimate_tokens(messages: Any, prompt: Any, params: Mapping[str, Any]) -> int:
    """A rough reservation for the tpm limit (4 characters a token), settled after the reply."""
    text = input_text(messages, prompt)
    asked = next((params[k] for k in ("max_tokens", "max_completion_tokens", "max_output_tokens") if k in params), 0)
    return len(text) // 4 + (asked if isinstance(asked, int) else 0)


def check_input(model: ModelConfig, messages: Any, prompt: Any, params: Mapping[str, Any]) -> tuple[Any, str | None]:
    """Reject malformed calls before anything is sent; derive the prompt for image models."""
    if messages is not None:
        if not isinstance(messages, list) or not messages:
            raise InvalidRequestError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
        size = 0
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise InvalidRequestError(f"messages[{i}] must be a dict with a string 'role'")
            if message["role"] not in ROLES:
                raise InvalidRequestError(f"messages[{i}] has unknown role {message['role']!r}; roles: {', '.join(sorted(ROLES))}")
            content = message.get("content")
            if not isinstance(content, (str, list)) and not (content is None and message["role"] == "assistant"):
                raise InvalidRequestError(f"messages[{i}].content must be a string or a list of content parts")
            size += _size(content, f"messages[{i}].content")
        if size > MAX_INPUT_CHARS:
            raise InvalidRequestError(f"messages hold {size} characters, more than the {MAX_INPUT_CHARS} the router accepts")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InvalidRequestError("prompt must be a string")
        _size(prompt, "prompt")
    if prompt is None and messages is None:
        raise InvalidRequestError("give messages=[...] or prompt='...'")
    if model.kind == "image" and prompt is None:
        prompt = last_user_text(messages or [])
        if not prompt:
            raise InvalidRequestError(f"{model.name} is an image model: give prompt='...' or a user message")
    if messages is None and model.kind == "chat":
        messages = [{"role": "user", "content": prompt}]
    check_params(params)
    return messages, prompt


def check_params(params: Mapping[str, Any], where: str = "param") -> None:
    for key, value in params.items():
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except (TypeError, ValueError, UnicodeEncodeError):
            raise InvalidRequestError(f"{where} {key!r} is not JSON data (got {type(value).__name__})") from None


def _size(content: Any, where: str) -> int:
    if isinstance(content, str):
        try:
            content.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequestError(f"{where} is not valid UTF-8 text (lone surrogates)") from None
        return len(content)
    if isinstance(content, list):
        return sum(_size(p.get("text", "") if isinstance(p, dict) else p, where) for p in content)
    return 0
