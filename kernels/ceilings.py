"""Device ceilings: measured matmul rate per precision and device copy bandwidth (issue 4).

Each figure is the median of repeated timed runs after warm-up, on random data:
a square ``n × n`` matrix product (2·n³ FLOPs) per precision, and a copy of one
buffer into another (bytes read + bytes written). On the CPU each precision's
``n`` grows from 256 by doubling up to ``matmul_n`` while one product stays under
``max_product_ms``: a CPU without fast fp16 takes seconds for one 1024³ product,
which would make the measurement minutes of silence. CUDA is timed with events on
the current stream, the CPU with the host clock.

Measured figures are cached per device name and torch version (and thread count
on the CPU) under ``$TLPROF_CACHE`` or ``~/.cache/tlprof``: ``cached_ceilings``
reads them back, ``tlprof ceilings --refresh`` measures again.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from tlprof.document import Ceilings, RunDocumentError, read_json_document, save_json
from tlprof.runner import device_name

Notify = Callable[[str], None]

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16,
          "fp16": torch.float16}


@dataclass(frozen=True)
class CeilingSizes:
    matmul_n: int
    copy_bytes: int
    warmup: int
    reps: int
    min_matmul_n: int | None = None  # grow n from here (None: always matmul_n)
    max_product_ms: float = 25.0


CPU_SIZES = CeilingSizes(matmul_n=1024, copy_bytes=256 * 2**20, warmup=2, reps=10, min_matmul_n=256)
CUDA_SIZES = CeilingSizes(matmul_n=8192, copy_bytes=2 * 2**30, warmup=5, reps=20)


def supported_precisions(device: torch.device) -> list[str]:
    if device.type != "cuda":
        return ["fp32", "bf16", "fp16"]
    bf16 = ["bf16"] if torch.cuda.is_bf16_supported() else []
    return ["fp32", "tf32", *bf16, "fp16"]


def cache_path(device: torch.device) -> Path:
    """One file per device name, torch version and (on the CPU) thread count."""
    root = Path(os.environ.get("TLPROF_CACHE") or Path.home() / ".cache" / "tlprof")
    threads = f"-{torch.get_num_threads()}threads" if device.type != "cuda" else ""
    key = f"{device.type}-{device_name(device)}-torch{torch.__version__}{threads}"
    return root / "ceilings" / (re.sub(r"[^A-Za-z0-9.+-]+", "_", key).strip("_") + ".json")


def cached_ceilings(device: torch.device, refresh: bool = False, notify: Notify | None = None) -> Ceilings:
    """The cached figures for this device and torch version, else measured (and cached)."""
    tell = notify or (lambda _text: None)
    path = cache_path(device)
    if not refresh and path.exists():
        try:
            ceilings = Ceilings.from_dict(read_json_document(path))
            tell(f"ceilings cached from {path} (tlprof ceilings --refresh measures again)")
            return ceilings
        except (RunDocumentError, TypeError, ValueError, AttributeError):
            tell(f"ceilings cache {path} is unreadable: measuring again")
    ceilings = measure_ceilings(device, notify=notify)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_json(ceilings.to_dict(), path)
        tell(f"ceilings cached in {path}")
    except OSError as exc:
        tell(f"ceilings not cached: {path}: {exc.strerror}")
    return ceilings


def measure_ceilings(device: torch.device, sizes: CeilingSizes | None = None,
                     notify: Notify | None = None) -> Ceilings:
    sizes = sizes or (CUDA_SIZES if device.type == "cuda" else CPU_SIZES)
    timer = _timer(device)
    samples: dict[str, list[float]] = {}
    tflops: dict[str, float] = {}
    chosen: dict[str, int] = {}
    for precision in supported_precisions(device):
        if notify:
            notify(f"measuring ceilings on {device}: matmul {precision}…")
        with _matmul_precision(precision):
            n = chosen[precision] = _matmul_size(device, precision, sizes)
            samples[f"matmul_{precision}"] = _matmul_ms(device, precision, n, sizes, timer)
        tflops[precision] = 2 * n**3 / (statistics.median(samples[f"matmul_{precision}"]) * 1e9)
    if notify:
        notify(f"measuring ceilings on {device}: copy bandwidth…")
    samples["copy"] = _copy_ms(device, sizes, timer)
    gbps = 2 * sizes.copy_bytes / (statistics.median(samples["copy"]) * 1e6)
    return Ceilings(str(device), device_name(device), tflops, gbps, max(chosen.values()),
                    sizes.copy_bytes, torch.get_num_threads(), samples, chosen)


def _matmul_size(device: torch.device, precision: str, sizes: CeilingSizes) -> int:
    """``matmul_n``, or on the CPU the largest doubling of ``min_matmul_n`` whose product is quick."""
    n = sizes.min_matmul_n
    if n is None or device.type == "cuda":
        return sizes.matmul_n
    while n < sizes.matmul_n:
        a = torch.randn(n, n, dtype=DTYPES[precision])
        torch.mm(a, a)
        if min(_host_times(lambda a=a: torch.mm(a, a), 0, 2)) * 8 > sizes.max_product_ms:
            break  # the next doubling costs 8× this product
        n *= 2
    return n


Timer = Callable[[Callable[[], object], int, int], list[float]]


def _timer(device: torch.device) -> Timer:
    return _cuda_times if device.type == "cuda" else _host_times


def _host_times(fn: Callable[[], object], warmup: int, reps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


def _cuda_times(fn: Callable[[], object], warmup: int, reps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(reps)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in events]


def _matmul_ms(device: torch.device, precision: str, n: int, sizes: CeilingSizes,
               timer: Timer) -> list[float]:
    a = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    b = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    out = torch.empty_like(a)
    return timer(lambda: torch.mm(a, b, out=out), sizes.warmup, sizes.reps)


def _copy_ms(device: torch.device, sizes: CeilingSizes, timer: Timer) -> list[float]:
    src = torch.rand(sizes.copy_bytes // 4, device=device)
    dst = torch.empty_like(src)
    return timer(lambda: dst.copy_(src), sizes.warmup, sizes.reps)


@contextmanager
def _matmul_precision(precision: str) -> Iterator[None]:
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
