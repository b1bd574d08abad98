"""The command line as the tests drive it: small profile flags and the one-line error contract."""

from __future__ import annotations

from pathlib import Path

from tlprof.cli import main

MODELS = str(Path(__file__).parent / "models.py")
SMALL = ["--input-shape", "8", "--batch-size", "2", "--steps", "2", "--warmup", "1", "--device", "cpu"]


def one_error_line(capsys, argv: list) -> str:
    """Runs the CLI, which must exit 2 with exactly one ``tlprof: error:`` line (besides the note
    on defaults taken), no traceback and nothing on stdout; returns that line."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "Traceback" not in err and out == "", err
    lines = [line for line in err.strip().splitlines() if not line.startswith("tlprof: using ")]
    assert len(lines) == 1 and lines[0].startswith("tlprof: error: "), err
    return lines[0]
