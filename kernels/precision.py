"""The precision whose matmul ceiling a run is held to. Torch-free: the reports use it too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TF32_MATMUL_PRECISIONS = ("high", "medium")  # torch.set_float32_matmul_precision values that allow TF32


def _flag(flags: Any, name: str) -> Any:
    if flags is None:
        return None
    if isinstance(flags, Mapping):
        return flags.get(name)
    return getattr(flags, name, None)


def effective_precision(precision: str | None, backend_flags: Any, device: Any) -> str:
    """``precision`` as the arithmetic really ran: ``default`` (the backend flags left as PyTorch or
    the caller had them) is ``tf32`` on CUDA when TF32 is allowed for convolutions (``cudnn_tf32``,
    on by default in PyTorch) or matmuls (``matmul_tf32``, or a float32 matmul precision of
    ``high``/``medium``), else ``fp32``; any other precision is itself (None: ``fp32``).

    ``backend_flags`` is ``meta.backend_flags`` (a ``BackendFlags``, or its dict; None when not
    recorded) and ``device`` a device or its name (``"cuda:0"``, ``"cpu"``). One flag is enough: the
    ceiling is the higher one, so no unit's pass is held to a roof below the rate it may have run at
    (a pass whose ops ran strict fp32 is then compared with the tf32 roof)."""
    if precision is None:
        return "fp32"
    if precision != "default":
        return precision
    cuda = str(device or "").startswith("cuda")
    tf32 = (bool(_flag(backend_flags, "cudnn_tf32")) or bool(_flag(backend_flags, "matmul_tf32"))
            or _flag(backend_flags, "float32_matmul_precision") in TF32_MATMUL_PRECISIONS)
    return "tf32" if cuda and tf32 else "fp32"
