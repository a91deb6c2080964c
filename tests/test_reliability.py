"""Faults: a killed run leaves no process and no temporary file behind, a failing step
ends the run promptly, and the stimulus-path rule (symlinks, git-annex)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .bids_fixtures import make_small_bids

SL = ["--radius-mm", "6", "--min-voxels", "5", "--nprocs", "2"]
RUN = [
    sys.executable,
    "-c",
    "import sys; from dnnrsa.bids_app.run import main; sys.exit(main(sys.argv[1:]))",
]
MARK = "DNNRSA_TEST_PROCESS_MARK"


# --------------------------------------------------------------------------- processes
def _processes() -> dict[int, tuple[str, int]]:
    """pid -> (state, parent pid) of every process, read from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (fields[0], int(fields[1]))
    return table


def _marked(marker: str) -> list[int]:
    """Live (not zombie) processes whose environment carries ``marker``.

    The environment is inherited by every process a run starts (forkserver, workers,
    resource tracker), also after they are re-parented when the run dies.
    """
    found = []
    for pid, (state, _ppid) in _processes().items():
        if state == "Z" or pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"{MARK}={marker}".encode() in environ.split(b"\0"):
            found.append(pid)
    return found


def _describe(pids) -> str:
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            cmd = "?"
        out.append(f"{pid}: {cmd[:160]}")
    return "\n".join(out)


def _wait_gone(marker: str, seconds: float = 20.0) -> list[int]:
    deadline = time.monotonic() + seconds
    left = _marked(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = _marked(marker)
    return left


def _end(pids) -> None:
    """Clean up after a failed check: end the given leftover processes of this test."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _marked_env(marker: str) -> dict:
    return {**os.environ, MARK: marker}


# --------------------------------------------------------------------------- 7: kill -9
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_small_bids(tmp_path_factory.mktemp("reliability") / "bids")


def _argv(small, base: Path) -> list[str]:
    return [
        str(small.root),
        str(base / "out"),
        "participant",
        "-w",
        str(base / "work"),
        "--model-rdm",
        f"category={small.model_rdm}",
        "--skip-bids-validation",
        *SL,
    ]


def _outputs(base: Path) -> dict[str, bytes]:
    """The derivatives of a run (maps, tables, sidecars), with the run's folder masked."""
    out = base / "out"
    files = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out)
        if not path.is_file() or rel.parts[0] in ("logs", "figures") or path.suffix == ".html":
            continue
        if path.name in ("dnnrsa_config.toml", "dataset_description.json"):
            continue
        data = path.read_bytes()
        if path.suffix in (".json", ".tsv"):
            data = data.replace(str(base).encode(), b"<run>")
        files[str(rel)] = data
    return files


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.is_file() and p.name != ".bidsignore"]


def test_kill9_leaves_no_process_and_rerun_matches_a_clean_run(small, tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    inputs = _tree(small.root)
    done = subprocess.run([*RUN, *_argv(small, clean)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    marker = uuid.uuid4().hex
    proc = subprocess.Popen(
        [*RUN, *_argv(small, killed)],
        env=_marked_env(marker),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # wait until the workflow runs in workers (grandchildren of the run), then kill it
        deadline = time.monotonic() + 300
        worker = False
        while not worker and proc.poll() is None and time.monotonic() < deadline:
            table = _processes()
            mine = set(_marked(marker))
            worker = any(
                table[p][1] in mine and table[p][1] != proc.pid for p in mine if p in table
            )
            time.sleep(0.1)
        assert worker, "no worker process was seen"
        time.sleep(1.0)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        left = _wait_gone(marker, 20.0)
        message = "processes outlived the killed run:\n" + _describe(left)
        _end(left)
        assert not left, message
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # stale temporary files, as a kill during a write leaves them (old and new naming)
    func = killed / "out" / "sub-01" / "func"
    func.mkdir(parents=True, exist_ok=True)
    stem = "sub-01_task-cat_space-native_desc-lsa_stat-effect_statmap"
    planted = [
        func / f".{stem}.nii.gz.k3j4h5g6.nii.gz",
        func / f".{stem}.json.ab12cd34.part",
        func / f".{stem}.nii.gz.zz98yy76.tmp",
    ]
    for path in planted:
        path.write_bytes(b"half-written")
        os.utime(path, (time.time() - 600, time.time() - 600))

    again = subprocess.run(
        [*RUN, *_argv(small, killed)], capture_output=True, text=True, timeout=900
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert not _temp_files(killed / "out")
    reference, rerun = _outputs(clean), _outputs(killed)
    assert sorted(rerun) == sorted(reference)
    different = [name for name in reference if reference[name] != rerun[name]]
    assert not different
    assert _tree(small.root) == inputs  # the data set is never written


def test_temporary_names_do_not_look_like_outputs(tmp_path):
    import nibabel as nib
    import numpy as np

    from dnnrsa import _io

    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        return real_replace(src, dst)

    img = nib.Nifti1Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4))
    target = tmp_path / "sub-01_statmap.nii.gz"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_io.os, "replace", spy)
        _io.atomic_save_nifti(img, target)
        with _io.atomic_write(tmp_path / "table.tsv") as fh:
            fh.write("a\n")
    assert len(seen) == 2
    for name in seen:
        assert name.startswith(".") and name.endswith(".tmp"), name
        assert not name.endswith((".nii.gz", ".nii", ".tsv"))
    np.testing.assert_array_equal(np.asarray(nib.load(str(target)).dataobj), img.get_fdata())
    # the bytes equal nibabel's own writer (deterministic gzip, no name in the header)
    direct = tmp_path / "direct.nii.gz"
    img.to_filename(str(direct))
    assert target.read_bytes() == direct.read_bytes()
    assert not _temp_files(tmp_path)
