"""Scoring searchlight maps against the planted ground truth of the demo data set.

The group-mean map of a part of the network (visual, auditory, crossmodal) is
the mean over participants and over that part's layers of the Fisher z of the
participants' searchlight scores; it should single out the region planted with
that part's kind of features. How well it does is the area under the ROC curve
(scikit-learn's :func:`~sklearn.metrics.roc_auc_score`) of the map's values for
the voxels inside a region against all other scored voxels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bidsnames import read_json, sidecar_path

#: Parts of the network, as named in the ``Part`` field of the map sidecars.
PARTS = ("visual", "auditory", "crossmodal")


def region_auc(scores: np.ndarray, in_region: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the voxels ``in_region``.

    Parameters
    ----------
    scores : ndarray of shape (n_voxels,)
    in_region : ndarray of bool, shape (n_voxels,)

    Returns
    -------
    float
        NaN when every voxel lies inside the region or none does.
    """
    from sklearn.metrics import roc_auc_score

    in_region = np.asarray(in_region, dtype=bool)
    if in_region.all() or not in_region.any():
        return float("nan")
    return float(roc_auc_score(in_region, np.asarray(scores, dtype=float)))


def groundtruth_auc(part_maps: dict[str, np.ndarray], region_masks: dict[str, np.ndarray]):
    """AUC of every part's map against every planted region.

    Parameters
    ----------
    part_maps : dict of part -> ndarray
        Group-mean map of each part (any shape; NaN where not scored).
    region_masks : dict of region -> ndarray of bool
        Planted region masks of the same shape as the maps.

    Returns
    -------
    pandas.DataFrame
        Rows: the parts (index named ``layers``); columns: the regions; values:
        AUC of the voxels in the region against all other voxels that have a score.
    """
    import pandas as pd

    rows = {}
    for part, mean in part_maps.items():
        scored = np.isfinite(mean)
        rows[part] = {
            region: region_auc(mean[scored], np.asarray(mask, dtype=bool)[scored])
            for region, mask in region_masks.items()
        }
    return pd.DataFrame(rows).T.rename_axis("layers")


def part_mean_maps(derivatives: Path, *, task: str, space: str):
    """Mean Fisher z map of each part's layers over the participants' searchlight maps.

    Parameters
    ----------
    derivatives : Path
        Output folder of the BIDS App (participant level).
    task, space : str

    Returns
    -------
    maps : dict of part -> ndarray (X, Y, Z)
        Only the parts that have maps, in the order of :data:`PARTS`.
    affine : ndarray of shape (4, 4) or None
    """
    import nibabel as nib

    from ..stats import fisher_z

    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    affine = None
    pattern = f"sub-*/func/sub-*_task-{task}_space-{space}_model-*_layer-*_statmap.nii.gz"
    for path in sorted(Path(derivatives).glob(pattern)):
        side = read_json(sidecar_path(path))
        part = side.get("Part")
        if part not in PARTS:
            continue
        img = nib.load(path)
        affine = img.affine
        z = fisher_z(np.asarray(img.dataobj, dtype=np.float64))
        sums[part] = sums.get(part, 0.0) + z
        counts[part] = counts.get(part, 0) + 1
    maps = {part: sums[part] / counts[part] for part in PARTS if part in sums}
    return maps, affine


def _mask_on_grid(mask_path: Path, shape, affine) -> np.ndarray:
    """A region mask as booleans on the maps' grid (resampled, nearest, when needed)."""
    import nibabel as nib

    mask_img = nib.load(mask_path)
    if mask_img.shape[:3] != tuple(shape) or not np.allclose(mask_img.affine, affine, atol=1e-3):
        from nilearn.image import resample_to_img

        mask_img = resample_to_img(
            mask_img,
            nib.Nifti1Image(np.zeros(shape, dtype=np.float32), affine),
            interpolation="nearest",
            force_resample=True,
            copy_header=True,
        )
    return np.asarray(mask_img.dataobj) > 0


def evaluate_groundtruth(derivatives: Path, groundtruth: dict[str, Path], *, task: str, space: str):
    """AUC of each part's group-mean map against every planted region mask.

    The group-mean map of a part is the mean over subjects and over that part's
    layers of the Fisher z of the participants' searchlight scores.

    Parameters
    ----------
    derivatives : Path
        Output folder of the BIDS App.
    groundtruth : dict of region -> path of the planted region mask
    task, space : str

    Returns
    -------
    pandas.DataFrame
        Rows: layer groups (visual, auditory, crossmodal); columns: the planted
        regions; values: AUC (voxels in the region against all other voxels that
        have a score).
    """
    maps, affine = part_mean_maps(derivatives, task=task, space=space)
    if not maps:
        return groundtruth_auc({}, {})
    shape = next(iter(maps.values())).shape
    masks = {region: _mask_on_grid(path, shape, affine) for region, path in groundtruth.items()}
    return groundtruth_auc(maps, masks)


# --------------------------------------------------------------------------- ROI acceptance
#: Columns of :func:`roi_acceptance`.
ACCEPTANCE_COLUMNS = (
    "roi",
    "check",
    "model",
    "other",
    "value",
    "reference",
    "p_value",
    "p_adjusted",
    "holds",
)


def _roi_table(derivatives: Path, task: str, space: str, roi: str, desc: str):
    import pandas as pd

    from ..bidsnames import build_name

    path = Path(derivatives) / build_name(
        {"task": task, "space": space, "roi": roi, "desc": desc}, "stats", ".tsv"
    )
    if not path.is_file():
        raise FileNotFoundError(f"no group-level ROI table {path.name} in {derivatives}")
    return pd.read_csv(path, sep="\t")


def _model_parts(derivatives: Path, task: str, names) -> list[str]:
    """The ``Part`` of each model RDM (``task-<t>_<name>_rdm.json``); ``model`` when none."""
    parts = []
    for name in names:
        side = sidecar_path(Path(derivatives) / f"task-{task}_{name}_rdm.tsv")
        parts.append(str(read_json(side).get("Part", "model")) if side.is_file() else "model")
    return parts


def _pairwise(pairs, a: str, b: str) -> tuple[float, float, float]:
    """Difference ``a - b`` of the bootstrap means, its p value and adjusted p value."""
    row = pairs[(pairs["model_a"] == a) & (pairs["model_b"] == b)]
    sign = 1.0
    if row.empty:
        row, sign = pairs[(pairs["model_a"] == b) & (pairs["model_b"] == a)], -1.0
    if row.empty:
        return float("nan"), float("nan"), float("nan")
    r = row.iloc[0]
    return sign * float(r["difference"]), float(r["p"]), float(r["p_adjusted"])


def roi_acceptance(
    derivatives: Path,
    *,
    task: str,
    space: str,
    target: str = "crossmodal",
    visual: str = "visual",
    control: str = "control",
    alpha: float = 0.05,
):
    """The demo's acceptance checks of the group-level ROI evaluation.

    From the tables the group level writes per region (``desc-evaluation``,
    ``desc-noiseceiling``, ``desc-pairwise``), with every layer's part read from its
    RDM's sidecar and the best layer of a part the one with the highest bootstrap mean
    (over every network's layers of that part):

    * in ``target`` (the planted STS/TPJ region): the best cross-modal layer beats the
      best visual and the best auditory layer (pairwise test, difference > 0 and
      FDR-adjusted p <= ``alpha``, the app's correction over all pairs), and reaches the
      lower bound of the noise ceiling (its bootstrap mean is at least the bound's, or
      the two-sided test against the bound, FDR-adjusted over models, gives
      p > ``alpha``);
    * in ``visual`` (early visual cortex): the best visual layer beats the best layer of
      each other part;
    * in ``control`` (no planted geometry): no layer is above zero at ``alpha``
      family-wise over the layers (Holm's step-down adjustment of the one-sided
      p values against zero).

    Parameters
    ----------
    derivatives : Path
        Output folder of the BIDS App after the group level.
    task, space : str
    target, visual, control : str
        Names of the regions (``--roi NAME=...``).
    alpha : float

    Returns
    -------
    pandas.DataFrame
        One row per check, with the columns :data:`ACCEPTANCE_COLUMNS`: ``model`` (the
        layer the check is about), ``other`` (the layer it is compared with, or the
        bound), ``value`` (its bootstrap mean, or the difference of means), ``reference``
        (the other's mean, the bound, or the number of layers tested), ``p_value``,
        ``p_adjusted`` and ``holds``.
    """
    import pandas as pd

    def table(roi, kind):
        return _roi_table(derivatives, task, space, roi, kind)

    def part_of(models):
        return _model_parts(derivatives, task, models)

    rows = []
    # the planted STS/TPJ region
    best = _best_by_part(table(target, "evaluation"), part_of)
    rows += _beats_rows(target, "crossmodal", best, table(target, "pairwise"), alpha)
    if "crossmodal" in best:
        ceiling = table(target, "noiseceiling").set_index("bound")
        rows.append(_ceiling_row(target, best["crossmodal"], ceiling, alpha))
    # early visual cortex
    best = _best_by_part(table(visual, "evaluation"), part_of)
    rows += _beats_rows(visual, "visual", best, table(visual, "pairwise"), alpha)
    # the negative control
    rows += _control_rows(control, table(control, "evaluation"), part_of, alpha)
    return pd.DataFrame(rows, columns=list(ACCEPTANCE_COLUMNS))


def _best_by_part(ev, part_of) -> dict:
    """The best layer (highest mean) of each part in one region's evaluation table."""
    ev["part"] = part_of(ev["model"])
    best = {}
    for part in PARTS:
        sub = ev[ev["part"] == part]
        if not sub.empty:
            best[part] = sub.loc[sub["mean"].idxmax()]
    return best


def _beats_rows(roi, winner_part, best, pairs, alpha) -> list[dict]:
    """One check per other part: the winner part's best layer beats that part's best."""
    rows = []
    win = best.get(winner_part)
    for part in PARTS:
        if part == winner_part or part not in best or win is None:
            continue
        diff, p, p_adj = _pairwise(pairs, win["model"], best[part]["model"])
        rows.append(
            dict(
                roi=roi,
                check=f"best {winner_part} layer beats best {part} layer",
                model=win["model"],
                other=best[part]["model"],
                value=diff,
                reference=float(best[part]["mean"]),
                p_value=p,
                p_adjusted=p_adj,
                holds=bool(diff > 0 and p_adj <= alpha),
            )
        )
    return rows


def _ceiling_row(roi, win, ceiling, alpha) -> dict:
    """The best cross-modal layer reaches the lower noise ceiling (or is not below it)."""
    lower = float(ceiling.loc["lower", "mean"])
    p_adj = float(win["p_noise_ceiling_adjusted"])
    return dict(
        roi=roi,
        check="best crossmodal layer reaches the lower noise ceiling",
        model=win["model"],
        other="noise ceiling (lower bound)",
        value=float(win["mean"]),
        reference=lower,
        p_value=float(win["p_noise_ceiling"]),
        p_adjusted=p_adj,
        holds=bool(float(win["mean"]) >= lower or p_adj > alpha),
    )


def _control_rows(roi, ev, part_of, alpha) -> list[dict]:
    """No layer of any part explains the negative control (Holm over the layers)."""
    from ..inference import adjust_pvalues

    ev["part"] = part_of(ev["model"])
    layers = ev[ev["part"].isin(PARTS)]
    if layers.empty:
        return []
    p_holm = np.asarray(adjust_pvalues(layers["p_zero"].to_numpy(float), "holm"))
    k = int(np.argmin(p_holm))
    return [
        dict(
            roi=roi,
            check="no layer above zero (family-wise over layers)",
            model=str(layers["model"].iloc[k]),
            other="zero",
            value=float(layers["mean"].iloc[k]),
            reference=float(len(layers)),
            p_value=float(layers["p_zero"].iloc[k]),
            p_adjusted=float(p_holm[k]),
            holds=bool(np.all(p_holm > alpha)),
        )
    ]
