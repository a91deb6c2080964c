"""Array backend: numpy on the CPU, CuPy on an NVIDIA GPU.

The array module is chosen once, at a public entry point, from the inputs or an
explicit ``device=`` argument, and then passed down as ``xp``. There is no global
switch. CuPy is optional: where it is not installed, or where it imports but no
CUDA device can be used, every path runs on numpy.

Whether a GPU is usable is decided here, once, for both array libraries of dnnrsa:
CuPy (the RSA side) and torch (the networks, through
:func:`dnnrsa.features.torch_device`). A device counts only when both can run on it,
so ``device="auto"`` never puts one side on the GPU and the other on the CPU.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


@functools.cache
def _cupy_module():
    """Return the cupy module if it imports *and* a device really works, else None."""
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
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception as exc:  # a broken CUDA library at import
        logger.debug("torch cannot use a CUDA device: %s", exc)
        return False


def gpu_available() -> bool:
    """Whether a CUDA device is usable here: CuPy is installed and runs a kernel on it,
    and torch sees it too.

    The one answer for both array libraries (see the module's docstring); torch is
    asked only once CuPy has found a device. The probes run once per process and
    their results are cached.
    """
    return _cupy_module() is not None and _torch_sees_cuda()


def resolve_device(device: str = "auto") -> str:
    """Turn a requested device into the one that will be used.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` picks ``"cuda"`` when a GPU is usable (:func:`gpu_available`) and
        ``"cpu"`` otherwise.

    Returns
    -------
    str
        ``"cpu"`` or ``"cuda"``.

    Raises
    ------
    ValueError
        If ``device`` is not one of :data:`DEVICES`.
    RuntimeError
        If ``"cuda"`` is requested but no usable GPU is present.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)}; got {device!r}")
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        if not gpu_available():
            raise RuntimeError(
                "device='cuda' was requested but no usable CUDA device was found "
                "(CuPy and torch must both run on it: install the 'gpu' extra, "
                "cupy-cuda13x, and check the driver), or use device='cpu'"
            )
        return "cuda"
    return "cuda" if gpu_available() else "cpu"


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
