from __future__ import annotations

import sys


def say(message: str) -> None:
    """A one-line notice on stderr: an option that cannot work here, a degraded measurement."""
    print(f"tlprof: {message}", file=sys.stderr)


class TlprofError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero."""
