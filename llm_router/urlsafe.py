"""Values placed in a URL by a template: percent-encoded, and refused where they would change its structure.

Apart from the sandbox (sandbox.py), so that the checks and URL templates of plain lookups (most of
them) use it without importing Jinja.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote


class UnsafeUrlValue(ValueError):
    """A value a template would place in a URL that would change the URL's structure."""


_PLAIN_SEGMENT = r"(?!\.\.?(?:/|\Z))[A-Za-z0-9_.~:@-]+"  # URL-safe characters, not a dot segment
_PLAIN_URL_VALUE = re.compile(rf"{_PLAIN_SEGMENT}(?:/{_PLAIN_SEGMENT})*")


def url_value(value: Any) -> str:
    """A value as an expression places it in a URL path or query: each '/'-separated segment
    percent-encoded, so a multi-segment name (`fal-ai/flux/schnell`, `owner/model`) keeps its
    separators but can never change the URL's structure. An empty, '.' or '..' segment, a backslash,
    and a segment that decodes to one of those or holds a separator (`%2F`, `%2e%2e`) are refused."""
    if isinstance(value, (Mapping, list, tuple)):
        raise UnsafeUrlValue(f"a {type(value).__name__} cannot be placed in a URL")
    text = "" if value is None else str(value)  # a Jinja Undefined is "" too
    if _PLAIN_URL_VALUE.fullmatch(text):  # the usual name: nothing to encode, nothing to refuse
        return text
    for segment in text.split("/"):
        decoded = unquote(segment)
        if decoded in ("", ".", "..") or "/" in decoded or "\\" in decoded:
            raise UnsafeUrlValue(f"the value {text[:80]!r} cannot be placed in a URL: its segment {segment[:40]!r} is "
                                 "empty, a dot segment, or holds a backslash or an encoded separator, which would "
                                 "change the URL's path")
    return quote(text, safe="-._~:@/")
