"""Multidimensional scaling of an RDM for plotting: classical scaling, optionally refined
by SMACOF (re-exported by :mod:`dnnrsa.analysis`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._analysisinputs import _as_rdm_vector, _check_random_state
from .rdm import _check_choice, n_conditions_from_pairs


@dataclass
class MDSResult:
    """Low-dimensional embedding of an RDM.

    Attributes
    ----------
    coordinates : ndarray of shape (n_conditions, n_components)
        One point per condition (rows in RDM order).
    eigenvalues : ndarray of shape (n_components,)
        Eigenvalues of the double-centred matrix for the kept components
        (classical MDS initialisation).
    stress : float
        Normalised stress, ``sqrt(sum((d - d_hat)^2) / sum(d^2))`` over pairs,
        between the input distances and the distances of the embedding.
    method : str
        ``"classical"`` or ``"smacof"``.
    """

    coordinates: np.ndarray
    eigenvalues: np.ndarray
    stress: float
    method: str


def _pairwise_distances(points: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", points, points)
    d2 = sq[:, None] + sq[None, :] - 2.0 * points @ points.T
    return np.sqrt(np.clip(d2, 0.0, None))


def mds(
    rdm: Any,
    n_components: int = 2,
    random_state: Any = None,
    *,
    method: str = "classical",
    squared: bool = False,
    max_iter: int = 300,
    tol: float = 1e-9,
) -> MDSResult:
    """Embed the conditions of an RDM in ``n_components`` dimensions.

    ``method="classical"`` is Torgerson's classical scaling: the matrix of squared
    distances is double-centred, ``B = -1/2 J D^2 J``, and the coordinates are the
    top eigenvectors scaled by the square roots of their eigenvalues. For
    Euclidean distances it recovers the configuration exactly (up to rotation,
    reflection and translation). ``method="smacof"`` then refines the embedding
    by minimising the raw stress with :func:`sklearn.manifold.smacof` (Guttman
    transforms), starting from the classical solution, or from random points
    when ``random_state`` is given.

    Each axis is given a deterministic sign (its largest absolute coordinate is
    positive).

    Parameters
    ----------
    rdm : ndarray of shape (n_pairs,) or (n_conditions, n_conditions)
        Dissimilarities (condensed or square). NaN entries are not allowed.
    n_components : int, default=2
        Number of dimensions.
    random_state : None, int or numpy.random.Generator
        Only for ``method="smacof"``: seed of a random start (None starts from the
        classical solution).
    method : {"classical", "smacof"}, default="classical"
    squared : bool, default=False
        Whether the RDM already holds squared distances (as the ``euclidean`` and,
        up to a factor, the ``correlation`` metric do); then its square root is
        taken as the distances.
    max_iter : int, default=300
        SMACOF iterations.
    tol : float, default=1e-9
        SMACOF convergence tolerance (``eps`` of :func:`sklearn.manifold.smacof`).

    Returns
    -------
    MDSResult
    """
    _check_choice("method", method, ("classical", "smacof"))
    vec = _as_rdm_vector(rdm)
    if not np.all(np.isfinite(vec)):
        raise ValueError("rdm must not contain NaN or infinite values for mds")
    n = n_conditions_from_pairs(vec.shape[0])
    if not 1 <= int(n_components) < n:
        raise ValueError(f"n_components must be between 1 and {n - 1}; got {n_components!r}")
    k = int(n_components)
    if squared:
        if np.any(vec < 0):
            raise ValueError("rdm has negative entries; they cannot be squared distances")
        dist_vec = np.sqrt(vec)
    else:
        dist_vec = vec
    dist = np.zeros((n, n))
    iu = np.triu_indices(n, 1)
    dist[iu] = dist_vec
    dist = dist + dist.T

    centring = np.eye(n) - 1.0 / n
    b = -0.5 * centring @ (dist**2) @ centring
    evals, evecs = np.linalg.eigh(b)
    order = np.argsort(evals)[::-1][:k]
    evals = evals[order]
    coords = evecs[:, order] * np.sqrt(np.clip(evals, 0.0, None))

    if method == "smacof":
        from sklearn.manifold import smacof

        if random_state is not None:
            rng = _check_random_state(random_state)
            coords = rng.standard_normal((n, k)) * dist_vec.std()
        coords, _ = smacof(
            dist,
            metric=True,
            n_components=k,
            init=coords,
            n_init=1,
            max_iter=int(max_iter),
            eps=float(tol),
            normalized_stress=False,
        )
        coords = coords - coords.mean(axis=0)

    # Deterministic sign for every axis.
    flip = np.sign(coords[np.argmax(np.abs(coords), axis=0), np.arange(k)])
    flip[flip == 0] = 1.0
    coords = coords * flip

    fitted = _pairwise_distances(coords)[iu]
    denom = float(np.sum(dist_vec**2))
    stress = float(np.sqrt(np.sum((dist_vec - fitted) ** 2) / denom)) if denom > 0 else 0.0
    return MDSResult(coords, evals, stress, method)
