"""Array backend: numpy on the CPU, CuPy on an NVIDIA GPU.

The array module is chosen once, at a public entry point, from the inputs or an
explicit ``device=`` argument, and then passed down as ``xp``. There is no global
switch. CuPy is optional: where it is not installed, or where it imports but no
CUDA device can be used, every path runs on numpy.

Whether a GPU is usable is decided here, once per process, for both array libraries
of dnnrsa: CuPy (the RSA side, :func:`resolve_device`) and torch (the networks,
:func:`dnnrsa.features.torch_device`, which calls ``resolve_device(device, "torch")``).
Each side uses the GPU when its own library can run on it: a GPU machine without the
optional CuPy still trains and runs its networks on the GPU. When the two answers
differ, ``device="auto"`` says so once, in a warning naming the side that stays on the
CPU and why, rather than splitting the work silently.
"""

from __future__ import annotations

import functools
import glob
import logging
import sys
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


#: Device files through which a process reaches a GPU on Linux: NVIDIA's driver
#: (``/dev/nvidia0``, ``/dev/nvidiactl``, ...), WSL's GPU paravirtualisation and AMD's
#: ROCm (whose torch builds also answer ``torch.cuda``).
GPU_DEVICE_FILES = ("/dev/nvidia*", "/dev/dxg", "/dev/kfd")


@functools.cache
def _no_gpu_device_file() -> bool:
    """True on Linux when none of :data:`GPU_DEVICE_FILES` exists: no library can reach
    a GPU then, and neither CuPy nor torch needs importing to say so (importing torch
    takes seconds, in every worker process that asks)."""
    if not sys.platform.startswith("linux"):
        return False
    return not any(glob.glob(pattern) for pattern in GPU_DEVICE_FILES)


@functools.cache
def _cupy_module():
    """Return the cupy module if it imports *and* a device really works, else None."""
    if _no_gpu_device_file():
        return None
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA library at import
        logger.debug("CuPy not importable: %s", exc)
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        # A real allocation and kernel launch: some drivers report devices that fail here.
        probe = cupy.arange(4, dtype=cupy.float32)
        if float((probe * 2).sum().get()) != 12.0:
            return None
    except Exception as exc:
        logger.debug("CuPy imports but no usable CUDA device: %s", exc)
        return None
    return cupy


@functools.cache
def _torch_sees_cuda() -> bool:
    """Whether torch (a dependency of dnnrsa) can use a CUDA device."""
    if "torch" not in sys.modules and _no_gpu_device_file():
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception as exc:  # a broken CUDA library at import
        logger.debug("torch cannot use a CUDA device: %s", exc)
        return False


LIBRARIES = ("cupy", "torch")


def gpu_available(library: str = "cupy") -> bool:
    """Whether ``library`` can run on a CUDA device here.

    ``"cupy"`` (the RSA side): CuPy is installed and runs a kernel on a device;
    ``"torch"`` (the networks): ``torch.cuda.is_available()``. The probes run once per
    process and their results are cached.
    """
    if library not in LIBRARIES:
        raise ValueError(f"library must be one of {list(LIBRARIES)}; got {library!r}")
    return _cupy_module() is not None if library == "cupy" else _torch_sees_cuda()


@functools.cache
def _warn_if_split() -> None:
    """Once per process: say so when only one library can use the GPU."""
    if _torch_sees_cuda() and _cupy_module() is None:
        logger.warning(
            "torch can use the CUDA device but CuPy cannot (install the 'gpu' extra, "
            "cupy-cuda13x): the networks run on the GPU and the RSA on the CPU"
        )
    elif _cupy_module() is not None and not _torch_sees_cuda():
        logger.warning(
            "CuPy can use the CUDA device but torch cannot (a CPU-only torch build?): "
            "the RSA runs on the GPU and the networks on the CPU"
        )


def resolve_device(device: str = "auto", library: str = "cupy") -> str:
    """Turn a requested device into the one ``library`` will use.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` picks ``"cuda"`` when ``library`` can use a GPU
        (:func:`gpu_available`) and ``"cpu"`` otherwise.
    library : {"cupy", "torch"}
        The array side asking: ``"cupy"`` for the RSA, ``"torch"`` for the networks.

    Returns
    -------
    str
        ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    ValueError
        If ``device`` is not one of :data:`DEVICES` or ``library`` not one of
        :data:`LIBRARIES`.
    RuntimeError
        If ``"cuda"`` is requested but ``library`` cannot use a GPU.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)}; got {device!r}")
    usable = gpu_available(library)
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        if not usable:
            need = (
                "install the 'gpu' extra, cupy-cuda13x, and check the driver"
                if library == "cupy"
                else "check the driver and that torch is a CUDA build"
            )
            raise RuntimeError(
                f"device='cuda' was requested but {library} cannot use a CUDA device: no "
                f"usable CUDA device was found ({need}); or use device='cpu'"
            )
        return "cuda"
    _warn_if_split()
    return "cuda" if usable else "cpu"


def is_cupy_array(x: Any) -> bool:
    """True if ``x`` is a CuPy array (without importing CuPy when it is not)."""
    return type(x).__module__.split(".")[0] == "cupy"


def get_namespace(*arrays: Any, device: str | None = None):
    """Return the array module (numpy or cupy) to compute with.

    Parameters
    ----------
    *arrays : array-like
        Inputs; if any is a CuPy array and ``device`` is None, cupy is returned.
    device : {"auto", "cpu", "cuda"} or None
        Explicit choice; wins over the inputs.
    """
    if device is not None:
        return _cupy_module() if resolve_device(device) == "cuda" else np
    if any(is_cupy_array(a) for a in arrays):
        return _cupy_module() or np
    return np


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array, copying from the GPU when needed."""
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)


__all__ = [
    "DEVICES",
    "get_namespace",
    "gpu_available",
    "is_cupy_array",
    "resolve_device",
    "to_numpy",
]
