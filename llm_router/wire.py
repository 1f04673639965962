"""Rules for what goes on the wire, shared by the config checks (which report a breach at its file
and line) and the engine (which refuses to send it), so that neither imports the other."""

from __future__ import annotations

import re

# The engine sends JSON bodies: a provider may declare a JSON content type of its own (a charset, a
# +json type), never another one.
JSON_CONTENT_TYPE = re.compile(r"application/(?:[\w.-]+\+)?json\s*(?:;.*)?", re.I | re.S)
# Likewise by an operation's `encoding`: (the types it may declare, what to declare, what it sends).
# A multipart boundary is always the engine's.
CONTENT_TYPES = {
    "json": (JSON_CONTENT_TYPE, "application/json (with a charset if needed) or a +json type", "JSON"),
    "multipart": (re.compile(r"multipart/form-data\s*(?:;.*)?", re.I | re.S), "multipart/form-data", "multipart"),
    "form": (re.compile(r"application/x-www-form-urlencoded\s*(?:;.*)?", re.I | re.S),
             "application/x-www-form-urlencoded", "form-urlencoded"),
}


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether a key may go to `host`: a pattern names it exactly, or is `*.domain` and the host is
    that domain or one of its subdomains (never `evildomain`), or has a `*` inside one label
    (`bedrock-runtime.*.amazonaws.com`, `*-aiplatform.googleapis.com`) that matches part of that
    label only, never a dot."""
    host = host.lower()
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) or host == pattern[2:]:
                return True
        elif "*" in pattern:
            head, _, tail = pattern.partition("*")
            inner = host[len(head):len(host) - len(tail)] if len(host) > len(head) + len(tail) else ""
            if inner and "." not in inner and host.startswith(head) and host.endswith(tail):
                return True
        elif host == pattern:
            return True
    return False
