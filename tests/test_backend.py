import numpy as np
import pytest

from dnnrsa import backend


def test_cpu_is_numpy():
    assert backend.get_namespace(device="cpu") is np
    assert backend.resolve_device("cpu") == "cpu"


def test_auto_matches_availability():
    expected = "cuda" if backend.gpu_available() else "cpu"
    assert backend.resolve_device("auto") == expected


def test_unknown_device_names_allowed_values():
    with pytest.raises(
        ValueError, match=r"device must be one of \['auto', 'cpu', 'cuda'\]; got 'tpu'"
    ):
        backend.resolve_device("tpu")


def test_cuda_without_gpu_is_a_clear_error():
    if backend.gpu_available():
        pytest.skip("a GPU is available here")
    with pytest.raises(RuntimeError, match="no usable CUDA device"):
        backend.resolve_device("cuda")


def test_namespace_from_inputs_and_to_numpy():
    x = np.arange(3.0)
    assert backend.get_namespace(x) is np
    assert backend.to_numpy(x) is x


def test_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, dnnrsa, dnnrsa.rdm, dnnrsa.backend; "
        "print(','.join(m for m in ('torch','nipype','cupy','matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_auto_without_a_gpu_device_file_does_not_import_torch():
    """Where no GPU device file exists, device="auto" resolves to the CPU without
    importing torch (seconds in every worker process of a workflow), and the answer is
    torch's own."""
    import subprocess
    import sys

    code = (
        "import sys, dnnrsa.backend as b; d = b.resolve_device('auto'); "
        "t = b.gpu_available('torch'); print(d, t, b._no_gpu_device_file(), "
        "'torch' in sys.modules, 'cupy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    device, torch_sees, no_file, torch_imported, cupy_imported = out.stdout.split()
    if no_file == "False":
        pytest.skip("a GPU device file exists here")
    assert (device, torch_sees, torch_imported, cupy_imported) == ("cpu", "False", "False", "False")
    import torch

    assert torch.cuda.is_available() is False


@pytest.mark.gpu
def test_cupy_roundtrip():
    cp = backend.get_namespace(device="cuda")
    x = cp.arange(5.0)
    assert backend.get_namespace(x) is cp
    np.testing.assert_array_equal(backend.to_numpy(x), np.arange(5.0))


@pytest.mark.parametrize(
    ("cupy_runs", "torch_sees"), [(False, False), (False, True), (True, False), (True, True)]
)
def test_each_side_uses_the_gpu_its_library_can(monkeypatch, caplog, cupy_runs, torch_sees):
    """One place decides for both libraries: each side on the GPU when its own library
    runs there (a GPU machine without CuPy still trains on the GPU), a warning once when
    the two differ, and an explicit 'cuda' refused for the side that cannot."""
    import logging

    from dnnrsa.features import torch_device

    monkeypatch.setattr(backend, "_cupy_module", lambda: object() if cupy_runs else None)
    monkeypatch.setattr(backend, "_torch_sees_cuda", lambda: torch_sees)
    backend._warn_if_split.cache_clear()
    assert backend.gpu_available("cupy") is cupy_runs
    assert backend.gpu_available("torch") is torch_sees
    with caplog.at_level(logging.WARNING, logger="dnnrsa.backend"):
        assert backend.resolve_device("auto") == ("cuda" if cupy_runs else "cpu")
        assert torch_device("auto") == ("cuda" if torch_sees else "cpu")
        backend.resolve_device("auto")
    warnings = [r.getMessage() for r in caplog.records]
    if cupy_runs == torch_sees:
        assert warnings == []
    else:  # once, naming the side left on the CPU
        assert len(warnings) == 1
        assert ("RSA on the CPU" if torch_sees else "networks on the CPU") in warnings[0]
    for resolve, usable, library in (
        (backend.resolve_device, cupy_runs, "cupy"),
        (torch_device, torch_sees, "torch"),
    ):
        assert resolve("cpu") == "cpu"
        if usable:
            assert resolve("cuda") == "cuda"
        else:
            with pytest.raises(RuntimeError, match=f"{library} cannot use a CUDA device"):
                resolve("cuda")
        with pytest.raises(ValueError, match=r"device must be one of .*; got 'tpu'"):
            resolve("tpu")
    with pytest.raises(ValueError, match="library must be one of"):
        backend.gpu_available("jax")
    backend._warn_if_split.cache_clear()
