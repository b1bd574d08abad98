"""Print a short summary table of the run documents given on the command line."""

from __future__ import annotations

import sys

from tlprof.document import RunDocument, RunDocumentError


def main(paths: list[str]) -> int:
    print(f"{'run document':<28} {'device':<28} {'prec':<5} {'batch':>5} {'full ms':>9} "
          f"{'frozen ms':>9} {'ratio':>6} {'ovh full':>8} {'peak MiB':>9}")
    for path in paths:
        try:
            p = RunDocument.load(path)
        except RunDocumentError:
            continue  # other JSON under $OUT (traces, ceilings)
        full, frozen = p.runs.get("full"), p.runs.get("frozen")
        ratio = frozen.step_ms.median / full.step_ms.median if full and frozen else float("nan")
        peak = max((r.memory.allocator.peak_allocated_bytes if r.memory.allocator else 0)
                   for r in p.runs.values()) / 2**20
        print(f"{path.rsplit('/', 1)[-1]:<28} {p.meta.device_name[:28]:<28} "
              f"{p.meta.precision:<5} {p.meta.batch_size:>5} "
              f"{full.step_ms.median if full else float('nan'):>9.2f} "
              f"{frozen.step_ms.median if frozen else float('nan'):>9.2f} {ratio:>6.3f} "
              f"{full.overhead_ratio if full else float('nan'):>8.3f} {peak:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
