"""Secret values: held apart from plain strings and masked wherever text leaves the router."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"


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


class Redactor:
    """Replaces every known secret value in a text. Knows the values because config says where keys go."""

    __slots__ = ("_values",)

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        self._values: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: Secret) -> None:
        value = secret.reveal()
        # as sent in a query string too, where a key with "+", "/" or "=" appears percent-encoded
        for form in (value, quote(value, safe=""), quote_plus(value, safe="")):
            if len(form) >= 4 and form not in self._values:
                self._values.append(form)
        self._values.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text
