"""The runs that ``glm.py`` and ``study.py`` simulate, with the demo generator's machinery.

The run design: ``N_STIMULI`` stimuli of ``CLIP_S`` s in random order with gaps of
``ITI_RANGE_S`` s, at TR ``TR_S`` (``dnnrsa.demo.bold.make_run_events``); the BOLD of
the brain voxels of a ``dnnrsa.demo.bold.make_grid`` grid with AR(1) noise, drift,
physiological and motion signals (``dnnrsa.demo.bold.simulate_run``).
"""

from __future__ import annotations

import numpy as np

N_STIMULI = 72
CLIP_S = 3.0
TR_S = 2.0
ITI_RANGE_S = (2.5, 4.5)
#: The confounds the GLMs take: the 6 motion parameters, CSF and white matter.
CONFOUNDS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "csf", "white_matter")


def stimulus_betas(n_vox: int, rng: np.random.Generator) -> np.ndarray:
    """Each stimulus's response (N_STIMULI, n_vox): 8 random features embedded in the voxels."""
    from dnnrsa.demo.bold import embed_features

    return embed_features(rng.standard_normal((N_STIMULI, 8)), n_vox, signal_sd=0.5, rng=rng)


def simulated_run(grid, betas: np.ndarray, rng: np.random.Generator):
    """One run: ``(order, onsets, run)``, the stimuli in the order shown, their onsets
    in s and the ``dnnrsa.demo.bold.SimulatedRun`` (``bold`` of shape (n_volumes,
    n_voxels), ``confounds``)."""
    from dnnrsa.demo.bold import make_run_events, simulate_run, trial_regressors
    from dnnrsa.demo.design import LEAD_S, TAIL_S

    order, onsets, n_vol = make_run_events(
        N_STIMULI,
        rng,
        clip_s=CLIP_S,
        iti_range_s=ITI_RANGE_S,
        lead_s=LEAD_S,
        tail_s=TAIL_S,
        tr_s=TR_S,
    )
    regressors = trial_regressors(onsets, CLIP_S, np.arange(n_vol) * TR_S)
    ventricles = np.zeros(grid.mask.shape, dtype=bool)
    run = simulate_run(grid, ventricles, regressors, betas[order], tr_s=TR_S, noise_sd=1.0, rng=rng)
    return order, onsets, run
