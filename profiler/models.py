"""Build the model to profile: a torchvision architecture or the user's factory."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import is_dataclass
from pathlib import Path

from torch import nn

from .errors import TlprofError
from .workload import ModelSpec, as_spec, unwrap_compiled


def classification_archs() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def build_arch(name: str, num_classes: int | None = None) -> nn.Module:
    """A torchvision classification model with random weights (nothing is downloaded)."""
    import torchvision.models as tvm

    archs = classification_archs()
    if name not in archs:
        close = difflib.get_close_matches(name, archs, n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else "; see torchvision.models.list_models()"
        raise TlprofError(f"unknown arch {name!r}{hint}")
    kwargs = {"weights": None}
    if num_classes is not None:
        if num_classes < 1:
            raise TlprofError(f"--num-classes must be at least 1, got {num_classes}")
        kwargs["num_classes"] = num_classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's notes on init schemes of random weights
        return tvm.get_model(name, **kwargs)


def load_factory(spec: str) -> nn.Module | ModelSpec:
    """``MODULE:CALLABLE`` or ``path/to/file.py:CALLABLE``, called with no arguments.

    The factory returns an ``nn.Module``, or the model with its example inputs and loss: a
    ``tlprof.ModelSpec``, or a mapping or dataclass with ``model``, ``inputs`` and ``loss``.
    MODULE is imported as ``python -m`` would, the current folder first.
    """
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise TlprofError(f"--model {spec!r}: expected MODULE:CALLABLE or path/to/file.py:CALLABLE")
    module = _import_target(target, spec)
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise TlprofError(f"--model {spec!r}: {target} has no callable named {attr!r}")
    try:
        model = factory()
    except Exception as exc:
        raise TlprofError(f"--model {spec!r}: the factory failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(model, nn.Module):
        return unwrap_compiled(model)
    if isinstance(model, (Mapping, ModelSpec)) or is_dataclass(model):
        return as_spec(model, f"--model {spec!r}: what the factory returned")
    raise TlprofError(f"--model {spec!r}: the factory returned {type(model).__name__}, not an nn.Module "
                      "or a ModelSpec")


def _import_target(target: str, spec: str):
    try:
        if target.endswith(".py") or "/" in target:
            path = Path(target)
            if not path.is_file():
                raise TlprofError(f"--model {spec!r}: no such file {target}")
            loader_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules.setdefault(path.stem, module)
            loader_spec.loader.exec_module(module)
            return module
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(target)
    except TlprofError:
        raise
    except Exception as exc:
        raise TlprofError(f"--model {spec!r}: cannot import {target}: {type(exc).__name__}: {exc}") from exc
