"""Time the sign-flip permutation test against nilearn on identical data.

Whole-brain MNI 2 mm mask (about 235,000 voxels), smooth random subject maps with
a planted effect, one-sample test:

1. max-T FWE: ``dnnrsa.stats.sign_flip_test`` and ``nilearn.mass_univariate
   .permuted_ols`` (the engine of ``non_parametric_inference``), same number of
   permutations;
2. TFCE (and cluster mass/size) with fewer permutations, both tools.

Both tools are given the same sign patterns (nilearn's, reproduced), so the
outputs must agree; the script checks this and prints times and ratios.

Run: ``python benchmarks/permutation.py`` (``--help`` for the settings; use
``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def _nilearn_sign_flips(random_state: int, n_subjects: int, n_perm: int) -> np.ndarray:
    outer = np.random.RandomState(random_state)
    inner = np.random.RandomState(outer.randint(1, np.iinfo(np.int32).max - 1))
    current = np.ones((n_subjects, 1))
    flips = np.empty((n_perm, n_subjects))
    for k in range(n_perm):
        current = current * (inner.randint(2, size=(n_subjects, 1)) * 2 - 1)
        flips[k] = current[:, 0]
    return flips


def _data(n_subjects: int, resolution_mm: int, seed: int):
    from nilearn.datasets import load_mni152_brain_mask
    from scipy import ndimage

    mask_img = load_mni152_brain_mask(resolution=resolution_mm)
    mask = np.asanyarray(mask_img.dataobj) > 0
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_subjects):
        vol = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.0)
        rows.append(vol[mask] / vol[mask].std())
    data = np.stack(rows)
    data[:, :2000] += 0.8  # a planted effect
    return data, mask, mask_img


def _run_nilearn(data, masker, n_perm, seed, **kwargs):
    from nilearn.mass_univariate import permuted_ols

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return permuted_ols(
            np.ones((data.shape[0], 1)),
            data,
            model_intercept=False,
            two_sided_test=False,
            n_perm=n_perm,
            random_state=seed,
            n_jobs=1,
            masker=masker,
            output_type="dict",
            verbose=0,
            **kwargs,
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=20)
    parser.add_argument("--n-permutations", type=int, default=5000)
    parser.add_argument("--tfce-permutations", type=int, default=20)
    parser.add_argument("--resolution-mm", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-nilearn", action="store_true")
    parser.add_argument("--quick", action="store_true", help="500 / 5 permutations")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_permutations, args.tfce_permutations = 500, 5

    from nilearn.maskers import NiftiMasker

    from dnnrsa import stats

    data, mask, mask_img = _data(args.n_subjects, args.resolution_mm, args.seed)
    masker = NiftiMasker(mask_img).fit()
    print(
        f"data: {args.n_subjects} subjects x {data.shape[1]} voxels "
        f"(MNI {args.resolution_mm} mm mask), device={args.device}"
    )

    # 1. max-T ------------------------------------------------------------------------
    n_perm = args.n_permutations
    flips = _nilearn_sign_flips(args.seed, args.n_subjects, n_perm)
    t0 = time.perf_counter()
    ours = stats.sign_flip_test(data, sign_flips=flips, device=args.device)
    t_ours = time.perf_counter() - t0
    print(f"max-T, {n_perm} permutations: dnnrsa {t_ours:.2f} s")
    if not args.skip_nilearn:
        t0 = time.perf_counter()
        ref = _run_nilearn(data, None, n_perm, args.seed)
        t_ref = time.perf_counter() - t0
        same = np.allclose(ours.p_fwe, 10 ** -ref["logp_max_t"][0], rtol=1e-8)
        print(
            f"max-T, {n_perm} permutations: nilearn permuted_ols {t_ref:.2f} s; "
            f"ratio {t_ref / t_ours:.1f}x; identical FWE p: {same}"
        )

    # 2. TFCE and clusters ------------------------------------------------------------
    n_tfce = args.tfce_permutations
    flips = _nilearn_sign_flips(args.seed, args.n_subjects, n_tfce)
    t0 = time.perf_counter()
    ours = stats.sign_flip_test(
        data,
        mask=mask,
        sign_flips=flips,
        tfce=True,
        cluster_forming_threshold=0.001,
        device=args.device,
    )
    t_ours = time.perf_counter() - t0
    print(
        f"TFCE + clusters, {n_tfce} permutations: dnnrsa {t_ours:.2f} s "
        f"({t_ours / (n_tfce + 1):.2f} s per map)"
    )
    if not args.skip_nilearn:
        t0 = time.perf_counter()
        ref = _run_nilearn(data, masker, n_tfce, args.seed, tfce=True, threshold=0.001)
        t_ref = time.perf_counter() - t0
        same = np.allclose(ours.tfce, ref["tfce"][0], rtol=1e-8) and np.allclose(
            ours.h0_max_tfce, ref["h0_max_tfce"][0], rtol=1e-8
        )
        print(
            f"TFCE + clusters, {n_tfce} permutations: nilearn permuted_ols {t_ref:.2f} s; "
            f"ratio {t_ref / t_ours:.1f}x; identical TFCE and null: {same}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
