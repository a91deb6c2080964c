"""Time model inference (two-factor bootstrap) against rsatoolbox on identical data.

20 subject RDMs, 72 conditions, 29 model RDMs (the layers of the cross-channel
network), 1,000 bootstrap samples over subjects and stimuli with the corrected
two-factor variance: ``dnnrsa.inference.evaluate_models(mode="both")`` and
``rsatoolbox.inference.eval_dual_bootstrap`` (fixed models, no cross-validation),
for each comparator, side by side, both with BLAS on one thread. Wall-clock and
CPU time are both printed: on a shared machine the CPU time is the fairer measure.

rsatoolbox's run takes minutes to hours at this size (about 1.5 s per sample for
Spearman and over 10 s for the whitened comparators on one core), so by default
it is timed on a few samples and its time scaled linearly to the full number; the
output says so. ``--rsa-samples`` sets how many (``--rsa-samples 1000`` times the
full run).

Run: ``python benchmarks/inference.py`` (``--help`` for the settings, ``--quick``
for a short run).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")  # rsatoolbox's progress bars

RSA_DEFAULT_SAMPLES = {
    "spearman": 10,
    "pearson": 20,
    "cosine": 20,
    "corr_cov": 2,
    "cosine_cov": 2,
}


def _data(n_subjects: int, n_conditions: int, n_models: int, seed: int):
    rng = np.random.default_rng(seed)
    n_pairs = n_conditions * (n_conditions - 1) // 2
    truth = rng.random(n_pairs)
    data = truth + 0.8 * rng.random((n_subjects, n_pairs))
    mix = np.linspace(0.0, 1.0, n_models)[:, None]
    models = mix * truth + (1 - mix) * rng.random((n_models, n_pairs))
    return models, data


def _clock(fn):
    """Wall-clock and CPU seconds of ``fn()`` (CPU time is the fairer measure when the
    machine is shared), with BLAS on one thread for both tools."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        wall, cpu = time.perf_counter(), time.process_time()
        res = fn()
        return time.perf_counter() - wall, time.process_time() - cpu, res


def _time_dnnrsa(models, data, method, n_boot, seed):
    from dnnrsa.inference import evaluate_models

    return _clock(
        lambda: evaluate_models(models, data, method, mode="both", n_boot=n_boot, seed=seed)
    )


def _time_rsatoolbox(models, data, method, n_samples, seed):
    from rsatoolbox.inference import eval_dual_bootstrap
    from rsatoolbox.model import ModelFixed
    from rsatoolbox.rdm import RDMs

    from dnnrsa.inference import RSATOOLBOX_NAMES

    fixed = [ModelFixed(f"layer{i}", RDMs(m[None])) for i, m in enumerate(models)]
    np.random.seed(seed)  # noqa: NPY002 (rsatoolbox draws from numpy's global generator)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return eval_dual_bootstrap(
                fixed, RDMs(data), method=RSATOOLBOX_NAMES[method], N=n_samples
            )

    return _clock(run)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--conditions", type=int, default=72)
    parser.add_argument("--models", type=int, default=29)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["spearman", "pearson", "cosine", "corr_cov", "cosine_cov"],
    )
    parser.add_argument(
        "--rsa-samples",
        type=int,
        default=None,
        help="rsatoolbox samples to time (scaled to --n-boot); default per comparator",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.subjects, args.conditions, args.models, args.n_boot = 8, 24, 6, 100

    models, data = _data(args.subjects, args.conditions, args.models, args.seed)
    print(
        f"{args.subjects} subjects, {args.conditions} conditions, {args.models} model RDMs, "
        f"{args.n_boot} two-factor bootstrap samples (subjects and stimuli)"
    )
    header = (
        f"{'comparator':<11} {'dnnrsa wall s':>13} {'cpu s':>7} {'rsatoolbox wall s':>17} "
        f"{'cpu s':>8} {'ratio wall':>10} {'ratio cpu':>9}  {'rsatoolbox timing':<27} "
        f"{'|mean diff|/SE':>14}"
    )
    print(header)
    print("-" * len(header))
    ratios = {}
    for method in args.methods:
        wall, cpu, ours = _time_dnnrsa(models, data, method, args.n_boot, args.seed)
        n_rsa = args.rsa_samples or RSA_DEFAULT_SAMPLES.get(method, 10)
        n_rsa = min(n_rsa, args.n_boot)
        rsa_wall, rsa_cpu, ref = _time_rsatoolbox(models, data, method, n_rsa, args.seed)
        scale = args.n_boot / n_rsa
        how = "full run" if n_rsa == args.n_boot else f"{n_rsa} samples, scaled x{scale:g}"
        ratio_wall = rsa_wall * scale / wall
        ratio_cpu = rsa_cpu * scale / cpu
        ratios[method] = (ratio_wall, ratio_cpu)
        # agreement of the bootstrap means, in units of dnnrsa's SE (rsatoolbox's
        # few samples make its means noisy; a sanity check, not a test)
        diff = np.max(np.abs(ours.mean - ref.get_means()) / np.maximum(ours.se, 1e-12))
        print(
            f"{method:<11} {wall:>13.2f} {cpu:>7.2f} {rsa_wall * scale:>17.1f} "
            f"{rsa_cpu * scale:>8.1f} {ratio_wall:>9.0f}x {ratio_cpu:>8.0f}x  {how:<27} "
            f"{diff:>14.2f}"
        )
    print()
    print(
        f"smallest ratio: {min(r[0] for r in ratios.values()):.0f}x wall-clock, "
        f"{min(r[1] for r in ratios.values()):.0f}x CPU time (target: at least 50x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
