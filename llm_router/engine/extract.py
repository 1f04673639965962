"""Read usage counts and text values out of a reply with compiled JSONPaths."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..config.model import EmptyResult, UsagePaths
from ..errors import ProviderError
from ..paths import JSONPath
from ..types import Usage
from .errors import KIND_CLASSES

log = logging.getLogger("llm_router")


MAX_TOKEN_COUNT = 1_000_000_000  # a count above this is a provider's bug, not usage


def _sum(paths: tuple[JSONPath, ...], data: Any, whole: bool = True) -> Any:
    """The counts the paths find, added; one that is not sane (`_sane`) is ignored."""
    total = None
    for path in paths:
        value = path.first(data)
        if value is None:
            continue
        if type(value) is not int or not 0 <= value <= MAX_TOKEN_COUNT:  # the usual count takes one test
            value = _sane(path, value, whole)
            if value is None:
                continue
        total = value if total is None else total + value
    return total


def _sane(path: JSONPath, value: Any, whole: bool) -> Any:
    """A count that is a finite number from 0 to a billion (an int where `whole`), or None with a
    warning: it must never become a negative cost or an exception."""
    if type(value) is float and 0 <= value <= MAX_TOKEN_COUNT:
        return int(value) if whole else value
    if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT:
        return value
    shown = value if isinstance(value, (int, float)) else type(value).__name__  # never echo provider text
    log.warning("ignoring a usage count that is not a sane token count: %s = %r", path.expr, shown)
    return None


def usage_found(paths: UsagePaths, found: Sequence[Any]) -> Usage:
    """The counts of a whole reply, given what the head of each path of `paths.counted` found, in
    that order (`Extraction.heads`)."""
    counts: list[Any] = [None] * USAGE_FIELDS
    values = iter(found)
    for slot, own, whole in paths.counted:
        total = None
        for path in own:  # as _sum adds them
            value = next(values)
            if value is not None and not path.singular:  # what its head found: the rest of the path from there
                value = path.first_at(value)
            if value is not None and (type(value) is not int or not 0 <= value <= MAX_TOKEN_COUNT):
                value = _sane(path, value, whole)
            if value is not None:
                total = value if total is None else total + value
        counts[slot] = total
    return Usage(*counts)


USAGE_FIELDS = len(Usage.__slots__)


def usage_of(paths: UsagePaths, data: Any) -> Usage:
    return counts_of(paths, data) or Usage()


def counts_of(paths: UsagePaths, data: Any) -> Usage | None:
    """The counts a reply or a stream event reports, or None when it reports none (most events)."""
    if paths.head is not None and paths.head(data) is None:
        return None
    p = paths  # most operations declare two or three of these: an empty one costs no call
    usage = Usage(_sum(p.input_tokens, data) if p.input_tokens else None,
                  _sum(p.output_tokens, data) if p.output_tokens else None,
                  _sum(p.cached_input_tokens, data) if p.cached_input_tokens else None,
                  _sum(p.cache_write_tokens, data) if p.cache_write_tokens else None,
                  _sum(p.reasoning_tokens, data) if p.reasoning_tokens else None,
                  _sum(p.search_units, data) if p.search_units else None,
                  _sum(p.characters, data) if p.characters else None,
                  _sum(p.audio_seconds, data, whole=False) if p.audio_seconds else None,
                  _sum(p.video_seconds, data, whole=False) if p.video_seconds else None)
    if (usage.input_tokens is None and usage.output_tokens is None and usage.cached_input_tokens is None
            and usage.cache_write_tokens is None and usage.reasoning_tokens is None and usage.search_units is None
            and usage.characters is None and usage.audio_seconds is None and usage.video_seconds is None):
        return None
    return usage


MAX_TEXT_CHARS = 1000  # a list or object where text is expected, as JSON text, is cut here


def text_or_none(path: JSONPath | None, data: Any) -> str | None:
    """The value at the path as text (a list or object as JSON text, cut at MAX_TEXT_CHARS); None
    when there is none, or when it nests too deep to be written."""
    if path is None:
        return None
    return text_of(path.first(data))


def text_of(value: Any) -> str | None:
    """A value found where text is expected, as text_or_none gives it."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False)[:MAX_TEXT_CHARS]
    except (TypeError, ValueError, RecursionError):
        return None


def empty_result_error(rule: EmptyResult, data: Any, provider: str, model: str, status: int,
                       redact: Callable[[str], str]) -> ProviderError:
    """A reply without a result where the provider file says what that means (`empty`): a
    ContentFilterError for a video the provider's filter withheld, say, with the provider's reason."""
    detail = text_or_none(rule.message, data)
    return KIND_CLASSES[rule.kind](redact(detail) if detail else "the reply has no result", provider=provider, model=model,
                                   status=status, body_excerpt=redact(str(data)[:300]))
