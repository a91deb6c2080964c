"""Encoding maps from the rows of a GLM: what the BIDS App writes for ``--encoding``.

:func:`encoding_maps` averages a network's activations over the stimuli of each
condition, fits :func:`dnnrsa.encoding.fit_encoding` on patterns given as rows
labelled by run and condition, and returns every map with its file name and sidecar;
:func:`encoding_roi_table` averages those maps over regions of interest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .encoding import (
    DEFAULT_N_COMPONENTS,
    DEFAULT_N_ITER,
    DEFAULT_STIMULUS_FOLDS,
    EncodingResult,
    _check_activations,
    _check_alphas,
    fit_encoding,
    patterns_by_run,
)

__all__ = [
    "NEGATIVE_ESTIMATES",
    "ROI_TABLE_COLUMNS",
    "EncodingMaps",
    "encoding_maps",
    "encoding_roi_table",
]

#: How the BIDS App's sidecars describe negative estimates (:func:`dnnrsa.encoding.variance_partition`).
NEGATIVE_ESTIMATES = (
    "reported as they come out, never clipped: a negative unique variance means adding the "
    "band made the held-out prediction worse; noise voxels scatter around zero"
)


#: The columns of :func:`encoding_roi_table` (the per-region table the BIDS App writes).
ROI_TABLE_COLUMNS = ("roi", "quantity", "stat", "band", "layer", "mean", "n_voxels")


@dataclass
class EncodingMaps:
    """What :func:`encoding_maps` returns: the fit, the condition order it used, and
    each map to write as ``(file name, values over the voxels, sidecar)``."""

    result: EncodingResult
    conditions: list[str]
    maps: list[tuple[str, np.ndarray, dict]]


def _alpha_summary(alphas: np.ndarray, valid: np.ndarray) -> dict:
    """The penalties chosen for one band (folds x voxels), over the fitted voxels."""
    chosen = alphas[:, valid]
    if chosen.size == 0:
        return {}
    return {
        "Median": float(np.median(chosen)),
        "Min": float(chosen.min()),
        "Max": float(chosen.max()),
        "PerFoldMedian": [float(v) for v in np.median(chosen, axis=1)],
    }


def _map_list(res: EncodingResult, entities: Mapping[str, str], settings: dict) -> list:
    """The maps of :func:`encoding_maps` with their names and sidecars."""
    from .bidsnames import build_name, to_label

    bands = res.band_names
    settings = dict(settings)
    runs = settings.pop("Runs")
    common = {
        "Bands": {b: list(layers) for b, layers in res.bands.items()},
        "FeaturesPerBand": {b: [int(n) for n in res.n_features[b]] for b in bands},
        "AlphasChosen": {
            b: _alpha_summary(res.alphas[:, i], res.valid) for i, b in enumerate(bands)
        },
        **settings,
        "Folds": {
            "Scheme": "leave one run out"
            + ("" if settings["StimulusFolds"] is None else ", each run group by group of stimuli"),
            "NumberOfFolds": len(res.folds),
            "Runs": runs,
        },
        "NoiseCeiling": {
            "Method": "split-half correlation over stimuli, Spearman-Brown corrected to one "
            "run (Ceiling) and to all runs (Reliability)",
            "Halves": res.ceiling.halves,
            "Splits": int(res.ceiling.n_splits),
            "MinReliability": float(res.ceiling.min_reliability),
        },
        "VoxelsFitted": int(res.valid.sum()),
        "Backend": res.backend,
    }

    def name(desc: str, stat: str, **extra) -> str:
        ents = {
            **entities,
            **{k: to_label(v) for k, v in extra.items()},
            "desc": desc,
            "stat": stat,
        }
        return build_name(ents, "statmap", ".nii.gz")

    out = [
        (
            name("encoding", "r2"),
            res.r2,
            "joint model: cross-validated R² (mean over held-out runs)",
        ),
        (name("encoding", "r"), res.r, "joint model: Pearson r of prediction and held-out run"),
    ]
    for i, b in enumerate(bands):
        out.append(
            (
                name("encodingsplit", "r2", band=b),
                res.r2_split[i],
                f"band {b}'s share of the joint R² (split scoring; the shares add up to the R²)",
            )
        )
    for i, b in enumerate(bands):
        out.append(
            (
                name("encodingunique", "r2", band=b),
                res.unique[i],
                f"unique variance of band {b}: joint R² minus the R² without it",
            )
        )
    out += [
        (
            name("encodingshared", "r2"),
            res.shared,
            "shared variance: joint R² minus the bands' unique variances",
        ),
        (
            name("encodingceiling", "r2"),
            res.ceiling.ceiling,
            "noise ceiling: the R² on one held-out run a perfect model would reach",
        ),
        (
            name("encodingreliability", "r"),
            res.ceiling.reliability,
            "split-half reliability of the mean of all runs (Spearman-Brown)",
        ),
        (
            name("encodingfraction", "r2"),
            res.r2_fraction,
            "joint R² over the noise ceiling where the reliability exceeds MinReliability, "
            "NaN elsewhere",
        ),
    ]
    for i, layer in enumerate(res.layers):
        for stat, values in (("r2", res.layer_r2[i]), ("r", res.layer_r[i])):
            out.append(
                (
                    name("encoding", stat, layer=layer),
                    values,
                    f"one model of layer {layer}'s features alone",
                    {"LayerName": layer},
                )
            )
    negative = {"NegativeEstimates": NEGATIVE_ESTIMATES}
    maps = []
    for file_name, values, text, *extra in out:
        meta = {"Description": text, **(extra[0] if extra else {}), **common}
        if "encodingsplit" in file_name or "encodingunique" in file_name or "shared" in file_name:
            meta.update(negative)
        maps.append((file_name, np.asarray(values), meta))
    return maps


def encoding_maps(
    patterns,
    runs: Sequence,
    conditions: Sequence,
    activations: Mapping[str, np.ndarray],
    parts: Mapping[str, str],
    *,
    entities: Mapping[str, str],
    stimulus_conditions: Sequence | None = None,
    **kwargs,
) -> EncodingMaps:
    """:func:`fit_encoding` on patterns given as rows labelled by run and condition, and
    its maps named as derivatives with their sidecars (as the BIDS App writes them).

    Parameters
    ----------
    patterns : ndarray of shape (n_rows, n_voxels)
        One pattern per run and condition (a GLM's rows, in any order).
    runs, conditions : sequence of shape (n_rows,)
        The run and the condition of each row; every run must hold every condition once.
    activations : mapping of str to ndarray of shape (n_stimuli, ...)
        Layer name -> activations of each stimulus.
    parts : mapping of str to str
        Layer name -> part of the network (the bands).
    entities : mapping of str to str
        The leading entities of the file names (``sub``, ``task``, ``space``, ``model``),
        BIDS labels.
    stimulus_conditions : sequence of shape (n_stimuli,), optional
        The condition of each stimulus (row of ``activations``); the activations of a
        condition's stimuli are averaged. Default: the rows of ``activations`` are the
        conditions themselves, in the order of their first appearance in ``conditions``.
    **kwargs
        Passed to :func:`fit_encoding`.

    Returns
    -------
    EncodingMaps
        The conditions follow their first appearance in ``stimulus_conditions`` when
        given (else in ``conditions``): the rows the fit (and its stimulus folds) saw.
        The maps: ``desc-encoding_stat-r2`` and ``stat-r`` (joint model),
        ``band-<b>_desc-encodingsplit_stat-r2`` (each band's share),
        ``band-<b>_desc-encodingunique_stat-r2``, ``desc-encodingshared_stat-r2``,
        ``desc-encodingceiling_stat-r2``, ``desc-encodingreliability_stat-r``,
        ``desc-encodingfraction_stat-r2`` and, with per-layer models,
        ``layer-<l>_desc-encoding_stat-r2`` and ``stat-r``.
    """
    rows = np.asarray(patterns)
    if rows.ndim != 2:
        raise ValueError(f"patterns must have shape (n_rows, n_voxels); got {rows.shape}")
    labels = [str(c) for c in conditions]
    runs = np.asarray(runs)
    if len(labels) != rows.shape[0] or runs.shape != (rows.shape[0],):
        raise ValueError(
            f"runs and conditions must have one entry per row of patterns ({rows.shape[0]}); "
            f"got {runs.shape[0]} and {len(labels)}"
        )
    acts = _check_activations(activations, None)
    if stimulus_conditions is None:
        order = list(dict.fromkeys(labels))
        averaged = acts
    else:
        stim = [str(c) for c in stimulus_conditions]
        order = list(dict.fromkeys(stim))
        if set(order) != set(labels):
            raise ValueError(
                "stimulus_conditions must name the conditions of the patterns: "
                f"{sorted(set(order) ^ set(labels))[:10]} are in one but not the other"
            )
        index = np.array([order.index(c) for c in stim])
        counts = np.bincount(index, minlength=len(order))[:, None]
        averaged = {}
        for layer, x in acts.items():
            if x.shape[0] != len(stim):
                raise ValueError(
                    f"activations[{layer!r}] has {x.shape[0]} rows; stimulus_conditions {len(stim)}"
                )
            if np.all(counts == 1):
                averaged[layer] = x[np.argsort(index)]
                continue
            sums = np.zeros((len(order), x.shape[1]))
            np.add.at(sums, index, x.astype(np.float64))
            averaged[layer] = sums / counts

    class _Rows:  # what patterns_by_run reads of a PatternResult
        pass

    table = _Rows()
    table.patterns, table.runs, table.conditions = rows, runs, np.asarray(labels, dtype=object)
    table.condition_order = order
    result = fit_encoding(averaged, parts, patterns_by_run(table), **kwargs)
    folds = kwargs.get("stimulus_folds", DEFAULT_STIMULUS_FOLDS)
    settings = {
        "NComponents": kwargs.get("n_components", DEFAULT_N_COMPONENTS),
        "NIter": int(kwargs.get("n_iter", DEFAULT_N_ITER)),
        "AlphasTried": [float(a) for a in _check_alphas(kwargs.get("alphas"))],
        "StimulusFolds": None
        if folds is None
        else (int(folds) if np.ndim(folds) == 0 else "given"),
        "RandomState": int(kwargs.get("random_state", 0)),
        "Conditions": order,
        "Runs": [str(r) for r in np.unique(runs)],
    }
    return EncodingMaps(result, order, _map_list(result, entities, settings))


def encoding_roi_table(
    maps: Sequence[tuple[str, np.ndarray, dict]], regions: Mapping[str, np.ndarray]
):
    """The mean of each map over each region: one row per region and map.

    Parameters
    ----------
    maps : sequence of (file name, values, sidecar)
        The maps of :attr:`EncodingMaps.maps` (named ``..._desc-<quantity>_stat-<s>``,
        with a ``band`` or ``layer`` entity where they have one); values over voxels.
    regions : mapping of str to boolean ndarray
        Region name -> its voxels, over the same voxels as the maps' values.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ROI_TABLE_COLUMNS`: ``roi``, ``quantity`` (the map's ``desc``),
        ``stat``, ``band`` and ``layer`` (None where the map has none), ``mean`` (of the
        finite values in the region; NaN where none is) and ``n_voxels`` (how many
        were finite), regions in the order given, maps in the order of ``maps``.
    """
    import pandas as pd

    from .bidsnames import parse_name

    rows = []
    for roi, region in regions.items():
        region = np.asarray(region, dtype=bool)
        for file_name, values, _ in maps:
            values = np.asarray(values, dtype=np.float64)
            if region.shape != values.shape:
                raise ValueError(
                    f"region {roi!r} has shape {region.shape}; the map {file_name} {values.shape}"
                )
            inside = values[region]
            finite = inside[np.isfinite(inside)]
            e = parse_name(file_name).entities
            rows.append(
                {
                    "roi": str(roi),
                    "quantity": e["desc"],
                    "stat": e["stat"],
                    "band": e.get("band"),
                    "layer": e.get("layer"),
                    "mean": float(finite.mean()) if finite.size else np.nan,
                    "n_voxels": int(finite.size),
                }
            )
    return pd.DataFrame(rows, columns=list(ROI_TABLE_COLUMNS))
