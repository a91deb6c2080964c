"""Peak memory of the participant level's GLM and searchlight nodes against data size.

Writes synthetic float32 BOLD runs (an ellipsoid brain in a box grid) and events, then
runs, each in a fresh process, ``estimate_patterns`` (LSA, effects, ``n_jobs=1``) and
``searchlight_rsa`` on the patterns as the BIDS App's nodes do, and prints the peak
resident memory of the process above its baseline after the imports, beside the
estimate the BIDS App declares to nipype
(:func:`dnnrsa.bids_app.resources.glm_memory_gb` and ``searchlight_memory_gb``).

Usage::

    python benchmarks/memory.py                 # three cases on a 64 x 76 x 64 grid, 3 min
    python benchmarks/memory.py --case 75,92,80,245,1 --case 75,92,80,245,2 --skip-searchlight
    python benchmarks/memory.py --case 75,92,80,245,6 --n-cond 72 --skip-glm
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DEFAULT_CASES = [
    # grid x, y, z, volumes per run, runs
    (64, 76, 64, 150, 1),
    (64, 76, 64, 150, 3),
    (64, 76, 64, 300, 1),
]
T_R = 2.0
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])

CHILD = r"""
import json, os, resource, sys, tempfile, time
import numpy as np
args = json.loads(sys.argv[1])
import nibabel as nib
import nilearn.glm.first_level  # noqa: F401
from dnnrsa._io import atomic_save_nifti
from dnnrsa.glm import estimate_patterns
from dnnrsa.searchlight import searchlight_rsa
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
import tracemalloc
base = rss_mb()
tracemalloc.start()
t0 = time.perf_counter()
out_dir = tempfile.mkdtemp()
if args["stage"] == "glm":  # as EstimatePatterns
    res = estimate_patterns(
        args["bold"], args["events"], t_r=args["t_r"], noise_model=args["noise_model"],
        n_jobs=1,
    )
    atomic_save_nifti(res.to_img(), os.path.join(out_dir, "patterns.nii.gz"))
    out = {"mask_voxels": int(res.patterns.shape[1])}
else:  # as SearchlightRSA
    from scipy.spatial.distance import pdist
    rng = np.random.default_rng(0)
    n_cond = args["n_cond"]
    conds = np.tile([f"s{k:02d}" for k in range(n_cond)], args["runs"])
    runs = np.repeat(np.arange(args["runs"]), n_cond)
    models = np.stack([pdist(rng.standard_normal((n_cond, 5))) for _ in range(args["n_models"])])
    img = searchlight_rsa(
        args["patterns"], args["mask"], models, radius_mm=6.0, conditions=conds, runs=runs,
        device="cpu", memory_budget_mb=args["budget_mb"], n_jobs=1, progress=False,
    )
    atomic_save_nifti(img, os.path.join(out_dir, "maps.nii.gz"))
    out = {}
out.update(
    base_mb=base, peak_mb=rss_mb(), seconds=time.perf_counter() - t0,
    traced_mb=tracemalloc.get_traced_memory()[1] / 2**20,
)
print("RESULT" + json.dumps(out))
"""


def _ellipsoid(shape) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    return sum(((grid[i] - centre[i]) / (0.42 * shape[i])) ** 2 for i in range(3)) <= 1.0


def write_case(folder: Path, shape, n_vol: int, n_runs: int, n_cond: int, seed: int = 0):
    """float32 runs (an ellipsoid brain at 1000 plus noise) and their events."""
    import nibabel as nib
    import pandas as pd

    rng = np.random.default_rng(seed)
    brain = _ellipsoid(shape)
    bold, events = [], []
    for run in range(n_runs):
        data = rng.standard_normal((*shape, n_vol), dtype=np.float32) * 5
        data[brain] += 1000
        path = folder / f"run{run}_bold.nii.gz"
        nib.Nifti1Image(data, AFFINE).to_filename(path)
        del data
        onsets = np.linspace(4, (n_vol - 8) * T_R, n_cond)
        order = rng.permutation(n_cond)
        table = pd.DataFrame(
            {"onset": onsets, "duration": 3.0, "stim_file": [f"s{k:02d}" for k in order]}
        )
        ev = folder / f"run{run}_events.tsv"
        table.to_csv(ev, sep="\t", index=False)
        bold.append(str(path))
        events.append(str(ev))
    return bold, events


def run_child(args: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT") :])


def main(argv=None):
    import nibabel as nib

    from dnnrsa.bids_app.resources import glm_memory_gb, searchlight_memory_gb

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", help="x,y,z,volumes,runs (repeatable)")
    p.add_argument("--n-cond", type=int, default=24, help="conditions (stimuli) per run")
    p.add_argument("--noise-models", default="ar1,ols")
    p.add_argument("--skip-glm", action="store_true")
    p.add_argument("--skip-searchlight", action="store_true")
    p.add_argument("--n-models", type=int, default=116)
    p.add_argument("--budget-mb", type=int, default=1024)
    args = p.parse_args(argv)
    cases = [tuple(int(v) for v in c.split(",")) for c in args.case] if args.case else DEFAULT_CASES
    n_cond = args.n_cond
    print(
        "stage | grid | volumes x runs | mask voxels | traced peak MiB "
        "| RSS peak MiB (baseline) | declared GiB | seconds"
    )
    for x, y, z, n_vol, n_runs in cases:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            if not args.skip_glm:
                bold, events = write_case(folder, (x, y, z), n_vol, n_runs, n_cond)
            for model in [] if args.skip_glm else args.noise_models.split(","):
                res = run_child(
                    {
                        "stage": "glm",
                        "bold": bold,
                        "events": events,
                        "t_r": T_R,
                        "noise_model": model,
                    }
                )
                declared = glm_memory_gb(
                    [(x, y, z, n_vol)] * n_runs,
                    n_cond=n_cond,
                    mask_voxels=res["mask_voxels"],
                    noise_model=model,
                )
                print(
                    f"GLM {model} | {x}x{y}x{z} | {n_vol} x {n_runs} | {res['mask_voxels']:,} "
                    f"| {res['traced_mb']:,.0f} | {res['peak_mb']:,.0f} ({res['base_mb']:,.0f}) "
                    f"| {declared:.2f} | {res['seconds']:.1f}",
                    flush=True,
                )
            if args.skip_searchlight:
                continue
            mask = _ellipsoid((x, y, z)).astype(np.uint8)
            rng = np.random.default_rng(1)
            pat = rng.standard_normal((x, y, z, n_cond * n_runs), dtype=np.float32)
            nib.Nifti1Image(pat, AFFINE).to_filename(folder / "patterns.nii.gz")
            del pat
            nib.Nifti1Image(mask, AFFINE).to_filename(folder / "mask.nii.gz")
            res = run_child(
                {
                    "stage": "searchlight",
                    "patterns": str(folder / "patterns.nii.gz"),
                    "mask": str(folder / "mask.nii.gz"),
                    "n_cond": n_cond,
                    "runs": n_runs,
                    "n_models": args.n_models,
                    "budget_mb": args.budget_mb,
                }
            )
            declared = searchlight_memory_gb(
                (x, y, z),
                int(mask.sum()),
                n_runs=n_runs,
                n_cond=n_cond,
                n_models=args.n_models,
                affine=AFFINE,
                radius_mm=6.0,
                budget_mb=args.budget_mb,
            )
            print(
                f"searchlight, {args.n_models} models, {args.budget_mb} MB blocks | {x}x{y}x{z} "
                f"| {n_cond} conditions x {n_runs} | {int(mask.sum()):,} "
                f"| {res['traced_mb']:,.0f} | {res['peak_mb']:,.0f} ({res['base_mb']:,.0f}) "
                f"| {declared:.2f} | {res['seconds']:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
