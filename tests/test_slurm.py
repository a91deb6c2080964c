"""The BIDS App on a real single-node SLURM cluster (munged + slurmctld + slurmd on loopback).

Two ways of running the participant level for the two subjects of the small fixture are checked
against a MultiProc run on identical inputs:

(a) nipype's SLURM plugin (``--plugin SLURM --plugin-args args.json``): every workflow node is a
    SLURM job;
(b) the documented job array (``sbatch --array=1-2 docs/slurm/participant.sbatch ...``, one
    participant per task) followed by the group level (``docs/slurm/group.sbatch``) submitted
    with ``--dependency=afterok:<array job>``.

The cluster is started with ``scripts/slurm_cluster.sh`` (and stopped at the end if this module
started it). Needs root; installs slurm-wlm and munge with ``scripts/install_system_deps.sh``
when they are missing. The job timeline (submit, start and end of every job, from SLURM's job
completion log) is printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from .bids_fixtures import make_small_bids

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
SBATCH_DIR = REPO / "docs" / "slurm"
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")
# options shared by every run: small searchlight, no validator, no HTML reports
COMMON = ["--radius-mm", "6", "--min-voxels", "5", "--skip-bids-validation", "--no-reports"]
GROUP = ["--n-permutations", "100", "--seed", "3", "--skip-bids-validation", "--no-reports"]
JOB_TIMEOUT_S = 240


def _missing_binaries() -> list[str]:
    return [exe for exe in SLURM_BINARIES if shutil.which(exe) is None]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running single-node cluster; yields the environment of its client commands."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test starts slurmctld/slurmd as SlurmUser=root: run it as root")
    if _missing_binaries():
        subprocess.run(["bash", str(REPO / "scripts" / "install_system_deps.sh")], check=False)
    missing = _missing_binaries()
    if missing:
        pytest.skip(f"SLURM binaries {missing} are absent and could not be installed with apt")
    slurm_dir = Path(os.environ.get("DNNRSA_SLURM_DIR", "/tmp/dnnrsa-slurm"))
    env = dict(os.environ, DNNRSA_SLURM_DIR=str(slurm_dir))
    was_running = (
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "status"], env=env, capture_output=True)
    ).returncode == 0
    start = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "start"], env=env, capture_output=True, text=True
    )
    assert start.returncode == 0, start.stdout + start.stderr
    env["SLURM_CONF"] = str(slurm_dir / "slurm.conf")
    # the jobs run `dnnrsa` and nipype's batch scripts with this interpreter's environment
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("LOGNAME", "root")  # nipype's SLURM plugin names jobs after $LOGNAME
    info = subprocess.run(
        ["sinfo", "-h", "-o", "%T %c %m"], env=env, capture_output=True, text=True
    )
    print(f"\nSLURM node (state, CPUs, MB): {info.stdout.strip()}; already running: {was_running}")
    yield {"env": env, "dir": slurm_dir}
    if not was_running:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop"], env=env, check=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_small_bids(tmp_path_factory.mktemp("slurm_small") / "bids")


def _participant_argv(small, out: Path, work: Path) -> list[str]:
    return [
        str(small.root),
        str(out),
        "participant",
        "-w",
        str(work),
        "--model-rdm",
        f"category={small.model_rdm}",
        *COMMON,
    ]


@pytest.fixture(scope="module")
def multiproc(small, tmp_path_factory):
    """Reference: participant and group levels with the default MultiProc plugin."""
    from dnnrsa.bids_app.run import main

    base = tmp_path_factory.mktemp("multiproc")
    out = base / "out"
    assert main(_participant_argv(small, out, base / "work") + ["--nprocs", "2"]) == 0
    group = [str(small.root), str(out), "group", "-w", str(base / "work"), "--nprocs", "2"]
    assert main(group + GROUP) == 0
    return out


def _maps(out: Path) -> dict[str, np.ndarray]:
    found = {
        str(p.relative_to(out)): np.asarray(nib.load(p).dataobj, dtype=np.float64)
        for p in sorted(out.rglob("*_statmap.nii.gz"))
    }
    assert found, f"no statistic maps under {out}"
    return found


def _assert_same_maps(got_dir: Path, ref_dir: Path, *, group: bool) -> None:
    ref, got = _maps(ref_dir), _maps(got_dir)
    if not group:
        ref = {k: v for k, v in ref.items() if k.startswith("sub-")}
    assert sorted(got) == sorted(ref)
    for name, expected in ref.items():
        assert np.isfinite(expected).any(), name
        np.testing.assert_allclose(got[name], expected, rtol=1e-6, atol=1e-6, equal_nan=True)


def _completed_jobs(slurm_dir: Path) -> dict[int, dict[str, str]]:
    """Finished jobs from the job completion log (``JobCompType=jobcomp/filetxt``)."""
    jobs = {}
    log = slurm_dir / "jobcomp.log"
    if log.is_file():
        for line in log.read_text().splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobId" in fields:
                jobs[int(fields["JobId"])] = fields
    return jobs


def _wait_for(job_ids: list[str], env: dict, timeout_s: float = JOB_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        queue = subprocess.run(
            ["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)],
            env=env,
            capture_output=True,
            text=True,
        )
        if queue.returncode == 0 and not queue.stdout.strip():
            return
        time.sleep(1.0)
    pytest.fail(f"SLURM jobs {job_ids} still queued or running after {timeout_s} s")


def _timeline(jobs: list[dict[str, str]]) -> str:
    def ts(text: str) -> datetime:
        return datetime.fromisoformat(text)

    t0 = min(ts(j["SubmitTime"]) for j in jobs)
    rows = [f"{'job':>6} {'name':<44} {'state':<10} {'submit':>7} {'start':>6} {'end':>6} {'s':>5}"]
    for j in sorted(jobs, key=lambda j: (ts(j["StartTime"]), int(j["JobId"]))):
        sub, start, end = (
            (ts(j[k]) - t0).total_seconds() for k in ("SubmitTime", "StartTime", "EndTime")
        )
        job = j["JobId"]
        if j.get("ArrayTaskId"):
            job = f"{j['ArrayJobId']}_{j['ArrayTaskId']}"
        rows.append(
            f"{job:>6} {j['Name'][:44]:<44} {j['JobState']:<10} "
            f"{sub:7.0f} {start:6.0f} {end:6.0f} {end - start:5.0f}"
        )
    return "\n".join(rows)


def _report(title: str, jobs: list[dict[str, str]], slurm_dir: Path, capsys) -> None:
    """Print the job timeline (also appended to ``timeline.txt`` in the cluster folder)."""
    text = f"{title} (seconds from the first submission)\n{_timeline(jobs)}\n"
    with (slurm_dir / "timeline.txt").open("a") as fh:
        fh.write(text + "\n")
    with capsys.disabled():
        print("\n" + text, flush=True)


def test_participant_level_through_nipype_slurm_plugin(cluster, small, multiproc, tmp_path, capsys):
    """(a) ``--plugin SLURM``: the workflow's nodes run as SLURM jobs; results equal MultiProc."""
    from dnnrsa.bids_app.run import main

    env, slurm_dir = cluster["env"], cluster["dir"]
    before = set(_completed_jobs(slurm_dir))
    args = tmp_path / "plugin_args.json"
    args.write_text(json.dumps({"sbatch_args": "--cpus-per-task=1 --mem=2G --time=10"}))
    out, work = tmp_path / "out", tmp_path / "work"
    with pytest.MonkeyPatch.context() as mp:
        for key in ("SLURM_CONF", "PATH", "LOGNAME"):
            mp.setenv(key, env[key])
        rc = main(
            _participant_argv(small, out, work) + ["--plugin", "SLURM", "--plugin-args", str(args)]
        )
    assert rc == 0
    _assert_same_maps(out, multiproc, group=False)
    # the work really went through SLURM: one job per computing node, all completed
    new = [j for i, j in _completed_jobs(slurm_dir).items() if i not in before]
    names = " ".join(j["Name"] for j in new)
    for step in ("estimate_patterns", "searchlight", "user_model_rdms"):
        assert step in names, f"no SLURM job ran {step}: {names}"
    assert sum("searchlight" in j["Name"] for j in new) == 2  # one per subject
    assert all(j["JobState"] == "COMPLETED" for j in new), new
    assert list((work / "participant_all" / "dnnrsa_participant_wf").rglob("batch/*.sh")) or list(
        work.rglob("batchscript_*.sh")
    )
    _report("nipype SLURM plugin, participant level of 2 subjects", new, slurm_dir, capsys)


def test_job_array_then_dependent_group_job(cluster, small, multiproc, tmp_path, capsys):
    """(b) The documented job array and dependent group job give the MultiProc results."""
    env = dict(cluster["env"], DNNRSA_SCRATCH=str(tmp_path / "scratch"))
    env.pop("DNNRSA_SIF", None)
    slurm_dir = cluster["dir"]
    out, logs = tmp_path / "out", tmp_path / "logs"
    logs.mkdir()
    # resources fitting the 2-CPU test node; everything else is the documented command
    resources = ["--cpus-per-task=1", "--mem=2G", "--time=10"]
    array = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--array=1-2",
            *resources,
            f"--output={logs}/participant-%A_%a.out",
            str(SBATCH_DIR / "participant.sbatch"),
            str(small.root),
            str(out),
            "--model-rdm",
            f"category={small.model_rdm}",
            *COMMON,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert array.returncode == 0, array.stderr
    array_id = array.stdout.strip().split(";")[0]
    group = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--dependency=afterok:{array_id}",
            *resources,
            f"--output={logs}/group-%j.out",
            str(SBATCH_DIR / "group.sbatch"),
            str(small.root),
            str(out),
            *GROUP,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert group.returncode == 0, group.stderr
    group_id = group.stdout.strip().split(";")[0]
    pending = subprocess.run(
        ["squeue", "-h", "-o", "%T %r", "-j", group_id], env=env, capture_output=True, text=True
    ).stdout.strip()
    _wait_for([array_id, group_id], env)

    job_logs = "\n".join(f"== {p.name}\n{p.read_text()}" for p in sorted(logs.iterdir()))
    done = _completed_jobs(slurm_dir)
    array_jobs = [j for j in done.values() if j.get("ArrayJobId") == array_id]
    group_job = done.get(int(group_id), {})
    mine = [*array_jobs, group_job]
    states = {j.get("JobId"): j.get("JobState") for j in mine}
    assert len(array_jobs) == 2, f"{states}\n{job_logs}"
    assert set(states.values()) == {"COMPLETED"}, f"{states}\n{job_logs}"
    assert sorted(j["ArrayTaskId"] for j in array_jobs) == ["1", "2"]
    # the dependency held the group job back until both participants had finished
    if pending:
        assert pending.split()[0] == "PENDING", pending
    last_end = max(datetime.fromisoformat(j["EndTime"]) for j in array_jobs)
    assert datetime.fromisoformat(group_job["StartTime"]) >= last_end
    # one participant per array task
    for s in ("01", "02"):
        assert f"sub-{s} done" in job_logs
    _assert_same_maps(out, multiproc, group=True)
    _report("job array (2 participants) + dependent group job", mine, slurm_dir, capsys)
