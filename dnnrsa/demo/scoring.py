"""Scoring searchlight maps against the planted ground truth of the demo data set.

The group-mean map of a part of the network (visual, auditory, crossmodal) is
the mean over participants and over that part's layers (of the study's network:
standard networks of ``--network`` are left out) of the Fisher z of the
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
        if part not in PARTS or side.get("Network"):  # the study's network only
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
    """The ``Part`` of each model RDM (``task-<t>_<name>_rdm.json``); ``model`` when none,
    ``network`` for a layer of a standard network (``--network``: a control beside the
    study's network, not part of its checks)."""
    parts = []
    for name in names:
        side = sidecar_path(Path(derivatives) / f"task-{task}_{name}_rdm.tsv")
        meta = read_json(side) if side.is_file() else {}
        parts.append("network" if meta.get("Network") else str(meta.get("Part", "model")))
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
    (over every trained network's layers of that part; the layers of a standard network
    of ``--network``, a control beside them, take no part in the checks):

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


# --------------------------------------------------------------------------- encoding partition
#: The planted variance partition: the components expected to dominate each region
#: (unique variance of a band, or the variance the bands share).
EXPECTED_PARTITION = {
    "visual": ("unique_visual",),
    "auditory": ("unique_auditory",),
    "crossmodal": ("unique_crossmodal", "shared"),
}
#: The components of the partition, columns of :func:`encoding_partition`.
COMPONENTS = ("unique_visual", "unique_auditory", "unique_crossmodal", "shared")
#: The largest joint R² the negative control may have.
CONTROL_MAX_R2 = 0.01


def _partition_rows(derivatives: Path, task: str, space: str):
    """Every participant's region table of the encoding models whose bands are the
    network's parts (the checkpoints; a standard network has one band, ``network``),
    as rows of (participant, model, roi, component, mean)."""
    import pandas as pd

    rows = []
    pattern = f"sub-*/func/sub-*_task-{task}_space-{space}_model-*_desc-encodingroi_stats.tsv"
    for path in sorted(Path(derivatives).glob(pattern)):
        table = pd.read_csv(path, sep="\t")
        table = table[(table["stat"] == "r2") & table["layer"].isna()]
        if not set(PARTS) <= set(table["band"].dropna()):
            continue
        subject = path.name.split("_")[0]
        model = path.name.split("_model-")[1].split("_")[0]
        for r in table.itertuples(index=False):
            if r.quantity == "encodingunique" and r.band in PARTS:
                component = f"unique_{r.band}"
            elif r.quantity in ("encoding", "encodingshared", "encodingceiling"):
                component = {"encoding": "joint", "encodingshared": "shared"}.get(
                    r.quantity, "ceiling"
                )
            else:
                continue
            rows.append((subject, model, r.roi, component, float(r.mean)))
    return pd.DataFrame(rows, columns=["participant", "model", "roi", "component", "mean"])


def encoding_partition(
    derivatives: Path,
    *,
    task: str,
    space: str,
    model: str | None = "emotion",
    control: str = "control",
):
    """The demo's planted variance partition, read from the encoding models' region
    tables (``desc-encodingroi_stats.tsv``, ``--encoding`` with ``--roi``).

    Each region's joint R², each band's unique variance and the shared variance, as
    means over participants, of the network ``model`` (default: the emotion network,
    the study's; the planted STS/TPJ code is the emotion, which only it was trained
    to carry), or with ``model=None`` over every network whose bands are the parts
    (visual, auditory, crossmodal); and the check of each planted region
    (:data:`EXPECTED_PARTITION`): the expected component is the largest of the four
    (:data:`COMPONENTS`; for STS/TPJ, the larger of the cross-modal band's unique
    variance and the shared variance beats both arms' unique variance) and is above 0.
    The negative control holds when its joint R² is at most :data:`CONTROL_MAX_R2` and
    below every planted region's.

    Returns
    -------
    pandas.DataFrame
        One row per region: ``roi``, ``joint``, the :data:`COMPONENTS`, ``ceiling``,
        ``expected`` (what the planted truth predicts) and ``holds`` (None for a region
        without a check).
    """
    import pandas as pd

    rows = _partition_rows(derivatives, task, space)
    if model is not None:
        rows = rows[rows["model"] == model]
    if rows.empty:
        raise FileNotFoundError(
            f"no encoding region table (desc-encodingroi_stats.tsv) of "
            f"{'the network ' + model if model else 'a network'} with the bands "
            f"{list(PARTS)} in {derivatives}"
        )
    means = rows.pivot_table(index="roi", columns="component", values="mean", aggfunc="mean")
    table = pd.DataFrame(
        {c: means[c] for c in ("joint", *COMPONENTS, "ceiling") if c in means}
    ).reset_index()
    expected, holds = [], []
    planted = table[table["roi"].isin(list(EXPECTED_PARTITION))]
    for r in table.itertuples(index=False):
        values = {c: float(getattr(r, c)) for c in COMPONENTS}
        if r.roi in EXPECTED_PARTITION:
            want = EXPECTED_PARTITION[r.roi]
            best = max(values[c] for c in want)
            rest = max(v for c, v in values.items() if c not in want)
            expected.append(" or ".join(want) + " largest, above 0")
            holds.append(bool(best > rest and best > 0))
        elif r.roi == control:
            expected.append(f"joint R² at most {CONTROL_MAX_R2:g}, below every planted region's")
            joint = float(r.joint)
            holds.append(bool(joint <= CONTROL_MAX_R2 and (joint < planted["joint"]).all()))
        else:
            expected.append("")
            holds.append(None)
    table["expected"] = expected
    table["holds"] = holds
    return table
