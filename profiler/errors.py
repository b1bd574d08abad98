from __future__ import annotations

import sys


def say(message: str) -> None:
    """A one-line notice on stderr: an option that cannot work here, a degraded measurement."""
    print(f"tlprof: {message}", file=sys.stderr)


class TlprofError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero."""


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message, for a one-line report; ``default`` (the
    exception's type name unless given) when the message is empty."""
    lines = str(exc).strip().splitlines()
    if lines:
        return lines[0]
    return type(exc).__name__ if default is None else default
