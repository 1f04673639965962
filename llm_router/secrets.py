"""Secret values: held apart from plain strings and masked wherever text leaves the router.

Redaction is by structure: the config says where each key goes (a header, a query parameter, a
base URL's user:password), so the router knows the exact values to mask. A provider may echo a key
back in any text it sends: as written, percent-encoded, JSON-escaped (`\\/`, `\\u00xx`), or cut by
the truncation of an excerpt. `Redactor` masks every one of those forms.
"""

from __future__ import annotations

import base64
import bisect
import json
import re
from collections import deque
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
MIN_SECRET_CHARS = 4  # a shorter value would match ordinary words: it is never looked for in text
MIN_CUT_CHARS = 6  # a text that ends with this much of a key (or more) ends with a key an excerpt cut
ROTATING_KEPT = 4  # the values of a rotating secret (a token) still masked: the current one and the three before


class Secret:
    """A credential. Its repr and str never show the value; `reveal()` is for the wire only."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


class WireValue(str):
    """A credential as it goes on the wire (a header or query value): a plain `str` to the HTTP
    client, masked in every repr, so that a dict holding it, printed in a log or in a traceback
    rendered with its frames' local variables, does not show it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)


def _userinfo(url: str) -> tuple[int, int] | None:
    """Where the `user:password` of a URL's `user:password@host` is, if it has one."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        return None
    start = scheme_end + 3
    end = min((i for i in (url.find(c, start) for c in "/?#") if i >= 0), default=len(url))
    at = url.rfind("@", start, end)
    return (start, at) if at >= 0 else None


def mask_userinfo(url: str) -> str:
    """The URL with any `user:password@` before its host replaced by `***@`."""
    span = _userinfo(url)
    return url if span is None else f"{url[:span[0]]}{MASK}{url[span[1]:]}"


# A JSON escape (\uXXXX, \/, \\, \n...) or an ASCII percent-escape: decoded before looking for a key, so that
# a key echoed in an escaped form is found too.
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\([\"\\/bfnrt])|%([0-7][0-9a-fA-F])")
# The same without `\\`: a backslash just before an escaped key (`\\u003A...`) must not hide it from the mask.
_ESCAPE_AFTER_BACKSLASH = re.compile(r"\\u([0-9a-fA-F]{4})|\\([\"/bfnrt])|%([0-7][0-9a-fA-F])")
# JSON escapes alone: a key holding a backslash and a `%XX` (`0000\%00`) is JSON-escaped as `0000\\%00`, which
# decoding both kinds of escape in one pass reads as `0000\` and a NUL. (Its third group never matches.)
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\([\"\\/bfnrt])|(?!)(.)")
_JSON_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# What an excerpt's cut may leave after a key's prefix: half an escape (then an ellipsis, blank space).
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-f]{4})")
_HALF_ESCAPE = re.compile(r"(?:\\(?:u[0-9a-fA-F]{0,3})?|%[0-9a-fA-F]?)\Z")


class Redactor:
    """Masks every known secret in a text: as written, percent-encoded, JSON-escaped, and a prefix
    of one (at least MIN_CUT_CHARS long) that ends the text, where an excerpt's cut fell inside it.

    `redactor(text)` masks a text, `redactor.url(url)` a URL (its user:password too, whatever its
    length), `redactor.data(value)` every string in a JSON-like value (a copy), and
    `redactor.echoed_in(body)` says, cheaply, whether a reply's bytes may hold a secret at all."""

    __slots__ = ("_kept", "_needles", "_rotating", "_values")

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        self._kept: list[str] = []  # every form of every lasting secret (a key)
        self._rotating: dict[str, deque[list[str]]] = {}  # the forms of the last few values of each rotating one
        self._values: list[str] = []  # all of them, longest first, so that a key is masked whole before any shorter one
        self._needles: tuple[bytes, ...] = ()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: Secret, rotating: str | None = None) -> None:
        """Mask `secret` from now on. A `rotating` one (a token refreshed every hour, under a name of
        its own) is masked while it is one of the last ROTATING_KEPT of that name: older ones have
        expired, and keeping them all would make every search slower, hour by hour."""
        value = secret.reveal()
        # percent-encoded as a query string sends it (non-ASCII bytes are not decoded before the search), and
        # JSON-escaped as written: found as they are, even where a backslash before one would mislead a decoding
        escaped = json.dumps(value, ensure_ascii=False)[1:-1]
        written = (value, quote(value, safe=""), quote_plus(value, safe=""), escaped, escaped.replace("/", "\\/"),
                   json.dumps(value)[1:-1])
        forms = [form for form in dict.fromkeys(written) if len(form) >= MIN_SECRET_CHARS]
        if rotating is None:
            self._kept += [form for form in forms if form not in self._kept]
        else:
            self._rotating.setdefault(rotating, deque(maxlen=ROTATING_KEPT)).append(forms)
        every = dict.fromkeys([*self._kept, *(form for kept in self._rotating.values() for forms in kept for form in forms)])
        self._values = sorted(every, key=len, reverse=True)
        self._needles = tuple({needle for value in self._values for needle in _needles(value)})

    def add_url(self, url: str) -> None:
        """The credentials in a URL's `user:password@` (a base-URL override may carry them): the
        password, the pair, and the pair as a Basic authorization header carries it; a user alone
        (a token) is a secret too."""
        span = _userinfo(url)
        if span is None:
            return
        info = url[span[0]:span[1]]
        for raw in {info, unquote(info)}:
            user, _, password = raw.partition(":")
            for value in (password, raw, base64.b64encode(raw.encode()).decode()) if password else (user,):
                self.add(Secret(value))

    def __call__(self, text: str) -> str:
        if not self._values or not text:
            return text
        spans = self._spans(text)
        for pattern in _patterns(text):
            decoded, shifts = _decode(text, pattern)
            if shifts is not None:  # the text as written, and with its escapes decoded (a key may hold a '%' or a '\\')
                spans += [(_original(start, shifts), _original(end, shifts)) for start, end in self._spans(decoded)]
        if not spans:
            return text
        merged: list[list[int]] = []  # overlapping spans (a key inside a longer one) masked as one
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        out: list[str] = []
        last = 0
        for start, end in merged:
            out += (text[last:start], MASK)
            last = end
        out.append(text[last:])
        return "".join(out)

    def _spans(self, decoded: str) -> list[tuple[int, int]]:
        """Where the secrets are in the decoded text: each occurrence, and a cut prefix at its end."""
        spans = []
        for value in self._values:
            start = decoded.find(value)
            while start >= 0:
                spans.append((start, start + len(value)))
                start = decoded.find(value, start + len(value))
        for end in _cut_ends(decoded):
            for value in self._values:
                tail = decoded[max(0, end - len(value) + 1):end]  # a proper prefix fits in len(value) - 1 chars
                head = value[:MIN_CUT_CHARS]
                start = tail.find(head) if len(value) > MIN_CUT_CHARS else -1
                while start >= 0:
                    if value.startswith(tail[start:]):
                        spans.append((end - len(tail) + start, len(decoded)))
                        break
                    start = tail.find(head, start + 1)
        return spans

    def echoed_in(self, body: bytes) -> bool:
        """Whether a reply's bytes hold the start of a secret (its first MIN_CUT_CHARS characters) in
        any form a JSON body carries it: then its parsed data is worth `data()`. A few substring
        searches, so a reply that holds no key costs next to nothing."""
        return any(needle in body for needle in self._needles)

    def url(self, url: str) -> str:
        """A URL as it may be shown: user:password masked by position, any known secret by value."""
        return self(mask_userinfo(url))

    def data(self, value: Any) -> Any:
        """A copy of a JSON-like value (dicts, lists, strings, numbers) with every string masked,
        keys too. Iterative: a value nested any depth is walked without recursion."""
        if not self._values:
            return value
        root: list[Any] = [value]
        stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]  # (container, key or index, original value)
        while stack:
            parent, key, item = stack.pop()
            if isinstance(item, str):
                parent[key] = self(item)
            elif isinstance(item, dict):
                copy: dict[Any, Any] = {}
                parent[key] = copy
                for k, v in item.items():
                    masked = self(k) if isinstance(k, str) else k
                    copy[masked] = v
                    stack.append((copy, masked, v))
            elif isinstance(item, (list, tuple)):
                items = list(item)
                parent[key] = items
                stack.extend((items, i, v) for i, v in enumerate(items))
        return root[0]


def _needles(value: str) -> set[bytes]:
    """The bytes that start every occurrence of `value` in a JSON text, a cut one too (of MIN_CUT_CHARS
    characters or more): its head as written, and as JSON encoders escape it (`\\uXXXX` in lower or
    upper case for non-ASCII and control characters, `\\/` for a slash)."""
    head = value[:MIN_CUT_CHARS]
    escaped = json.dumps(head)[1:-1]
    forms = {head, json.dumps(head, ensure_ascii=False)[1:-1], escaped, _UNICODE_ESCAPE.sub(lambda m: "\\u" + m[1].upper(), escaped)}
    return {text.encode(errors="replace") for form in forms for text in (form, form.replace("/", "\\/"))}


def _cut_ends(text: str) -> set[int]:
    """Where a key cut by an excerpt may end in a text: before the blank space and the ellipsis
    that close it, and before half an escape there too."""
    end = len(text.rstrip())
    for ellipsis in ("…", "..."):
        if text.endswith(ellipsis, 0, end):
            end -= len(ellipsis)
            break
    half = _HALF_ESCAPE.search(text, max(0, end - 6), end)
    return {end, half.start()} if half is not None else {end}


def _patterns(text: str) -> tuple[re.Pattern[str], ...]:
    """The decodings a text needs: none without escapes; JSON escapes alone too when it holds both kinds."""
    backslash, percent = "\\" in text, "%" in text
    if not (backslash or percent):
        return ()
    return (_ESCAPE, _ESCAPE_AFTER_BACKSLASH, _JSON_ESCAPE) if backslash and percent else (_ESCAPE, _ESCAPE_AFTER_BACKSLASH)


def _decode(text: str, pattern: re.Pattern[str] = _ESCAPE) -> tuple[str, tuple[list[int], list[int]] | None]:
    """The text with its JSON and ASCII percent escapes decoded, and what maps a position in the
    decoded text back to the text: the decoded start of each escape, and the characters every
    escape up to it saved (None when there is no escape)."""
    if "\\" not in text and "%" not in text:
        return text, None
    parts: list[str] = []
    starts: list[int] = []
    saved: list[int] = []
    total, last, length = 0, 0, 0
    for match in pattern.finditer(text):
        parts.append(text[last:match.start()])
        length += match.start() - last
        hex4, char, hex2 = match.groups()
        parts.append(chr(int(hex4, 16)) if hex4 else _JSON_ESCAPES.get(char, char) if char else chr(int(hex2, 16)))
        total += match.end() - match.start() - 1
        starts.append(length)
        saved.append(total)
        length += 1
        last = match.end()
    if not starts:
        return text, None
    parts.append(text[last:])
    return "".join(parts), (starts, saved)


def _original(position: int, shifts: tuple[list[int], list[int]]) -> int:
    """A position in the decoded text as a position in the text: moved by every escape before it."""
    starts, saved = shifts
    i = bisect.bisect_left(starts, position)  # escapes that start before `position`
    return position + (saved[i - 1] if i else 0)
