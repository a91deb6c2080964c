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


@pytest.mark.gpu
def test_cupy_roundtrip():
    cp = backend.get_namespace(device="cuda")
    x = cp.arange(5.0)
    assert backend.get_namespace(x) is cp
    np.testing.assert_array_equal(backend.to_numpy(x), np.arange(5.0))


@pytest.mark.parametrize(
    ("cupy_runs", "torch_sees"), [(False, False), (False, True), (True, False)]
)
def test_one_decision_for_cupy_and_torch(monkeypatch, cupy_runs, torch_sees):
    """A GPU only one of the two libraries can use counts for neither: both sides agree."""
    from dnnrsa.features import torch_device

    asked = []
    monkeypatch.setattr(backend, "_cupy_module", lambda: object() if cupy_runs else None)
    monkeypatch.setattr(backend, "_torch_sees_cuda", lambda: asked.append(1) or torch_sees)
    assert not backend.gpu_available()
    assert asked == ([1] if cupy_runs else [])  # torch is asked only once CuPy found a device
    assert backend.resolve_device("auto") == torch_device("auto") == "cpu"
    assert backend.get_namespace(device="auto") is np
    for resolve in (backend.resolve_device, torch_device):
        with pytest.raises(RuntimeError, match="no usable CUDA device"):
            resolve("cuda")
        with pytest.raises(ValueError, match=r"device must be one of .*; got 'tpu'"):
            resolve("tpu")


def test_both_libraries_on_the_gpu_choose_cuda(monkeypatch):
    from dnnrsa.features import torch_device

    monkeypatch.setattr(backend, "_cupy_module", lambda: object())
    monkeypatch.setattr(backend, "_torch_sees_cuda", lambda: True)
    assert backend.gpu_available()
    assert backend.resolve_device("auto") == torch_device("auto") == "cuda"
    assert backend.resolve_device("cuda") == torch_device("cuda") == "cuda"
    assert backend.resolve_device("cpu") == torch_device("cpu") == "cpu"
