"""On CUDA (skipped elsewhere): backward FLOPs are counted on the autograd device thread, and
the kernel ranges close on the threads that opened them."""

from __future__ import annotations

import threading

import pytest
import torch
from kernel_models import CONV_INPUT, convnet, convnet_forward_flops

from tlprof import ProfileConfig, find_units, profile_model
from tlprof.clock import HostClock
from tlprof.instrument import Instrumenter
from tlprof.kernels import KernelsExtra, measure_ceilings
from tlprof.kernels.flops import LabelFlopCounter

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
BATCH = 4


def test_backward_flops_counted_on_the_autograd_thread():
    model = convnet().cuda()
    x = torch.randn(BATCH, *CONV_INPUT, device="cuda")
    units = find_units(model, x[:1])
    inst = Instrumenter(model, units, HostClock())
    counter = LabelFlopCounter(lambda: inst.current)
    with inst.step(), counter:
        model(x).sum().backward()
    fwd = convnet_forward_flops(BATCH)
    assert [counter.by_label[("bwd", i)] for i in (1, 2, 3)] == [fwd[0], 2 * fwd[1], 2 * fwd[2]]
    main = threading.get_ident()
    print(f"\nbackward ops counted on threads {counter.threads['bwd']}, caller {main}: "
          f"{'the autograd device thread' if main not in counter.threads['bwd'] else 'the caller'}")


def test_profile_with_kernels_on_cuda():
    cfg = ProfileConfig(batch_size=BATCH, input_shape=CONV_INPUT, device="cuda", steps=2, warmup=1,
                        freeze=1, runs=("full", "frozen"))
    profile = profile_model(convnet(), cfg, extras=[KernelsExtra()])
    fwd = convnet_forward_flops(BATCH)
    full, frozen = profile.runs["full"], profile.runs["frozen"]
    assert [u.kernels.flops_bwd for u in full.units] == [fwd[0], 2 * fwd[1], 2 * fwd[2]]
    assert [u.kernels.flops_bwd for u in frozen.units] == [0, fwd[1], 2 * fwd[2]]
    for run in (full, frozen):
        block = run.kernels
        print(f"\n{run.name}: agreement {block.kernel_agreement:.3f}, "
              f"flop threads {block.flop_threads}, warnings {[str(w) for w in run.warnings]}")
        assert block.source == "cuda kernels"
        assert not any("left open" in w.text for w in run.warnings)
        trainable = [u for u in run.units if u.kernels.flops_bwd]
        assert all(u.kernels.kernels_bwd and u.kernels.kernel_bwd_ms > 0 for u in trainable)
        assert all(u.kernels.kernels_fwd for u in run.units)


def test_cuda_ceilings_positive():
    c = measure_ceilings(torch.device("cuda"))
    print(f"\n{c.device_name}: {c.matmul_tflops} TFLOP/s, copy {c.copy_gbps:.0f} GB/s")
    assert all(v > 0 for v in c.matmul_tflops.values()) and c.copy_gbps > 0
    assert {"fp32", "tf32", "fp16"} <= set(c.matmul_tflops)
