"""Faults: a killed run leaves no process and no temporary file behind, a failing step
ends the run promptly, and the stimulus-path rule (symlinks, git-annex)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

SL = ["--radius-mm", "6", "--min-voxels", "5", "--nprocs", "2"]
RUN = [
    sys.executable,
    "-c",
    "import sys; from dnnrsa.bids_app.run import main; sys.exit(main(sys.argv[1:]))",
]
MARK = "DNNRSA_TEST_PROCESS_MARK"
REPO = Path(__file__).resolve().parents[1]


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
def small(bids_two_subjects):
    """The session's two-participant data set (a test that edits it edits a copy)."""
    return bids_two_subjects


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


#: Hidden files a run keeps in its output folder on purpose.
KEPT_HIDDEN = (".bidsignore", ".dnnrsa.lock")


def _temp_files(root: Path) -> list[Path]:
    """Hidden files left behind: temporaries (the folder's lock file and .bidsignore are
    the only hidden files a run keeps)."""
    return [p for p in root.rglob(".*") if p.is_file() and p.name not in KEPT_HIDDEN]


@pytest.mark.slow
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


# --------------------------------------------------------------------------- 8: stimulus paths
def _dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    (root / "stimuli").mkdir(parents=True)
    (root / "stimuli" / "a.wav").write_bytes(b"RIFF")
    return root


def _annex_object(git_dir: Path, name: str, present: bool = True) -> Path:
    key = f"SHA256E-s4--{uuid.uuid4().hex}{Path(name).suffix}"
    obj = git_dir / "annex" / "objects" / "Xy" / "Zw" / key / key
    (git_dir / "annex" / "objects").mkdir(parents=True, exist_ok=True)
    if present:
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(b"RIFF")
    return obj


def _resolve(root: Path, value: str):
    from dnnrsa.bids_app.collect import resolve_stim_file

    return resolve_stim_file(root, value, root / "sub-01" / "func" / "events.tsv")


def test_stim_file_plain_and_in_subfolder(tmp_path):
    root = _dataset(tmp_path)
    (root / "stimuli" / "sub").mkdir()
    (root / "stimuli" / "sub" / "b.wav").write_bytes(b"RIFF")
    assert _resolve(root, "a.wav").read_bytes() == b"RIFF"
    assert _resolve(root, "sub/b.wav").name == "b.wav"
    assert _resolve(root, "sub/../a.wav").name == "a.wav"  # no '..' left once normalised


@pytest.mark.parametrize("value", ["../participants.tsv", "/etc/passwd", "sub/../../x.wav", ""])
def test_stim_file_outside_stimuli_is_refused(tmp_path, value):
    from dnnrsa.bids_app.errors import DatasetInvalid

    root = _dataset(tmp_path)
    (root / "participants.tsv").write_text("participant_id\n")
    with pytest.raises(DatasetInvalid):
        _resolve(root, value)


def test_stimuli_folder_linked_outside_is_refused(tmp_path):
    from dnnrsa.bids_app.errors import DatasetInvalid

    root = tmp_path / "ds"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.wav").write_bytes(b"RIFF")
    (root / "stimuli").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DatasetInvalid, match="outside"):
        _resolve(root, "a.wav")


def test_stimulus_linked_outside_is_refused(tmp_path):
    from dnnrsa.bids_app.errors import DatasetInvalid

    root = _dataset(tmp_path)
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF")
    (root / "stimuli" / "b.wav").symlink_to(secret)
    with pytest.raises(DatasetInvalid, match="outside"):
        _resolve(root, "b.wav")
    # a link to a link that leaves the data set is refused as well
    (root / "stimuli" / "c.wav").symlink_to("b.wav")
    with pytest.raises(DatasetInvalid, match="outside"):
        _resolve(root, "c.wav")


def test_links_inside_the_dataset_are_followed(tmp_path):
    root = _dataset(tmp_path)
    (root / "sourcedata" / "audio").mkdir(parents=True)
    (root / "sourcedata" / "audio" / "d.wav").write_bytes(b"RIFF")
    (root / "stimuli" / "d.wav").symlink_to(Path("..") / "sourcedata" / "audio" / "d.wav")
    (root / "stimuli" / "audio").symlink_to(
        Path("..") / "sourcedata" / "audio", target_is_directory=True
    )
    assert _resolve(root, "d.wav").read_bytes() == b"RIFF"
    assert _resolve(root, "audio/d.wav").read_bytes() == b"RIFF"


def test_annex_link_of_the_dataset_is_accepted(tmp_path):
    root = _dataset(tmp_path)
    obj = _annex_object(root / ".git", "e.wav")
    link = root / "stimuli" / "e.wav"
    link.symlink_to(os.path.relpath(obj, link.parent))
    path = _resolve(root, "e.wav")
    assert path.name == "e.wav"  # the name as written (its extension tells the format)
    assert path.read_bytes() == b"RIFF"


def test_annex_link_of_a_superdataset_is_accepted(tmp_path):
    """A subdataset whose .git points into the superdataset's .git/modules."""
    sup = tmp_path / "super"
    modules_git = sup / ".git" / "modules" / "ds"
    modules_git.mkdir(parents=True)
    root = _dataset(sup)
    (root / ".git").symlink_to(os.path.relpath(modules_git, root), target_is_directory=True)
    obj = _annex_object(modules_git, "f.wav")
    link = root / "stimuli" / "f.wav"
    link.symlink_to(Path("..") / ".git" / obj.relative_to(modules_git))
    assert _resolve(root, "f.wav").read_bytes() == b"RIFF"
    # the superdataset's own annex store, reached by a link that leaves the subdataset
    obj2 = _annex_object(sup / ".git", "g.wav")
    link2 = root / "stimuli" / "g.wav"
    link2.symlink_to(os.path.relpath(obj2, link2.parent))
    assert _resolve(root, "g.wav").read_bytes() == b"RIFF"


def test_other_git_folders_outside_are_refused(tmp_path):
    from dnnrsa.bids_app.errors import DatasetInvalid

    sup = tmp_path / "super"
    root = _dataset(sup)
    hooks = sup / ".git" / "hooks"
    hooks.mkdir(parents=True)
    (hooks / "h.wav").write_bytes(b"RIFF")
    (root / "stimuli" / "h.wav").symlink_to(hooks / "h.wav")
    with pytest.raises(DatasetInvalid, match="outside"):
        _resolve(root, "h.wav")
    # an annex store of an unrelated repository is not one of this data set's
    other = tmp_path / "other" / ".git"
    obj = _annex_object(other, "i.wav")
    (root / "stimuli" / "i.wav").symlink_to(obj)
    with pytest.raises(DatasetInvalid, match="outside"):
        _resolve(root, "i.wav")


def test_annex_link_without_content_exits_66_with_a_hint(tmp_path):
    from dnnrsa.bids_app.errors import InputMissing

    root = _dataset(tmp_path)
    obj = _annex_object(root / ".git", "j.wav", present=False)
    link = root / "stimuli" / "j.wav"
    link.symlink_to(os.path.relpath(obj, link.parent))
    with pytest.raises(InputMissing, match="datalad get") as info:
        _resolve(root, "j.wav")
    assert info.value.exit_code == 66
    assert "stimuli/j.wav" in str(info.value)


def test_annex_link_without_content_exits_66_from_the_command_line(small, tmp_path, capsys):
    """A network (--checkpoint) reads the stimuli: an annexed one without content gives
    66; with --model-rdm alone the stimuli are not read (tests/test_collect_faults.py)."""
    import shutil

    import pandas as pd

    from dnnrsa.bids_app.run import main
    from dnnrsa.models import build_model, get_model, save_checkpoint

    root = tmp_path / "bids"
    shutil.copytree(small.root, root)
    name = small.stim_files[0]
    (root / "stimuli" / name).unlink()
    obj = _annex_object(root / ".git", name, present=False)
    link = root / "stimuli" / name
    link.symlink_to(os.path.relpath(obj, link.parent))
    assert pd.read_csv(next(root.rglob("*_events.tsv")), sep="\t")["stim_file"].isin([name]).any()
    spec = get_model("crosschannel")
    ckpt = save_checkpoint(tmp_path / "net.pt", build_model(spec, 3, seed=1), spec, labels="abc")
    rc = main([str(root), *_argv(small, tmp_path)[1:], "--checkpoint", str(ckpt)])
    assert rc == 66
    err = capsys.readouterr().err
    assert "datalad get" in err and name in err


def _documented_rule() -> str:
    """The stimulus-path rule of docs/own-data.md, on one line."""
    text = (REPO / "docs" / "own-data.md").read_text()
    section = text.split("## The stimulus-path rule", 1)[1].split("\n## ", 1)[0]
    return " ".join(section.split())


def test_the_documented_stimulus_rule_is_the_app_s(small, tmp_path, capsys):
    """docs/own-data.md's stimulus-path rule, taken case by case from the page: the
    values it accepts resolve, those it refuses raise the exit code it names (also from
    the command line), the links it allows are followed and others refused naming link
    and target, and a git-annex file without content gives its code with the command the
    page prints (`datalad get -d <bids_dir> stimuli/<file>`)."""
    import shutil

    import pandas as pd

    from dnnrsa.bids_app.errors import EXIT_CODES, DatasetInvalid, InputMissing
    from dnnrsa.bids_app.run import main

    rule = _documented_rule()
    written = rule.split("**As written**", 1)[1].split(" 2. ", 1)[0]
    accepted_text, refused_text = written.split(" are accepted, while ", 1)
    refused_text, code = re.match(r"(.*) is refused \(exit (\d+)\)", refused_text).groups()
    accepted = re.findall(r"`([^`]+)`", accepted_text)
    documented = re.findall(r"`([^`]+)`", refused_text)
    refused = list(documented)
    if "absolute path" in refused_text:
        refused.append(str(tmp_path / "ds" / "stimuli" / "abs.wav"))
    assert len(accepted) >= 2 and len(documented) >= 2, written
    refused_code = int(code)
    assert refused_code == DatasetInvalid.exit_code and refused_code in EXIT_CODES

    # 1. as written: each accepted value names an existing file; each refused one names a
    # file that exists too, so that only the rule can refuse it
    root = _dataset(tmp_path)
    (root / "participants.tsv").write_text("participant_id\n")
    for value in accepted + refused:
        target = Path(os.path.normpath(root / "stimuli" / value))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"RIFF")
    for value in accepted:
        path = _resolve(root, value)
        assert path.read_bytes() == b"RIFF" and path.name == Path(value).name, value
    for value in refused:
        with pytest.raises(DatasetInvalid) as info:
            _resolve(root, value)
        assert info.value.exit_code == refused_code, value
        assert repr(value) in str(info.value), value

    # ... and from the command line, for the page's last refused value
    bids = tmp_path / "bids"
    shutil.copytree(small.root, bids)
    events = bids / "sub-01" / "func" / "sub-01_task-cat_run-1_events.tsv"
    table = pd.read_csv(events, sep="\t")
    table.loc[0, "stim_file"] = documented[-1]
    table.to_csv(events, sep="\t", index=False)
    assert main([str(bids), *_argv(small, tmp_path)[1:]]) == refused_code
    assert documented[-1] in capsys.readouterr().err

    # 2. links: the page's example of a link inside the data set is followed ...
    links = rule.split(" 2. **Symbolic links**", 1)[1].split(" 3. ", 1)[0]
    link, link_target = re.search(r"`(\S+)/ -> (\S+)/`", links).groups()
    inside = tmp_path / "inside"
    (inside / link_target).mkdir(parents=True)
    (inside / link_target / "a.wav").write_bytes(b"RIFF")
    (inside / link).symlink_to(Path(link_target), target_is_directory=True)
    assert _resolve(inside, "a.wav").read_bytes() == b"RIFF"
    # ... so are links into the git-annex stores it names, of the data set and of a
    # superdataset enclosing it ...
    stores = [s for s in re.findall(r"`([^`]+)`", links) if "annex/objects" in s]
    assert len(stores) >= 2, links
    for k, store in enumerate(stores):
        sup = tmp_path / f"super{k}"
        ds = _dataset(sup)
        git_dir = ds / ".git"
        if "<name>" in store:  # a subdataset: its .git is the superdataset's module
            git_dir = sup / store.split("/annex/")[0].replace("<name>", "ds")
            git_dir.mkdir(parents=True)
            (ds / ".git").symlink_to(os.path.relpath(git_dir, ds), target_is_directory=True)
        obj = _annex_object(git_dir, "b.wav")
        assert store.split("...")[0].replace("<name>", "ds") in obj.relative_to(sup).as_posix()
        (ds / "stimuli" / "b.wav").symlink_to(os.path.relpath(obj, ds / "stimuli"))
        assert _resolve(ds, "b.wav").read_bytes() == b"RIFF", store
    # ... and any other target is refused with the code the page gives, naming both
    other_code = int(re.search(r"is refused \(exit (\d+)\), naming the link", links).group(1))
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"RIFF")
    (root / "stimuli" / "out.wav").symlink_to(outside)
    with pytest.raises(DatasetInvalid) as info:
        _resolve(root, "out.wav")
    assert info.value.exit_code == other_code
    assert "stimuli/out.wav" in str(info.value) and str(outside) in str(info.value)

    # 3. content: an annexed file without content names the page's command ...
    content = rule.split(" 3. **Present content**", 1)[1]
    annex_code, command = re.search(
        r"gives exit (\d+) with the command[^`]*`([^`]+)`", content
    ).groups()
    obj = _annex_object(root / ".git", "c.wav", present=False)
    (root / "stimuli" / "c.wav").symlink_to(os.path.relpath(obj, root / "stimuli"))
    with pytest.raises(InputMissing) as info:
        _resolve(root, "c.wav")
    assert info.value.exit_code == int(annex_code) and int(annex_code) in EXIT_CODES
    expected = command.replace("<bids_dir>", str(root)).replace("<file>", "c.wav")
    assert str(info.value).endswith(expected)
    # ... and any other missing file the path looked for
    missing_code = int(re.search(r"any other missing file gives exit (\d+)", content).group(1))
    with pytest.raises(InputMissing) as info:
        _resolve(root, "absent.wav")
    assert info.value.exit_code == missing_code
    assert str(root / "stimuli" / "absent.wav") in str(info.value)


# --------------------------------------------------------------------------- 9: a failing step
INJECT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from nipype.interfaces.utility import Function
    from nipype.pipeline import engine as pe

    from dnnrsa.bids_app.config import RunConfig
    from dnnrsa.bids_app.errors import handle_errors
    from dnnrsa.bids_app.execution import run_workflow
    from dnnrsa.interfaces.bids import WriteLayerRDMs


    def fail(x):
        raise ValueError("injected failure in a step")


    def slow(x):
        import time

        time.sleep(900)
        return x


    base, kind = Path(sys.argv[1]), sys.argv[2]
    config = RunConfig(
        bids_dir=base / "bids",
        output_dir=base / "out",
        analysis_level="participant",
        work_dir=base / "work",
        nprocs=2,
    )
    wf = pe.Workflow(name="inject", base_dir=str(base / "work"))
    if kind == "raises":
        bad = pe.Node(
            Function(input_names=["x"], output_names=["y"], function=fail), name="failing_step"
        )
        bad.inputs.x = 1
    else:  # a mandatory input left undefined: the step fails before writing its result
        bad = pe.Node(WriteLayerRDMs(output_dir=str(base / "out"), task="x"), name="failing_step")
    busy = pe.Node(Function(input_names=["x"], output_names=["y"], function=slow), name="slow_step")
    busy.inputs.x = 1
    wf.add_nodes([busy, bad])
    with handle_errors("dnnrsa") as outcome:
        run_workflow(wf, config)
    sys.exit(outcome.exit_code)
    """
)


def _run_script(text: str, tmp_path, *args: str, hang: str):
    """Run a Python script in a marked process tree; return (returncode, stderr, seconds,
    pids of the tree still alive 20 s after it ended). Fails the test with ``hang`` when
    the script has not ended after 240 s (a hang guard, not a measure of speed)."""
    script = tmp_path / "script.py"
    script.write_text(text)
    marker = uuid.uuid4().hex
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), *args],
        env=_marked_env(marker),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        _end(_marked(marker))
        pytest.fail(hang)
    elapsed = time.monotonic() - start
    return proc.returncode, err, elapsed, _wait_gone(marker, 20.0)


@pytest.mark.parametrize("kind", ["raises", "missing_input"])
def test_failing_step_ends_the_run_with_exit_1(tmp_path, kind):
    returncode, err, elapsed, left = _run_script(
        INJECT, tmp_path, kind, hang="the run did not end after a step failed"
    )
    message = "processes outlived the run:\n" + _describe(left)
    _end(left)
    assert returncode == 1, err[-3000:]
    assert elapsed < 120, f"the run took {elapsed:.0f} s to end after a failing step"
    crashes = sorted((tmp_path / "out" / "logs").glob("crash-*"))
    assert crashes, "no crash report written"
    assert any(str(c) in err for c in crashes), err[-3000:]
    assert "failing_step" in err
    assert not left, message


JOBLIB_STEP = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from nipype.interfaces.utility import Function
    from nipype.pipeline import engine as pe

    from dnnrsa.bids_app.config import RunConfig
    from dnnrsa.bids_app.execution import run_workflow


    def parallel(x):
        from joblib import Parallel, delayed

        return sum(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(x)))


    if __name__ == "__main__":
        base = Path(sys.argv[1])
        config = RunConfig(
            bids_dir=base / "bids", output_dir=base / "out", analysis_level="participant",
            work_dir=base / "work", nprocs=2,
        )
        wf = pe.Workflow(name="joblib", base_dir=str(base / "work"))
        node = pe.Node(
            Function(input_names=["x"], output_names=["y"], function=parallel),
            name="joblib_step",
        )
        node.inputs.x = 6
        wf.add_nodes([node])
        run_workflow(wf, config)
    """
)


def test_a_step_with_joblib_workers_does_not_hold_up_the_end_of_the_run(tmp_path):
    """loky keeps idle joblib workers for 300 s; the run's worker must not wait for them."""
    returncode, err, elapsed, left = _run_script(
        JOBLIB_STEP, tmp_path, hang="the run waited for joblib's idle workers"
    )
    _end(left)
    assert returncode == 0, err[-3000:]
    assert elapsed < 150, f"the run took {elapsed:.0f} s to end (loky's idle timeout is 300 s)"
    assert not left, "processes outlived the run:\n" + _describe(left)


def test_writer_skips_when_the_step_before_wrote_nothing(tmp_path, caplog):
    from dnnrsa.interfaces.bids import WriteDerivative

    out = tmp_path / "task-x_model-m_desc-armlesion_stats.tsv"
    with caplog.at_level("INFO", logger="nipype.interface"):
        res = WriteDerivative(out_path=str(out)).run(cwd=str(tmp_path))
    assert not out.exists()
    assert not res.outputs.out_file
    assert "nothing to write" in caplog.text


def test_arm_lesion_with_labels_not_in_the_events_is_skipped_with_a_note(tmp_path, caplog):
    import pandas as pd

    from dnnrsa.bids_app.workflows import _lesion_possible
    from dnnrsa.models import build_model, get_model, save_checkpoint

    spec = get_model("crosschannel")
    labels = ["body", "face", "house", "object", "scene", "scramble"]
    ckpt = save_checkpoint(
        tmp_path / "net.pt", build_model(spec, 6, seed=0), spec, labels=labels, regime="emotion"
    )
    table = tmp_path / "stimuli.tsv"
    names = [f"s{k}.mp4" for k in range(6)]
    pd.DataFrame({"stim_file": names, "emotion": list("abcabc")}).to_csv(
        table, sep="\t", index=False
    )
    with caplog.at_level("WARNING", logger="dnnrsa"):
        assert not _lesion_possible(ckpt, str(table))
    assert "arm lesion" in caplog.text and "skipped" in caplog.text
    pd.DataFrame({"stim_file": names, "emotion": labels}).to_csv(table, sep="\t", index=False)
    assert _lesion_possible(ckpt, str(table))


def test_reliability_page_names_tests_that_exist():
    """docs/reliability.md names, for each guarantee, the tests that check it: every test
    it names is a test function of that module (the module alone: a test module), this
    module's kill -9 and failing-step tests among them."""
    import ast

    page = (REPO / "docs" / "reliability.md").read_text()
    rows = [ln for ln in page.splitlines() if ln.startswith("| ") and "`test_" in ln]
    named: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        guarantee, _meaning, checked = (c.strip() for c in row.strip().strip("|").split(" | "))
        refs = re.findall(r"`(test_\w+\.py)(?:::(test_\w+))?`", checked)
        assert refs, f"the guarantee {guarantee!r} names no test"
        for ref in refs:
            named.setdefault(ref, []).append(guarantee)
    assert len(rows) >= 10
    missing = []
    for module, test in sorted(named):
        path = REPO / "tests" / module
        if not path.is_file():
            missing.append(module)
            continue
        tests = {
            node.name
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        }
        if (test and test not in tests) or not tests:
            missing.append(f"{module}::{test}")
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
    for test in ("test_kill9_leaves_no_process", "test_failing_step_ends_the_run"):
        assert any(m == "test_reliability.py" and t.startswith(test) for m, t in named), test


def test_the_scheduler_runs_with_the_heap_frozen_and_gives_it_back():
    """frozen_heap (run_workflow's wrapper of the scheduler): inside it the objects
    alive at its start are out of the garbage collections (what makes nipype's
    collections before each round of submissions cheap), garbage made before it
    was collected first, and the heap is given back on the way out, also when the
    workflow raises."""
    import gc
    import weakref

    from dnnrsa.bids_app.execution import frozen_heap

    class Cycle:
        pass

    def garbage():
        a, b = Cycle(), Cycle()
        a.other, b.other = b, a
        return weakref.ref(a)

    assert gc.get_freeze_count() == 0
    lost = garbage()
    with frozen_heap():
        assert lost() is None  # collected before freezing, not kept for the whole run
        assert gc.get_freeze_count() > 10_000
        inside = garbage()
        gc.collect()
        assert inside() is None  # collections still reclaim what the run leaves
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("a step failed")
    assert gc.get_freeze_count() == 0
