"""The documentation: it builds without warnings, its quickstart runs, its examples are right.

- Sphinx builds ``docs/`` with ``-W --keep-going`` (warnings are errors), autodoc included;
- every command of the quickstart's ``bash`` blocks is run, in order, in a fresh folder, and the
  planted geometry of the demo data must show up in the group map it produces;
- the nipype example of ``docs/nipype.md`` runs and equals the core functions;
- every command-line option of the BIDS App is documented, and the resource defaults the
  docs state are the parser's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from .bids_fixtures import make_small_bids

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MPLBACKEND", "Agg")
    return env


def bash_commands(markdown: str) -> list[str]:
    """The commands of the ```bash blocks of a Markdown page, continuation lines joined."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M):
        for command in block.replace("\\\n", " ").splitlines():
            command = " ".join(command.split())
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def test_bash_commands_parser():
    text = (
        "x\n```bash\na --b \\\n    c\n# comment\n\nd\n```\n```text\nnot me\n```\n```bash\ne\n```\n"
    )
    assert bash_commands(text) == ["a --b c", "d", "e"]


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    out = tmp_path / "html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(out),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    # every Markdown page is part of the site, and the API reference has the docstrings
    for page in DOCS.glob("*.md"):
        assert (out / f"{page.stem}.html").is_file(), f"{page.name} was not built"
    api = (out / "api.html").read_text()
    for target in (
        "dnnrsa.searchlight.searchlight_rsa",
        "dnnrsa.rdm.compute_rdm",
        "dnnrsa.stats.sign_flip_test",
        "dnnrsa.interfaces.glm.EstimatePatterns",
        "dnnrsa.bids_app.run.main",
    ):
        assert f'id="{target}"' in api, f"{target} missing from the API reference"
    # the sbatch script users copy is shown verbatim
    cluster = (out / "cluster.html").read_text()
    assert "SLURM_ARRAY_TASK_ID" in cluster


def test_every_option_is_documented():
    from dnnrsa.bids_app.parser import build_parser

    text = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    aliases = {"--participant_label", "--nthreads", "--mem-gb", "--help", "--verbose"}
    options = {
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option not in aliases
    }
    missing = sorted(o for o in options if not re.search(re.escape(o) + r"(?![\w-])", text))
    assert not missing, f"options not described in docs/: {missing}"


def test_resource_defaults_in_docs_match_the_parser():
    from dnnrsa.bids_app.parser import build_parser

    defaults = {a.dest: a.default for a in build_parser()._actions}
    table = (DOCS / "cluster.md").read_text()
    row = next(ln for ln in table.splitlines() if ln.startswith("| `--searchlight-memory-mb"))
    assert f"| {defaults['searchlight_memory_mb']} |" in row
    row = next(ln for ln in table.splitlines() if ln.startswith("| `--device"))
    assert f"`{defaults['device']}`" in row
    row = next(ln for ln in table.splitlines() if ln.startswith("| `--plugin NAME`"))
    assert f"`{defaults['plugin']}`" in row
    assert defaults["nprocs"] is None and defaults["mem_gb"] is None  # "all of the machine"
    assert "{literalinclude} slurm/participant.sbatch" in table
    for script in (DOCS / "slurm").glob("*.sbatch"):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_nipype_example_equals_core_functions(tmp_path):
    """The workflow of docs/examples/nipype_workflow.py, run as documented."""
    from dnnrsa.glm import estimate_patterns
    from dnnrsa.rdm import read_rdm_tsv
    from dnnrsa.searchlight import searchlight_rsa

    small = make_small_bids(tmp_path / "bids", n_subjects=1)
    func = small.root / "sub-01" / "func"
    bold = sorted(str(p) for p in func.glob("*_bold.nii.gz"))
    events = [b.replace("_bold.nii.gz", "_events.tsv") for b in bold]
    script = DOCS / "examples" / "nipype_workflow.py"
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "work"),
            str(small.model_rdm),
            *small.stim_files,
            "--bold",
            *bold,
            "--events",
            *events,
            "--t-r",
            "2.0",
            "--min-voxels",
            "5",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    maps_file = Path(proc.stdout.strip().splitlines()[-1])
    got = np.asarray(nib.load(maps_file).dataobj)[..., 0]

    res = estimate_patterns(bold, events, t_r=2.0, random_state=0)
    model, _ = read_rdm_tsv(small.model_rdm)
    expected = searchlight_rsa(
        res.to_img(),
        res.mask_img,
        model[None],
        radius_mm=6.0,
        min_voxels=5,
        conditions=res.conditions,
        runs=res.runs,
        progress=False,
    )
    exp = np.asarray(expected.dataobj)[..., 0]
    np.testing.assert_allclose(got, exp, atol=1e-6, equal_nan=True)
    inside = exp[small.region_mask & np.isfinite(exp)]
    assert inside.mean() > 0.4  # the planted category geometry is found


@pytest.mark.slow
def test_quickstart_commands_run(tmp_path):
    """Run every command of docs/quickstart.md, in order, in an empty folder."""
    from dnnrsa import __version__

    commands = bash_commands((DOCS / "quickstart.md").read_text())
    assert commands[:3] == ["dnnrsa --version", "dnnrsa --help", "dnnrsa-demo --help"]
    outputs = []
    for command in commands:
        proc = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, env=_env(), cwd=tmp_path
        )
        assert proc.returncode == 0, f"$ {command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout)
    assert outputs[0].strip() == f"dnnrsa {__version__}"
    assert "participant" in outputs[1] and "--searchlight-memory-mb" in outputs[1]

    # the participant and group levels found the planted cross-modal geometry
    out = tmp_path / "demo" / "out"
    truth = tmp_path / "demo" / "bids" / "derivatives" / "groundtruth"
    t_maps = sorted(out.glob("task-emotion_space-*_model-emotion_stat-t_statmap.nii.gz"))
    assert len(t_maps) == 1, sorted(p.name for p in out.iterdir())
    t = np.asarray(nib.load(t_maps[0]).dataobj, dtype=float)
    (mask_file,) = truth.glob("space-*_desc-crossmodal_mask.nii.gz")
    region = np.asarray(nib.load(mask_file).dataobj) > 0
    assert region.shape == t.shape
    finite = np.isfinite(t)
    assert (region & finite).any()
    assert np.nanmean(t[region & finite]) > np.nanmean(t[~region & finite]) + 1.0
    assert (out / "group.html").is_file()
    assert len(list(out.glob("sub-*/func/*_model-emotion_stat-spearman_statmap.nii.gz"))) == 2
