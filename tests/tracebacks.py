"""What an error tracker shows of an exception: every frame with the repr of each local variable."""

from __future__ import annotations

import traceback


def rendered_with_locals(exc: BaseException, leave_out: str) -> str:
    """Every frame of the whole chain (causes and contexts) with the repr of every local variable, but
    those of the file `leave_out` (a test's own frames, which hold the env it passed)."""
    lines = []
    seen: traceback.TracebackException | None = traceback.TracebackException.from_exception(exc, capture_locals=True)
    while seen is not None:
        for frame in seen.stack:
            if frame.filename != leave_out:
                lines.append(f"{frame.filename}:{frame.lineno} in {frame.name}")
                lines += [f"    {name} = {value}" for name, value in (frame.locals or {}).items()]
        lines += seen.format_exception_only()
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "\n".join(lines)
