"""The installed environment: torch, torchaudio and torchvision load together, and it is the
locked one.

torchaudio's compiled library is built against one exact torch release; beside any other it
fails to load with an "undefined symbol" deep inside the first audio clip. The guard below
imports both in a fresh interpreter and computes a mel spectrogram of a known tone, so a
mismatched pair fails here, first, with both versions named. torchvision is the same: each
release declares the one torch it was built for (``torch==X.Y.Z``), which must be the locked
torch, and its compiled operators run a known non-maximum suppression in a fresh interpreter.
"""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"
BOOTSTRAP = REPO / "requirements" / "bootstrap.txt"

SAMPLE_RATE = 16000
TONE_HZ = 440.0
N_FFT, HOP, N_MELS = 400, 160, 40

# Runs in a fresh interpreter: a torchaudio that cannot load can abort the process, and a
# failed import must not leave half-loaded modules in the test session.
_MEL_SCRIPT = f"""
import json, math, sys
out = {{}}
try:
    import torch, torchaudio
    t = torch.arange({SAMPLE_RATE}, dtype=torch.float64) / {SAMPLE_RATE}
    tone = torch.sin(2 * math.pi * {TONE_HZ} * t)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate={SAMPLE_RATE}, n_fft={N_FFT}, hop_length={HOP}, n_mels={N_MELS},
        power=2.0, center=True,
    ).double()(tone)
    out["mel"] = mel.tolist()
except BaseException as exc:
    out["error"] = f"{{type(exc).__name__}}: {{exc}}"
json.dump(out, sys.stdout)
"""


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _reference_mel() -> np.ndarray:
    """Power mel spectrogram of the tone in numpy: periodic Hann window, reflect-padded
    centred frames, HTK mel scale with triangular filters from 0 Hz to Nyquist, no norm."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * TONE_HZ * t)
    padded = np.pad(tone, N_FFT // 2, mode="reflect")
    n_frames = 1 + (padded.size - N_FFT) // HOP
    frames = np.stack([padded[i * HOP : i * HOP + N_FFT] for i in range(n_frames)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # frames x freqs

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    rising = (freqs[:, None] - edges[None, :-2]) / np.diff(edges)[None, :-1]
    falling = (edges[None, 2:] - freqs[:, None]) / np.diff(edges)[None, 1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))  # freqs x mels
    return (power @ filters).T  # mels x frames


def test_torchaudio_loads_with_the_installed_torch():
    torch_v, audio_v = _installed("torch"), _installed("torchaudio")
    versions = f"torch {torch_v} with torchaudio {audio_v}"
    proc = subprocess.run(
        [sys.executable, "-c", _MEL_SCRIPT], capture_output=True, text=True, timeout=300
    )
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out = {"error": f"the interpreter died (exit {proc.returncode}): {proc.stderr[-800:]}"}
    assert "error" not in out, (
        f"torchaudio cannot be used beside this torch ({versions}). torch and torchaudio must be "
        f"one matching release pair (setup.cfg pins it; `make install` installs it from "
        f"requirements/lock.txt). Underlying error: {out.get('error')}"
    )
    mel = np.asarray(out["mel"])
    reference = _reference_mel()
    assert mel.shape == reference.shape, versions

    # Known answer: away from the padded ends, the tone's energy peaks in the mel band
    # whose centre frequency is nearest 440 Hz (band 7 of 40 up to 8 kHz, centre 445 Hz).
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    centres = np.linspace(0.0, hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2)[1:-1]
    band = int(np.argmin(np.abs(centres - hz_to_mel(TONE_HZ))))
    assert np.all(np.argmax(mel[:, 2:-2], axis=0) == band), versions
    np.testing.assert_allclose(mel, reference, rtol=1e-6, atol=1e-6 * reference.max())


_NMS_SCRIPT = """
import json, sys
out = {}
try:
    import torch, torchvision
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    out["keep"] = torchvision.ops.nms(boxes, scores, 0.5).tolist()
except BaseException as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
json.dump(out, sys.stdout)
"""


def test_torchvision_runs_with_the_installed_torch():
    versions = f"torch {_installed('torch')} with torchvision {_installed('torchvision')}"
    proc = subprocess.run(
        [sys.executable, "-c", _NMS_SCRIPT], capture_output=True, text=True, timeout=300
    )
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out = {"error": f"the interpreter died (exit {proc.returncode}): {proc.stderr[-800:]}"}
    assert "error" not in out, (
        f"torchvision cannot be used beside this torch ({versions}); setup.cfg pins the pair, "
        f"`make install` installs it from requirements/lock.txt. Underlying error: "
        f"{out.get('error')}"
    )
    # boxes 0 and 1 overlap with IoU 81/119 > 0.5: the lower-scored one is suppressed
    assert out["keep"] == [0, 2], versions


def test_torchvision_requires_the_locked_torch():
    """torchvision's own metadata names the one torch it was built for: the locked one."""
    lock = _lock_pins(LOCK)
    required = [r for r in metadata.requires("torchvision") or [] if re.match(r"torch\b(?!\w)", r)]
    pins = [m.group(1) for r in required if (m := re.search(r"==\s*([\w.+]+)", r))]
    assert pins, f"torchvision's metadata names no exact torch: {required}"
    assert pins == [lock["torch"]], (
        f"torchvision {_installed('torchvision')} requires torch {pins}, the lock has torch "
        f"{lock['torch']}: pin the torchvision release built for the locked torch in setup.cfg "
        "and run `make lock`"
    )
    assert _installed("torch") == lock["torch"]


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def _requirements(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", line)
        if m:
            pins[_canonical(m.group(1))] = m.group(2)
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_torch_and_torchaudio_are_one_exact_pair_everywhere():
    requires = _requirements(_setup_cfg()["options"]["install_requires"])
    pins = {}
    for req in requires:
        m = re.fullmatch(r"(torch|torchaudio|torchvision)==(\d+\.\d+\.\d+)", req)
        if m:
            pins[m.group(1)] = m.group(2)
    assert set(pins) == {"torch", "torchaudio", "torchvision"}, (
        "setup.cfg must pin torch, torchaudio and torchvision to exact releases (name==X.Y.Z), "
        "got " + ", ".join(r for r in requires if r.startswith("torch"))
    )
    assert pins["torch"] == pins["torchaudio"], f"setup.cfg pins a mismatched pair: {pins}"
    lock = _lock_pins(LOCK)
    assert {k: lock.get(k) for k in pins} == pins, "requirements/lock.txt differs from setup.cfg"
    # every other runtime dependency keeps a range for library users
    others = [r for r in requires if not r.startswith(("torch==", "torchaudio==", "torchvision=="))]
    assert not [r for r in others if "==" in r], others


def test_lock_covers_every_declared_dependency():
    cfg = _setup_cfg()
    declared = _requirements(cfg["options"]["install_requires"])
    for extra in ("test", "gpu", "networks"):
        declared += _requirements(cfg["options.extras_require"][extra])
    lock = _lock_pins(LOCK)
    names = [_canonical(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in declared]
    missing = [n for n in names if n not in lock]
    assert not missing, f"requirements/lock.txt lacks {missing}: run `make lock`"
    boot = _lock_pins(BOOTSTRAP)
    assert boot and all(lock.get(k) == v for k, v in boot.items()), (
        "requirements/bootstrap.txt disagrees with requirements/lock.txt: run `make lock`"
    )


def test_installed_environment_is_the_locked_one():
    """Every package of the environment (dnnrsa itself aside) at the locked version."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    )
    lock = _lock_pins(LOCK)
    installed = {}
    for line in proc.stdout.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            installed[_canonical(name)] = version.strip()
    installed.pop("dnnrsa", None)
    off = {n: v for n, v in installed.items() if lock.get(n) != v}
    assert not off, (
        "installed packages that differ from requirements/lock.txt (name: installed, locked): "
        + ", ".join(f"{n}: {v}, {lock.get(n, 'not in the lock')}" for n, v in sorted(off.items()))
        + ". Recreate the environment with `make clean install`."
    )
