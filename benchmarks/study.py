"""A whole study at realistic scale: every stage timed, side by side with the peer tools.

The data are simulated with the demo generator's machinery (``dnnrsa.demo``): its MNI
grid (2 mm by default: about 235,000 brain voxels), its BOLD simulation (HRF-convolved
trial responses, AR(1) noise, drift, physiological and motion signals) and its run
design (72 stimuli of 3 s per run, random order, 2.5-4.5 s gaps: about 245 volumes at
TR 2 s), 6 runs per subject, and four checkpoints of the registered ``crosschannel``
network with random weights (29 layers each: 116 layer models).

Participant level, per subject:

1. GLM: ``dnnrsa.glm.estimate_patterns`` (LSA, one pattern per stimulus and run) with
   nilearn's default AR(1) noise model and with OLS; peer: nilearn's
   ``FirstLevelModel`` on the same runs, events and confounds (``fit`` and one
   contrast per stimulus);
2. features: load each checkpoint, extract all 29 layers for the 72 stimuli (random
   inputs of the recipe's shapes; decoding clips is timed by ``benchmarks/features.py``)
   and compute the 116 layer RDMs;
3. searchlight: ``dnnrsa.searchlight.searchlight_rsa`` with the 116 models (radius
   6 mm, correlation distance, Spearman), with its defaults (all cores); peer:
   rsatoolbox (``get_searchlight_RDMs`` and ``evaluate_models_searchlight``) on
   ``--rsa-spheres`` spheres, scaled up to the whole brain;
4. writing: the 116 maps as float32 compressed NIfTI, one file per layer.

Group level (``--group-subjects`` subjects, 20 by default; subject maps are smooth
random maps with a planted effect, as arrays): max-T over all 116 maps at once
(``dnnrsa.stats.sign_flip_test`` on the concatenated maps, ``--n-perm`` permutations;
peer: nilearn's ``permuted_ols`` on one map with ``--peer-perm`` permutations, scaled
to the same work; with fewer than 5,000 permutations the time is also printed scaled
linearly to 5,000) and TFCE of one map (``--tfce-perm`` permutations; peer:
``permuted_ols(tfce=True)`` with ``--peer-tfce-perm`` permutations, scaled).

For each stage it prints the wall time, the CPU time of this process, the peak of
memory traced by Python (``tracemalloc``: numpy arrays included, torch excluded), the
peak resident memory of the process so far (``getrusage``), the disk use of the
outputs, and the peer's time and the ratio where a peer exists. Peer times marked
"scaled" come from a subset.

Run::

    python benchmarks/study.py --quick                 # 6 mm grid, 2 runs: a smoke run
    python benchmarks/study.py --subjects 1 --skip-group
    python benchmarks/study.py --skip-participant --group-subjects 20
    python benchmarks/study.py --skip-group --glm-only --runs 1 --noise-models ar1

``--help`` lists the settings.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

# benchmarks/_simulate.py, beside this script (run as python benchmarks/<name>.py)
from _simulate import CLIP_S, CONFOUNDS, N_STIMULI, TR_S, simulated_run, stimulus_betas

N_NETWORKS = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1, help="participant-level subjects")
    parser.add_argument("--group-subjects", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="6 mm grid, 2 runs, few permutations")
    parser.add_argument("--voxel-size", type=float, default=None, help="grid in mm (default 2)")
    parser.add_argument("--runs", type=int, default=None, help="runs per subject (default 6)")
    parser.add_argument(
        "--noise-models", default="ar1,ols", help="GLM noise models, comma-separated"
    )
    parser.add_argument("--glm-jobs", type=int, default=1, help="n_jobs of the GLM")
    parser.add_argument("--n-perm", type=int, default=None, help="max-T permutations (5000)")
    parser.add_argument("--tfce-perm", type=int, default=None, help="TFCE permutations (5000)")
    parser.add_argument("--peer-perm", type=int, default=None, help="permuted_ols max-T perms")
    parser.add_argument("--peer-tfce-perm", type=int, default=None, help="permuted_ols TFCE perms")
    parser.add_argument("--rsa-spheres", type=int, default=100, help="spheres for rsatoolbox")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--skip-participant", action="store_true")
    parser.add_argument("--skip-group", action="store_true")
    parser.add_argument(
        "--glm-only", action="store_true", help="participant level: the GLM stage alone"
    )
    parser.add_argument("--out", default=None, help="keep the outputs in this folder")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def settings(args) -> argparse.Namespace:
    quick = args.quick

    def pick(value, full, small):
        return value if value is not None else (small if quick else full)

    args.voxel_size = pick(args.voxel_size, 2.0, 6.0)
    args.runs = pick(args.runs, 6, 2)
    args.n_perm = pick(args.n_perm, 5000, 100)
    args.tfce_perm = pick(args.tfce_perm, 5000, 50)
    args.peer_perm = pick(args.peer_perm, 100, 20)
    args.peer_tfce_perm = pick(args.peer_tfce_perm, 2, 2)
    if quick:
        args.rsa_spheres = min(args.rsa_spheres, 20)
    args.noise_models = [m.strip() for m in args.noise_models.split(",") if m.strip()]
    return args


# --------------------------------------------------------------------------- measuring
class Table:
    """Rows of measured stages, printed as they come and again at the end."""

    head = (
        f"{'stage':<34}{'wall s':>9}{'cpu s':>9}{'traced MB':>11}{'RSS MB':>9}"
        f"{'disk MB':>9}  {'peer':<28}{'peer s':>9}{'ratio':>8}"
    )

    def __init__(self):
        self.rows = []

    @contextlib.contextmanager
    def stage(self, name: str, peer: str = "", extra: dict | None = None):
        row = {"stage": name, "peer": peer, "peer_s": None, "disk_mb": None}
        if extra:
            row.update(extra)
        tracemalloc.reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        yield row
        row["wall_s"] = time.perf_counter() - wall
        row["cpu_s"] = time.process_time() - cpu
        row["traced_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        row["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.rows.append(row)
        print(self.format(row), flush=True)

    def add_peer(self, row, seconds, label):
        row["peer_s"] = seconds
        row["peer"] = label
        print(f"{'':<34}peer {label}: {seconds:.2f} s, ratio {seconds / row['wall_s']:.2f}x")

    @staticmethod
    def format(row) -> str:
        disk = "" if row["disk_mb"] is None else f"{row['disk_mb']:.1f}"
        peer_s = "" if row["peer_s"] is None else f"{row['peer_s']:.2f}"
        ratio = "" if row["peer_s"] is None else f"{row['peer_s'] / row['wall_s']:.1f}x"
        return (
            f"{row['stage']:<34}{row['wall_s']:>9.2f}{row['cpu_s']:>9.2f}"
            f"{row['traced_mb']:>11.0f}{row['rss_mb']:>9.0f}{disk:>9}  "
            f"{row['peer']:<28}{peer_s:>9}{ratio:>8}"
        )

    def print(self):
        print("\n" + self.head)
        for row in self.rows:
            print(self.format(row))


def _quiet():
    sink = io.StringIO()
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stderr(sink))
    stack.enter_context(contextlib.redirect_stdout(sink))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


# --------------------------------------------------------------------------- data
def simulate_subject(grid, subject: int, n_runs: int, seed: int):
    """Runs (4-D images), events and confounds of one subject, in memory."""
    import nibabel as nib
    import pandas as pd

    from dnnrsa.demo.design import stimulus_table

    names = [row["file"] for row in stimulus_table()][:N_STIMULI]
    rng = np.random.default_rng([seed, subject])
    n_vox = int(grid.mask.sum())
    betas = stimulus_betas(n_vox, rng)
    imgs, events, confounds = [], [], []
    for _ in range(n_runs):
        order, onsets, run = simulated_run(grid, betas, rng)
        vol = np.zeros((*grid.mask.shape, run.bold.shape[0]), dtype=np.float32)
        vol[grid.mask] = run.bold.T
        del run.bold
        imgs.append(nib.Nifti1Image(vol, grid.affine))
        events.append(
            pd.DataFrame(
                {"onset": onsets, "duration": CLIP_S, "stim_file": [names[i] for i in order]}
            )
        )
        confounds.append(pd.DataFrame({k: run.confounds[k] for k in CONFOUNDS}))
    return imgs, events, confounds


def write_checkpoints(folder: Path) -> list[Path]:
    from dnnrsa.models import build_model, save_checkpoint

    paths = []
    for k in range(N_NETWORKS):
        model = build_model("crosschannel", 6, seed=k)
        paths.append(save_checkpoint(folder / f"network{k}.pt", model, "crosschannel"))
    return paths


# --------------------------------------------------------------------------- peers
def nilearn_glm(imgs, events, confounds, mask_img, noise_model, n_jobs):
    from nilearn.glm.first_level import FirstLevelModel

    tables = [e.rename(columns={"stim_file": "trial_type"}) for e in events]
    codes = {name: f"cond{k:05d}" for k, name in enumerate(sorted(tables[0]["trial_type"]))}
    for t in tables:
        t["trial_type"] = t["trial_type"].map(codes)
    t0 = time.perf_counter()
    with _quiet():
        model = FirstLevelModel(
            t_r=TR_S,
            mask_img=mask_img,
            noise_model=noise_model,
            signal_scaling=0,
            hrf_model="glover",
            drift_model="cosine",
            high_pass=0.01,
            minimize_memory=True,
            n_jobs=n_jobs,
        )
        model.fit(imgs, events=tables, confounds=confounds)
        for code in codes.values():
            model.compute_contrast(code, output_type="effect_size")
    return time.perf_counter() - t0


def rsatoolbox_searchlight(patterns, conditions, nb, models, n_spheres):
    """Seconds rsatoolbox takes for ``n_spheres`` spheres (RDMs and model evaluation)."""
    from rsatoolbox.inference import eval_fixed
    from rsatoolbox.model import ModelFixed
    from rsatoolbox.rdm import RDMs
    from rsatoolbox.util.searchlight import evaluate_models_searchlight, get_searchlight_RDMs

    n = min(n_spheres, nb.n_centres)
    subset = np.linspace(0, nb.n_centres - 1, n).astype(np.int64)
    neighbours = [nb.members(c) for c in subset]
    rsa_models = [ModelFixed(f"m{i}", RDMs(m[None, :])) for i, m in enumerate(models)]
    n_jobs = len(os.sched_getaffinity(0))
    with _quiet():
        t0 = time.perf_counter()
        rdms = get_searchlight_RDMs(patterns, subset, neighbours, conditions, method="correlation")
        evaluate_models_searchlight(rdms, rsa_models, eval_fixed, method="spearman", n_jobs=n_jobs)
    return time.perf_counter() - t0, n


def permuted_ols_time(data, n_perm, mask_img=None, tfce=False):
    from nilearn.maskers import NiftiMasker
    from nilearn.mass_univariate import permuted_ols

    kwargs = {}
    if tfce:
        kwargs = {"tfce": True, "masker": NiftiMasker(mask_img).fit()}
    with _quiet():
        t0 = time.perf_counter()
        permuted_ols(
            np.ones((data.shape[0], 1)),
            data,
            model_intercept=False,
            two_sided_test=False,
            n_perm=n_perm,
            random_state=0,
            n_jobs=1,
            output_type="dict",
            verbose=0,
            **kwargs,
        )
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- levels
def participant_level(args, table: Table, grid, mask_img, work: Path) -> None:
    import nibabel as nib
    import torch

    from dnnrsa.features import extract_activations
    from dnnrsa.glm import estimate_patterns
    from dnnrsa.models import get_model, load_model
    from dnnrsa.rdm import compute_rdm
    from dnnrsa.searchlight import searchlight_rsa, volume_neighbourhoods

    spec = get_model("crosschannel")
    checkpoints = write_checkpoints(work / "networks")
    rng = np.random.default_rng(args.seed)
    inputs = {
        m: rng.standard_normal((N_STIMULI, *spec.recipe.input_shape(m))).astype(np.float32)
        for m in spec.recipe.modalities
    }
    modules = {layer.name: layer.module for layer in spec.layers}
    print(f"torch threads {torch.get_num_threads()}")

    for subject in range(1, args.subjects + 1):
        t0 = time.perf_counter()
        imgs, events, confounds = simulate_subject(grid, subject, args.runs, args.seed)
        n_vols = [img.shape[3] for img in imgs]
        print(
            f"\nsub-{subject:02d}: simulated {len(imgs)} runs of {n_vols} volumes in "
            f"{time.perf_counter() - t0:.1f} s (not part of the totals)"
        )
        result = None
        for noise_model in args.noise_models:
            with table.stage(f"sub-{subject:02d} GLM {noise_model}") as row:
                result = estimate_patterns(
                    imgs,
                    events,
                    t_r=TR_S,
                    mask_img=mask_img,
                    confounds=confounds,
                    noise_model=noise_model,
                    n_jobs=args.glm_jobs,
                )
            if not args.skip_peers:
                seconds = nilearn_glm(imgs, events, confounds, mask_img, noise_model, args.glm_jobs)
                table.add_peer(row, seconds, "nilearn FirstLevelModel")
        del imgs
        if args.glm_only:
            continue
        patterns, conditions = result.patterns, result.conditions

        with table.stage(f"sub-{subject:02d} features (4 nets)") as row:
            model_rdms, labels = [], []
            for k, path in enumerate(checkpoints):
                model, _, _ = load_model(checkpoint=path)
                acts = extract_activations(
                    model, inputs, modules, modalities=spec.recipe.modalities, device="cpu"
                )
                for name, values in acts.items():
                    model_rdms.append(compute_rdm(values.reshape(N_STIMULI, -1)))
                    labels.append(f"net{k}_{name}")
            model_rdms = np.stack(model_rdms)

        nb = volume_neighbourhoods(mask_img, radius_mm=6.0)
        with table.stage(f"sub-{subject:02d} searchlight {len(model_rdms)} models") as row:
            scores_img = searchlight_rsa(
                result.to_img(), mask_img, model_rdms, conditions=conditions, progress=False
            )
        if not args.skip_peers:
            order = np.unique(conditions, return_inverse=True)[1]
            means = np.stack([patterns[order == c].mean(axis=0) for c in range(N_STIMULI)])
            seconds, n = rsatoolbox_searchlight(
                means, np.arange(N_STIMULI), nb, model_rdms, args.rsa_spheres
            )
            table.add_peer(row, seconds * nb.n_centres / n, f"rsatoolbox (scaled, {n} sph.)")

        folder = work / f"sub-{subject:02d}" / "searchlight"
        folder.mkdir(parents=True, exist_ok=True)
        with table.stage(f"sub-{subject:02d} write {len(labels)} maps") as row:
            data = np.asanyarray(scores_img.dataobj)
            for k, label in enumerate(labels):
                img = nib.Nifti1Image(data[..., k].astype(np.float32), scores_img.affine)
                nib.save(img, folder / f"sub-{subject:02d}_desc-{label}_rsa.nii.gz")
        row["disk_mb"] = _disk_mb(folder)
        print(f"{'':<34}disk use of the maps: {row['disk_mb']:.1f} MB")
        del scores_img, data, result, patterns


def group_level(args, table: Table, mask: np.ndarray, mask_img) -> None:
    from scipy import ndimage

    from dnnrsa.stats import sign_flip_test

    n_sub, n_maps = args.group_subjects, N_NETWORKS * 29
    n_vox = int(mask.sum())
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    one = np.stack(
        [ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.0)[mask] for _ in range(n_sub)]
    )
    one /= one.std(axis=1, keepdims=True)
    one[:, : n_vox // 100] += 0.8  # a planted effect
    # 116 maps per subject: the smooth map shifted along the voxel axis, plus noise
    data = np.empty((n_sub, n_maps * n_vox), dtype=np.float32)
    for k in range(n_maps):
        block = np.roll(one, 97 * k, axis=1) + 0.3 * rng.standard_normal(one.shape)
        data[:, k * n_vox : (k + 1) * n_vox] = block
    print(
        f"\ngroup: {n_sub} subjects x {n_maps} maps x {n_vox} voxels "
        f"({data.nbytes / 2**30:.2f} GiB float32) built in {time.perf_counter() - t0:.1f} s"
    )
    with table.stage(f"group max-T {n_maps} maps, {args.n_perm} perm") as row:
        sign_flip_test(data, n_permutations=args.n_perm, random_state=0)
    if args.n_perm < 5000:
        print(
            f"{'':<34}scaled to 5,000 permutations: {row['wall_s'] * 5000 / args.n_perm:.0f} s "
            f"(linear in the permutations timed here, an upper bound: the observed maps are "
            f"computed once)"
        )
    if not args.skip_peers:
        seconds = permuted_ols_time(one, args.peer_perm)
        scaled = seconds * n_maps * args.n_perm / args.peer_perm
        table.add_peer(row, scaled, f"permuted_ols (scaled, {args.peer_perm} p.)")
    del data

    with table.stage(f"group TFCE 1 map, {args.tfce_perm} perm") as row:
        sign_flip_test(one, mask=mask, tfce=True, n_permutations=args.tfce_perm, random_state=0)
    if not args.skip_peers:
        seconds = permuted_ols_time(one, args.peer_tfce_perm, mask_img=mask_img, tfce=True)
        scaled = seconds * args.tfce_perm / args.peer_tfce_perm
        table.add_peer(row, scaled, f"permuted_ols (scaled, {args.peer_tfce_perm} p.)")


def main(argv=None) -> int:
    args = settings(build_parser().parse_args(argv))
    import nibabel as nib

    from dnnrsa.demo.bold import make_grid

    grid = make_grid(args.voxel_size)
    mask_img = nib.Nifti1Image(grid.mask.astype(np.uint8), grid.affine)
    n_cores = len(os.sched_getaffinity(0))
    print(
        f"{'quick' if args.quick else 'study'} scale: {args.voxel_size:g} mm grid "
        f"{grid.mask.shape}, {int(grid.mask.sum())} brain voxels, {args.runs} runs x "
        f"{N_STIMULI} stimuli, {N_NETWORKS} networks x 29 layers; {n_cores} cores"
    )
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dnnrsa-study-"))
    work.mkdir(parents=True, exist_ok=True)
    table = Table()
    tracemalloc.start()
    try:
        if not args.skip_participant:
            participant_level(args, table, grid, mask_img, work)
        if not args.skip_group:
            group_level(args, table, grid.mask, mask_img)
    finally:
        tracemalloc.stop()
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)
    table.print()
    for noise_model in args.noise_models:
        rows = [
            r
            for r in table.rows
            if r["stage"].startswith("sub-")
            and ("GLM" not in r["stage"] or r["stage"].endswith(noise_model))
        ]
        if rows:
            per_subject = sum(r["wall_s"] for r in rows) / args.subjects
            print(
                f"participant level per subject, GLM {noise_model}: {per_subject:.1f} s "
                f"(study of {args.group_subjects} subjects: "
                f"{per_subject * args.group_subjects / 60:.1f} min)"
            )
    group = [r for r in table.rows if r["stage"].startswith("group")]
    if group:
        print(f"group level: {sum(r['wall_s'] for r in group):.1f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory of the process: {peak:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
