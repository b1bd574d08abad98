"""Data-parallel profiling under torchrun and DDP (docs/design.md §9).

Every rank profiles the same steps with the same marks; a DDP communication
hook wraps the default all-reduce and, in the timed steps only, stamps each
gradient bucket when it is launched (the hook is called: the bucket is ready)
and when its future completes. On CUDA the stamps are CUDA events recorded on
the current stream, which PyTorch makes wait on NCCL's stream before the
future's callback runs; on gloo they are the host clock. Rank 0 gathers the
ranks' run documents over the process group. The process group comes from
torchrun's environment (or is the user's own); tlprof has no launcher and no
transport of its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel

from .clock import Clock, clock_for
from .defaults import DDP_TIMEOUT_S as DEFAULT_TIMEOUT_S
from .document import BucketRecord, CommSection, DistributedSection, RankRun, Run, RunDocument
from .errors import TlprofError, first_line
from .instrument import StepInfo
from .marks import Label
from .memory import tensor_bytes, total_bytes
from .stats import Stats
from .units import Unit

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
LAUNCH_HINT = "launch with: torchrun --nproc-per-node N -m tlprof profile ... --ddp"
# Options that may differ between ranks: each rank has its own device.
PER_RANK_OPTIONS = {"device"}


# -- the launch ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchEnv:
    """What torchrun tells each process about itself."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ,
                     group: tuple[int, int] | None = None) -> LaunchEnv:
        """torchrun's variables; with ``group`` (rank and world size of the user's own process
        group) only the local ones, where they are set."""
        missing = [k for k in ENV_KEYS if not environ.get(k)] if group is None else []
        if missing:
            raise TlprofError(f"--ddp needs torchrun's environment ({', '.join(missing)} not set); "
                              f"{LAUNCH_HINT}")
        try:
            rank, world = group or (int(environ["RANK"]), int(environ["WORLD_SIZE"]))
            local = int(environ.get("LOCAL_RANK", rank))
            # LOCAL_WORLD_SIZE unset (not torchrun): at least this rank's index + 1 ranks are here
            return cls(rank, world, local, int(environ.get("LOCAL_WORLD_SIZE", local + 1)))
        except ValueError as exc:
            raise TlprofError(f"torchrun's environment is not numbers: {exc}") from exc


def check_devices(device_type: str, local_world_size: int, available: int) -> None:
    """One rank per GPU: more ranks on a machine than its GPUs is refused before any rank starts."""
    if device_type == "cuda" and local_world_size > available:
        raise TlprofError(
            f"{local_world_size} ranks on this machine but only {available} CUDA device(s): "
            f"one rank per GPU, so use --nproc-per-node {available} or fewer (or --device cpu)")


def rank_device(spec: str, env: LaunchEnv) -> torch.device:
    """cuda:LOCAL_RANK when the run is on CUDA (auto with a GPU, cuda, cuda:N), else the CPU."""
    cuda = spec.startswith("cuda") or (spec == "auto" and torch.cuda.is_available())
    if not cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise TlprofError(f"--device {spec}: CUDA is not available on this machine; use --device cpu")
    check_devices("cuda", env.local_world_size, torch.cuda.device_count())
    return torch.device("cuda", env.local_rank)


@dataclass
class DdpOptions:
    """How tlprof runs data-parallel: the process group's timeout and DDP's bucket size."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    bucket_cap_mb: float | None = None  # None: DDP's default (25 MB)

    def validate(self) -> None:
        if self.timeout_s <= 0:
            raise TlprofError(f"--ddp-timeout must be positive, got {self.timeout_s}")
        if self.bucket_cap_mb is not None and self.bucket_cap_mb <= 0:
            raise TlprofError(f"--bucket-cap-mb must be positive, got {self.bucket_cap_mb}")


@dataclass
class Group:
    """The process group a profile runs in: its own (made from torchrun's env) or the user's."""

    rank: int
    world_size: int
    backend: str
    device: torch.device
    options: DdpOptions
    owned: bool

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model in DDP, built after freezing: frozen parameters get no bucket."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        kwargs = {} if self.options.bucket_cap_mb is None else {"bucket_cap_mb": self.options.bucket_cap_mb}
        return DistributedDataParallel(model, device_ids=ids, **kwargs)

    def all_gather(self, value: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def check_same(self, options: dict[str, Any]) -> None:
        check_same_options(self.all_gather(options))

    def gather(self, doc: RunDocument) -> RunDocument:
        """Rank 0: every rank's figures in its document; the other ranks: their own document."""
        out: list[Any] | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(doc.to_dict(), out, dst=0)
        if out is None:
            return doc
        return merge_ranks([RunDocument.from_dict(d) for d in out])

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """A collective that fails because another rank died or went silent becomes one line."""
        try:
            yield
        except TlprofError:
            raise
        except (RuntimeError, dist.DistError) as exc:
            if not is_comm_failure(exc):
                raise
            raise TlprofError(
                f"rank {self.rank} of {self.world_size}: another rank stopped or did not answer "
                f"within {self.options.timeout_s:g} s ({comm_reason(exc)}); stopping, the model is restored"
            ) from exc

    def close(self) -> None:
        if self.owned and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


COMM_FAILURE_MARKS = ("gloo", "nccl", "connection", "timed out", "timeout", "peer", "watchdog",
                      "broken pipe", "socket")


def comm_reason(exc: BaseException) -> str:
    """The innermost message of a chained callback error, without gloo's source location."""
    text = first_line(exc)
    text = text.rsplit("Error: ", 1)[-1]
    return re.sub(r"^\[[^\]]*\]\s*", "", text)[:160]


def is_comm_failure(exc: BaseException) -> bool:
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return any(m in text for m in COMM_FAILURE_MARKS)


def open_group(device_spec: str, options: DdpOptions) -> Group:
    """The user's process group when there is one, else one made from torchrun's environment."""
    options.validate()
    if dist.is_initialized():
        env = LaunchEnv.from_environ(group=(dist.get_rank(), dist.get_world_size()))
        return Group(env.rank, env.world_size, str(dist.get_backend()), rank_device(device_spec, env),
                     options, owned=False)
    env = LaunchEnv.from_environ()
    device = rank_device(device_spec, env)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=options.timeout_s))
    return Group(env.rank, env.world_size, backend, device, options, owned=True)


def stop_on_sigterm() -> None:
    """torchrun stops the other ranks with SIGTERM when one fails: unwind (restore, one line)."""

    def handler(_signum: int, _frame: Any) -> None:
        raise TlprofError("stopped by the launcher: another rank failed")

    signal.signal(signal.SIGTERM, handler)


def check_same_options(per_rank: Sequence[Mapping[str, Any]]) -> None:
    """Every rank must measure the same thing; the first option that differs is named with its ranks."""
    base = per_rank[0]
    for rank, options in enumerate(per_rank[1:], 1):
        for key in sorted(base.keys() | options.keys()):
            if key in PER_RANK_OPTIONS or base.get(key) == options.get(key):
                continue
            raise TlprofError(
                f"the ranks were given different options: {key} is {base.get(key)!r} on rank 0 but "
                f"{options.get(key)!r} on rank {rank}; launch every rank with the same command")


# -- the communication hook ----------------------------------------------------------------


@dataclass
class _Bucket:
    """What a gradient bucket holds; kept by its index while its buffer and parameters stay (DDP
    rebuilds its buckets once, after the first step)."""

    index: int
    bytes: int
    numel: int
    dtype: str
    params: int
    units: list[int]
    key: tuple[Any, ...]  # buffer numel and dtype, the parameters' ids: unchanged, the rest is too


@dataclass
class _Launch:
    """One bucket's all-reduce in a timed step: the clock's stamps at launch and at completion."""

    bucket: _Bucket
    launch: Any
    finish: Any = None


@dataclass
class StepComm:
    """One timed step's buckets, in ms from the step's start."""

    buckets: list[tuple[_Bucket, float, float]]  # bucket, launch ms, finish ms
    backward_end_ms: float | None

    @property
    def bytes(self) -> int:
        return sum(b.bytes for b, _, _ in self.buckets)

    @property
    def allreduce_ms(self) -> float:
        return sum(f - launch for _, launch, f in self.buckets)

    @property
    def span_ms(self) -> float:
        if not self.buckets:
            return 0.0
        return max(f for _, _, f in self.buckets) - min(launch for _, launch, _ in self.buckets)

    @property
    def exposed_ms(self) -> float:
        if not self.buckets or self.backward_end_ms is None:
            return float("nan")
        return max(0.0, max(f for _, _, f in self.buckets) - self.backward_end_ms)


@dataclass
class CommRecorder:
    """The DDP communication hook (the default all-reduce, stamped in timed steps only) and a step
    listener. Its clock is the device's (``clock_for``: pooled CUDA events, or the host clock),
    read and recycled at the end of each timed step."""

    device: torch.device
    units: Sequence[Unit]
    backend: str = ""
    steps: list[StepComm] = field(default_factory=list)
    clock: Clock = field(init=False)
    _notes: list[str] = field(default_factory=list)  # from attach
    _unit_of: dict[int, int] = field(default_factory=dict)
    _buckets: dict[int, _Bucket] = field(default_factory=dict)  # by bucket index
    _live: list[_Launch] = field(default_factory=list)
    _timed: bool = False  # in a timed step: the hook stamps
    _t0: Any = None
    _in_bwd: bool = False
    _bwd_end: Any = None

    def __post_init__(self) -> None:
        self.clock = clock_for(self.device)
        self._unit_of = {p.data_ptr(): u.index for u in self.units for p in u.params}

    def attach(self, ddp: DistributedDataParallel) -> bool:
        self.backend = str(dist.get_backend(ddp.process_group))
        try:
            ddp.register_comm_hook(ddp.process_group, self.hook)
        except RuntimeError as exc:  # the user's model has a hook already: it can be registered once
            self._notes.append(f"communication not recorded: {first_line(exc)}")
            return False
        return True

    def hook(self, group, bucket):  # noqa: ANN001, ANN201 - DDP refuses string annotations here
        """Called by DDP's reducer when ``bucket`` (a ``dist.GradBucket``) is ready; outside timed
        steps it is the plain all-reduce."""
        if not self._timed:
            return allreduce_hook(group, bucket)
        info = self._bucket(bucket)
        record = _Launch(info, self.clock.stamp())
        self._live.append(record)

        def done(fut: torch.futures.Future[torch.Tensor]) -> torch.Tensor:
            record.finish = self.clock.stamp()  # on CUDA: the current stream, made to wait on NCCL's
            return fut.value()

        return allreduce_hook(group, bucket).then(done)

    def _bucket(self, bucket: dist.GradBucket) -> _Bucket:
        buffer, params = bucket.buffer(), bucket.parameters()
        key = (buffer.numel(), buffer.dtype, tuple(map(id, params)))
        known = self._buckets.get(bucket.index())
        if known is not None and known.key == key:
            return known
        units = sorted({self._unit_of[p.data_ptr()] for p in params if p.data_ptr() in self._unit_of})
        known = _Bucket(bucket.index(), tensor_bytes(buffer), buffer.numel(),
                        str(buffer.dtype).removeprefix("torch."), sum(p.numel() for p in params), units, key)
        self._buckets[known.index] = known
        return known

    # -- steps --------------------------------------------------------------

    def on_step_begin(self, step: StepInfo) -> None:
        self._timed = step.kind == "timed"
        self._live, self._in_bwd, self._bwd_end = [], False, None
        self._t0 = self.clock.stamp() if self._timed else None

    def on_mark(self, label: Label) -> None:
        if not self._timed:
            return
        if self._in_bwd and label.kind != "bwd":
            self._bwd_end = self.clock.stamp()  # the last one seen is backward's end
        self._in_bwd = label.kind == "bwd"

    def on_step_end(self, step: StepInfo) -> None:
        if not self._timed:
            return
        self._timed = False
        self.clock.sync()

        def ms(stamp: Any) -> float:
            return self.clock.elapsed_ms(self._t0, stamp)

        rows = [(r.bucket, ms(r.launch), ms(r.finish)) for r in self._live if r.finish is not None]
        end = None if self._bwd_end is None else ms(self._bwd_end)
        self.clock.recycle()
        self._live, self._t0, self._bwd_end = [], None, None
        self.steps.append(StepComm(sorted(rows, key=lambda r: r[0].index), end))

    # -- the run's section --------------------------------------------------

    @property
    def warnings(self) -> list[str]:
        """What the run's document should say about the recording (the same on every call)."""
        sizes = sorted({s.bytes for s in self.steps})
        differ = [f"bytes all-reduced differ between steps: {sizes}"] if len(sizes) > 1 else []
        return [*self._notes, *differ]

    def section(self, rank: int, world_size: int, grad_bytes: int) -> DistributedSection:
        return DistributedSection(world_size=world_size, backend=self.backend, rank=rank,
                                  host=socket.gethostname(), comm=self.comm(grad_bytes))

    def comm(self, grad_bytes: int) -> CommSection | None:
        if not self.steps:
            return None
        last = self.steps[-1]
        buckets = [BucketRecord(b.index, b.bytes, b.numel, b.dtype, b.params, b.units,
                                Stats(_per_bucket(self.steps, b.index, 1)),
                                Stats(_per_bucket(self.steps, b.index, 2)))
                   for b, _, _ in last.buckets]
        clock = ("cuda_event: current stream, after NCCL's" if self.device.type == "cuda"
                 else "perf_counter_ns: hook call and future callback (gloo's thread)")
        return CommSection(
            backend=self.backend, clock=clock, buckets=buckets, bytes_per_step=last.bytes,
            grad_bytes=grad_bytes, padding=padding_statement(last.bytes, grad_bytes, buckets),
            allreduce_ms=Stats([s.allreduce_ms for s in self.steps]),
            span_ms=Stats([s.span_ms for s in self.steps]),
            backward_end_ms=Stats([s.backward_end_ms for s in self.steps if s.backward_end_ms is not None]),
            exposed_ms=Stats([s.exposed_ms for s in self.steps]),
        )


def _per_bucket(steps: Sequence[StepComm], index: int, at: int) -> list[float]:
    return [row[at] for s in steps for row in s.buckets if row[0].index == index]


def padding_statement(bytes_per_step: int, grad_bytes: int, buckets: Sequence[BucketRecord]) -> str:
    pad = bytes_per_step - grad_bytes
    slack = sum(b.numel - b.params for b in buckets)
    if pad == 0:
        return "none: the buckets hold exactly the trainable gradients (grad dtype × count)"
    return (f"{pad:+,} bytes against grad dtype × trainable count ({slack:,} buffer elements "
            "beyond their parameters' gradients: alignment padding)")


def grad_bytes(model: nn.Module) -> int:
    """What the buckets must hold: each trainable parameter's gradient, at its dtype."""
    return total_bytes(p for p in model.parameters() if p.requires_grad)


# -- rank 0's document ---------------------------------------------------------------------


def rank_run(run: Run, device: str) -> RankRun:
    d = run.distributed
    comm = d.comm if d else None
    return RankRun(
        rank=d.rank if d else 0, host=d.host if d else "", device=device,
        step_ms=run.step_ms, plain_step_ms=run.plain_step_ms,
        unit_fwd_ms=[u.fwd_ms.median for u in run.units], unit_bwd_ms=[u.bwd_ms.median for u in run.units],
        bytes_per_step=comm.bytes_per_step if comm else None,
        allreduce_ms=comm.allreduce_ms if comm else None, exposed_ms=comm.exposed_ms if comm else None,
    )


def merge_ranks(docs: Sequence[RunDocument]) -> RunDocument:
    """Rank 0's document with every rank's figures per run, and the other ranks' warnings."""
    ordered = sorted(docs, key=lambda d: _doc_rank(d))
    main = ordered[0]
    for name, run in main.runs.items():
        if run.distributed is None:
            continue
        run.distributed.ranks = [rank_run(d.runs[name], str(d.meta.device))
                                 for d in ordered if name in d.runs]
        for other in ordered[1:]:
            for w in other.runs[name].warnings if name in other.runs else []:
                run.warn(w.part, f"rank {_doc_rank(other)}: {w.text}")
    return main


def _doc_rank(doc: RunDocument) -> int:
    return next((r.distributed.rank for r in doc.runs.values() if r.distributed), 0)


def gather_document(doc: RunDocument) -> RunDocument:
    """For a user's own DDP loop: rank 0 gets every rank's figures in its document (a collective:
    call it on every rank); the other ranks get their own document back."""
    if not dist.is_initialized():
        raise TlprofError("gather_document needs an initialized process group (torch.distributed)")
    rank, world = dist.get_rank(), dist.get_world_size()
    group = Group(rank, world, str(dist.get_backend()), torch.device("cpu"), DdpOptions(), owned=False)
    return group.gather(doc)


def options_of(cfg: Any, meta: Mapping[str, Any] | None, n_units: int) -> dict[str, Any]:
    """What must be the same on every rank: the configuration, the model and its units."""
    return {**asdict(cfg), **{f"model {k}": v for k, v in (meta or {}).items()}, "units": n_units,
            "torch": torch.__version__}
