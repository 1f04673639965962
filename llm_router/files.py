"""Files a caller passes (audio to transcribe, an image to edit): bytes, base64 text, a path or a
URL, read once into one typed value. A multipart body carries its bytes as a file part; a JSON
body can name `file.base64`, `file.data_url` or `file.url` in its template."""

from __future__ import annotations

import base64
import binascii
import mimetypes
import os
import stat
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any
from urllib.parse import unquote_to_bytes

from .errors import InvalidRequestError

MAX_FILE_BYTES = 512 * 2**20  # no operation takes more; each declares its own, smaller cap (`max_file_bytes`)
OCTET_STREAM = "application/octet-stream"
ACCEPTED = "bytes, a pathlib.Path, an http(s) or data: URL string, or llm_router.FileInput"


@dataclass(frozen=True, slots=True)
class FileInput:
    """A file for an operation: its bytes (None when only its URL is known), a file name and a media type."""

    data: bytes | None = field(repr=False)
    filename: str = "file"
    media_type: str = OCTET_STREAM
    url: str | None = None  # where it came from, for a provider that takes a URL

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, filename: str = "file", media_type: str | None = None) -> FileInput:
        return cls(bytes(data), filename, media_type or _guess(filename))

    @classmethod
    def from_base64(cls, text: str, filename: str = "file", media_type: str | None = None) -> FileInput:
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestError(f"{filename}: the file's base64 text does not decode") from None
        return cls(data, filename, media_type or _guess(filename))

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], filename: str | None = None, media_type: str | None = None) -> FileInput:
        """Read a local file (a regular file of at most MAX_FILE_BYTES)."""
        name = filename or PurePath(path).name or "file"
        try:
            with open(path, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise InvalidRequestError(f"{os.fspath(path)!r} is not a regular file")
                if info.st_size > MAX_FILE_BYTES:
                    raise InvalidRequestError(f"{os.fspath(path)!r} holds {info.st_size} bytes, more than the "
                                              f"{MAX_FILE_BYTES} a file may have")
                data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise InvalidRequestError(f"cannot read the file {os.fspath(path)!r}: {exc.strerror or exc}") from None
        return cls(data, name, media_type or _guess(name))

    @classmethod
    def from_url(cls, url: str, filename: str | None = None, media_type: str | None = None) -> FileInput:
        """An http(s) URL (its bytes are not fetched), or a data: URL (decoded)."""
        if url.startswith("data:"):
            return _from_data_url(url, filename)
        if not url.startswith(("https://", "http://")):
            raise InvalidRequestError(f"{url[:40]!r} is not an http(s) or data: URL")
        name = filename or PurePath(url.split("?", 1)[0].split("#", 1)[0]).name or "file"
        return cls(None, name, media_type or _guess(name), url)

    @property
    def size(self) -> int | None:
        return len(self.data) if self.data is not None else None

    @property
    def base64(self) -> str:
        """The bytes as base64 text (for a JSON body)."""
        return base64.b64encode(self.require_bytes()).decode("ascii")

    @property
    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.base64}"

    def require_bytes(self) -> bytes:
        if self.data is None:
            raise InvalidRequestError(f"the file {self.filename!r} was given as a URL; this provider needs its bytes: "
                                      "pass bytes or a pathlib.Path instead")
        return self.data


def as_file(value: Any, where: str, filename: str | None = None, media_type: str | None = None) -> FileInput:
    """The caller's value as a FileInput, or InvalidRequestError naming `where` and what is accepted."""
    if isinstance(value, FileInput):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) > MAX_FILE_BYTES:
            raise InvalidRequestError(f"{where} holds {len(value)} bytes, more than the {MAX_FILE_BYTES} a file may have")
        return FileInput.from_bytes(value, filename or "file", media_type)
    if isinstance(value, os.PathLike):
        return FileInput.from_path(value, filename, media_type)
    if isinstance(value, str):
        if value.startswith(("https://", "http://", "data:")):
            return FileInput.from_url(value, filename, media_type)
        raise InvalidRequestError(f"{where}: a string is taken only as an http(s) or data: URL; for a local file "
                                  "pass pathlib.Path(...), for base64 text FileInput.from_base64(...)")
    raise InvalidRequestError(f"{where} must be {ACCEPTED}; got {type(value).__name__}")


def _from_data_url(url: str, filename: str | None) -> FileInput:
    """`data:[<media type>][;base64],<data>` (RFC 2397)."""
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise InvalidRequestError("a data: URL needs a comma before its data")
    parts = header.split(";")
    media_type = parts[0].strip() or "text/plain"
    if parts[-1] == "base64":
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestError("the data: URL's base64 does not decode") from None
    else:
        data = unquote_to_bytes(payload)
    extension = mimetypes.guess_extension(media_type) or ""
    return FileInput(data, filename or f"file{extension}", media_type)


def _guess(filename: str) -> str:
    return mimetypes.guess_type(filename, strict=False)[0] or OCTET_STREAM
