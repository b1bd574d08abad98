"""NVML behind one small interface (docs/design.md §5): the GPU's identity, state and energy counter.

``open_nvml()`` gives the real NVML through ``pynvml`` (nvidia-ml-py) or raises
``NvmlUnavailable`` with one line saying why; tests swap in a fake with the same
methods. ``pynvml`` is imported only when NVML is opened, never on CPU runs.

``tlprof devices`` exits 0 with a table of the GPUs, or prints one
``tlprof: error: ...`` line and exits 2 (like every CLI error) when there is no
NVML, no driver or no GPU, so scripts can test for a usable GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .errors import TlprofError

if TYPE_CHECKING:
    import torch

CLOCKS = ("sm", "memory", "graphics")

# nvmlClocksEventReason* (formerly ClocksThrottleReason*) bits; "gpu_idle" is not a slowdown.
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


class NvmlUnavailable(TlprofError):
    """No NVML here (package, driver or GPU missing): one line for the user."""


class NvmlError(RuntimeError):
    """One NVML call failed, e.g. a reading this GPU does not support."""


class Nvml(Protocol):
    """The NVML calls tlprof makes; devices by NVML index, units in the names."""

    def driver_version(self) -> str: ...

    def cuda_driver_version(self) -> int: ...

    def device_count(self) -> int: ...

    def name(self, index: int) -> str: ...

    def uuid(self, index: int) -> str: ...

    def memory_total_bytes(self, index: int) -> int: ...

    def clock_mhz(self, index: int, clock: str, maximum: bool = False) -> int: ...

    def power_limit_w(self, index: int) -> float: ...

    def power_w(self, index: int) -> float: ...

    def temperature_c(self, index: int) -> int: ...

    def throttle_reasons(self, index: int) -> int: ...

    def total_energy_mj(self, index: int) -> int: ...

    def close(self) -> None: ...


class PynvmlNvml:
    """The real NVML, through ``pynvml``."""

    def __init__(self, pynvml: Any) -> None:
        self._nv = pynvml
        self._handles: dict[int, Any] = {}
        self._clock_ids = {"sm": pynvml.NVML_CLOCK_SM, "memory": pynvml.NVML_CLOCK_MEM,
                           "graphics": pynvml.NVML_CLOCK_GRAPHICS}

    def _call(self, fn: str, *args: Any) -> Any:
        try:
            return getattr(self._nv, fn)(*args)
        except (self._nv.NVMLError, AttributeError) as exc:  # AttributeError: an older pynvml
            raise NvmlError(f"{fn}: {exc}") from exc

    def _handle(self, index: int) -> Any:
        if index not in self._handles:
            self._handles[index] = self._call("nvmlDeviceGetHandleByIndex", index)
        return self._handles[index]

    def driver_version(self) -> str:
        return str(self._call("nvmlSystemGetDriverVersion"))

    def cuda_driver_version(self) -> int:
        return int(self._call("nvmlSystemGetCudaDriverVersion"))

    def device_count(self) -> int:
        return int(self._call("nvmlDeviceGetCount"))

    def name(self, index: int) -> str:
        return str(self._call("nvmlDeviceGetName", self._handle(index)))

    def uuid(self, index: int) -> str:
        return str(self._call("nvmlDeviceGetUUID", self._handle(index)))

    def memory_total_bytes(self, index: int) -> int:
        return int(self._call("nvmlDeviceGetMemoryInfo", self._handle(index)).total)

    def clock_mhz(self, index: int, clock: str, maximum: bool = False) -> int:
        fn = "nvmlDeviceGetMaxClockInfo" if maximum else "nvmlDeviceGetClockInfo"
        return int(self._call(fn, self._handle(index), self._clock_ids[clock]))

    def power_limit_w(self, index: int) -> float:
        return self._call("nvmlDeviceGetEnforcedPowerLimit", self._handle(index)) / 1000

    def power_w(self, index: int) -> float:
        return self._call("nvmlDeviceGetPowerUsage", self._handle(index)) / 1000

    def temperature_c(self, index: int) -> int:
        return int(self._call("nvmlDeviceGetTemperature", self._handle(index),
                              self._nv.NVML_TEMPERATURE_GPU))

    def throttle_reasons(self, index: int) -> int:
        try:
            return int(self._call("nvmlDeviceGetCurrentClocksEventReasons", self._handle(index)))
        except NvmlError:  # drivers before the rename
            return int(self._call("nvmlDeviceGetCurrentClocksThrottleReasons", self._handle(index)))

    def total_energy_mj(self, index: int) -> int:
        return int(self._call("nvmlDeviceGetTotalEnergyConsumption", self._handle(index)))

    def close(self) -> None:
        self._call("nvmlShutdown")


def _why(pynvml: Any, exc: Exception) -> str:
    known = {
        "NVMLError_LibraryNotFound": "no NVIDIA driver on this machine (libnvidia-ml.so not found)",
        "NVMLError_DriverNotLoaded": "the NVIDIA driver is not loaded",
        "NVMLError_NoPermission": "no permission to query the NVIDIA driver",
    }
    for cls_name, text in known.items():
        cls = getattr(pynvml, cls_name, None)
        if cls is not None and isinstance(exc, cls):
            return text
    return str(exc)


def open_nvml() -> Nvml:
    try:
        import pynvml
    except ImportError as exc:
        raise NvmlUnavailable("NVML is not available: the nvidia-ml-py package is not installed") from exc
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML is not available: {_why(pynvml, exc)}") from exc
    return PynvmlNvml(pynvml)


# -- readings -------------------------------------------------------------------------


def decode_throttle_reasons(mask: int) -> list[str]:
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    return names + ([f"0x{unknown:x}"] if unknown else [])


def cuda_version_text(version: int) -> str:
    """NVML's 12040 → "12.4"."""
    return f"{version // 1000}.{version % 1000 // 10}"


def _maybe(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except NvmlError:
        return None


@dataclass
class DeviceInfo:
    index: int  # NVML's index
    name: str
    uuid: str
    memory_total_bytes: int | None
    power_limit_w: float | None
    max_sm_clock_mhz: int | None
    max_memory_clock_mhz: int | None


@dataclass
class DeviceState:
    temperature_c: int | None
    sm_clock_mhz: int | None
    memory_clock_mhz: int | None
    power_w: float | None
    throttle_reasons: list[str] | None


def read_info(nv: Nvml, index: int) -> DeviceInfo:
    return DeviceInfo(
        index=index,
        name=nv.name(index),
        uuid=nv.uuid(index),
        memory_total_bytes=_maybe(nv.memory_total_bytes, index),
        power_limit_w=_maybe(nv.power_limit_w, index),
        max_sm_clock_mhz=_maybe(nv.clock_mhz, index, "sm", True),
        max_memory_clock_mhz=_maybe(nv.clock_mhz, index, "memory", True),
    )


def read_state(nv: Nvml, index: int) -> DeviceState:
    mask = _maybe(nv.throttle_reasons, index)
    return DeviceState(
        temperature_c=_maybe(nv.temperature_c, index),
        sm_clock_mhz=_maybe(nv.clock_mhz, index, "sm"),
        memory_clock_mhz=_maybe(nv.clock_mhz, index, "memory"),
        power_w=_maybe(nv.power_w, index),
        throttle_reasons=None if mask is None else decode_throttle_reasons(mask),
    )


def driver_info(nv: Nvml) -> dict[str, str | None]:
    cuda = _maybe(nv.cuda_driver_version)
    return {
        "driver_version": _maybe(nv.driver_version),
        "cuda_driver_version": None if cuda is None else cuda_version_text(cuda),
    }


def cuda_uuid(device: torch.device) -> str | None:
    """The CUDA device's UUID as torch sees it (CUDA_VISIBLE_DEVICES applied), or None."""
    import torch

    try:
        return str(torch.cuda.get_device_properties(device).uuid)
    except (AssertionError, RuntimeError, AttributeError):
        return None


def nvml_index(nv: Nvml, uuid: str | None, fallback: int) -> int:
    """NVML's index of the GPU with this UUID: NVML counts all GPUs, CUDA only the visible ones."""
    if uuid:
        wanted = uuid.removeprefix("GPU-")
        for i in range(nv.device_count()):
            found = _maybe(nv.uuid, i)
            if found and found.removeprefix("GPU-") == wanted:
                return i
    return fallback


class DeviceWatch:
    """The profiled GPU's identity and state at the start and end of a profile, for its meta."""

    def __init__(self, nv: Nvml | None = None, index: int = 0, start: DeviceState | None = None,
                 error: str | None = None) -> None:
        self.nv, self.index, self.start_state, self.error = nv, index, start, error

    @classmethod
    def start(cls, device: torch.device) -> DeviceWatch:
        if device.type != "cuda":
            return cls()
        try:
            nv = open_nvml()
        except NvmlUnavailable as exc:
            return cls(error=str(exc))
        index = nvml_index(nv, cuda_uuid(device), device.index or 0)
        return cls(nv, index, read_state(nv, index))

    def finish(self) -> dict[str, Any]:
        """``{"gpu": {...}}`` for a CUDA profile, ``{}`` for a CPU one."""
        if self.error is not None:
            return {"gpu": {"nvml": self.error}}
        if self.nv is None:
            return {}
        try:
            gpu = {**driver_info(self.nv), **asdict(read_info(self.nv, self.index)),
                   "start": asdict(self.start_state), "end": asdict(read_state(self.nv, self.index))}
        finally:
            self.nv.close()
        return {"gpu": gpu}


# -- tlprof devices -------------------------------------------------------------------


@dataclass
class DevicesSnapshot:
    driver: dict[str, str | None]
    devices: list[tuple[DeviceInfo, DeviceState]]


def devices_snapshot() -> DevicesSnapshot:
    """Every GPU NVML sees, read now; one TlprofError line when there is none."""
    nv = open_nvml()
    try:
        if nv.device_count() == 0:
            raise NvmlUnavailable(f"NVML sees no GPU (driver {_maybe(nv.driver_version)})")
        return DevicesSnapshot(driver_info(nv),
                               [(read_info(nv, i), read_state(nv, i)) for i in range(nv.device_count())])
    finally:
        nv.close()
