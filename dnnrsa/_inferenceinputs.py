"""What the ROI inference accepts: its comparators, bootstrap modes, and checks of the
RDMs it is given (re-exported by :mod:`dnnrsa.inference`)."""

from __future__ import annotations

from ._registries import COMPARATOR_REGISTRY, comparator_names
from .rdm import n_conditions_from_pairs

#: Comparators supported by the inference functions: those whose entry in
#: :data:`dnnrsa._registries.COMPARATOR_REGISTRY` sets ``inference``.
INFERENCE_COMPARATORS = comparator_names(inference=True)
#: The same comparators under rsatoolbox's names (from the registry).
RSATOOLBOX_NAMES = {
    name: COMPARATOR_REGISTRY[name].rsatoolbox_name for name in INFERENCE_COMPARATORS
}
#: Bootstrap modes of :func:`dnnrsa.inference.evaluate_models`.
MODES = ("subjects", "stimuli", "both")


# --------------------------------------------------------------------------- checks
def _check_method(method: str) -> None:
    supported = comparator_names(inference=True)
    if method not in supported:
        hint = ""
        if method in COMPARATOR_REGISTRY:
            hint = f" ({method} has no batched bootstrap: use spearman)"
        raise ValueError(f"method must be one of {list(supported)}; got {method!r}{hint}")


def _as_matrix(x, name: str, xp):
    x = xp.asarray(x, dtype=xp.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n_rdms, n_pairs); got {tuple(x.shape)}")
    return x


def _check_inputs(model_rdms, data_rdms, xp, *, min_subjects=2, allow_nan=False):
    data = _as_matrix(data_rdms, "data_rdms", xp)
    models = None if model_rdms is None else _as_matrix(model_rdms, "model_rdms", xp)
    n_pairs = data.shape[1]
    if models is not None and models.shape[1] != n_pairs:
        raise ValueError(
            f"model_rdms and data_rdms must have the same number of pairs; "
            f"got {models.shape[1]} and {n_pairs}"
        )
    n_cond = n_conditions_from_pairs(n_pairs)
    if n_cond < 3:
        raise ValueError(f"at least 3 conditions are needed; got {n_cond}")
    if data.shape[0] < min_subjects:
        raise ValueError(f"at least {min_subjects} subject RDMs are needed; got {data.shape[0]}")
    if not allow_nan:
        for name, arr in (("data_rdms", data), ("model_rdms", models)):
            if arr is not None and not bool(xp.isfinite(arr).all()):
                raise ValueError(f"{name} contains NaN or infinite entries")
    return models, data, n_cond
