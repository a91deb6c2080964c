"""z transforms of scores: Fisher z of correlations and z of t values.

The one Fisher z of dnnrsa (:func:`fisher_z`, re-exported by :mod:`dnnrsa.stats`) and
the conversion of t values to z values with the same tail probability
(:func:`t_to_z`), used by the group tests.
"""

from __future__ import annotations

import numpy as np

from .backend import get_namespace

__all__ = ["fisher_z", "t_to_z"]


def fisher_z(r, *, clip: float = 1.0 - 1e-7, xp=None):
    """Fisher z transform of correlation-type scores, ``arctanh(r)``.

    Parameters
    ----------
    r : array-like of any shape
        Correlations (Pearson, Spearman, Kendall, cosine). NaN stays NaN.
    clip : float
        Values are clipped to ``[-clip, clip]`` first, so that ``|r| = 1`` gives a
        large finite z instead of infinity.
    xp : module or None
        numpy or cupy; inferred from ``r`` when None.

    Returns
    -------
    array of the same shape as ``r``
    """
    if not 0 < clip < 1:
        raise ValueError(f"clip must lie in (0, 1); got {clip!r}")
    xp = xp or get_namespace(r)
    r = xp.asarray(r, dtype=xp.float64)
    return xp.arctanh(xp.clip(r, -clip, clip))


def t_to_z(t, df: float) -> np.ndarray:
    """Convert t values to z values with the same tail probability.

    Uses log tail probabilities, so that large t give finite, accurate z.

    Parameters
    ----------
    t : array-like
    df : float
        Degrees of freedom.

    Returns
    -------
    ndarray of the same shape as ``t`` (sign kept; NaN stays NaN)
    """
    from scipy import special, stats

    t = np.asarray(t, dtype=np.float64)
    log_sf = stats.t.logsf(np.abs(t), df)
    return np.sign(t) * -special.ndtri_exp(log_sf)
