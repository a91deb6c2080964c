"""Group statistics: one-sample sign-flip permutation tests on subject maps.

The engine works on a matrix of subject maps, ``(n_subjects, n_voxels)``, in mask
order. Every permutation is a row of a sign matrix ``S`` of shape
``(n_permutations, n_subjects)``; the permuted sums are one matrix product
``S @ data`` per batch (the sum of squares does not change under sign flips), so
the permuted t maps of a whole batch come out of a few array operations, on numpy
or CuPy. From them the test collects

- the uncorrected t map, its z (same tail probability under the t distribution
  with ``n_subjects - 1`` degrees of freedom) and parametric p;
- voxel-level family-wise error (FWE) p from the distribution of the maximum t;
- threshold-free cluster enhancement (TFCE) and its FWE p;
- cluster-size and cluster-mass FWE p for a cluster-forming threshold.

Conventions follow nilearn's ``permuted_ols`` so that results agree with
``nilearn.glm.second_level.non_parametric_inference``: p-values are
``(1 + #{null >= observed}) / (1 + n_permutations)`` for random sign flips, and
``#{null >= observed} / 2**n_subjects`` when all sign patterns are enumerated
(the identity is then one of them).

Where each part lives (all re-exported here, the public module):

- :mod:`dnnrsa._signflip`: the sign patterns (:func:`sign_flip_matrix`), the test
  (:func:`sign_flip_test`, in steps) and its result (:class:`SignFlipResult`);
- :mod:`dnnrsa._maxt`: the blocked max-T kernel (voxel-level FWE without t maps);
- :mod:`dnnrsa._tfce`: TFCE and cluster measures on the mask's grid;
- :mod:`dnnrsa._groupimgs`: group tests from images to images
  (:func:`group_test_imgs`, :func:`group_test_maps`, :func:`sign_flip_test_imgs`);
- :mod:`dnnrsa._winners`: layers compared with each other (:func:`winner_take_all`,
  :func:`compare_best_layers`, :func:`layer_winner_imgs`);
- :mod:`dnnrsa._scores`: :func:`fisher_z` and :func:`t_to_z`.
"""

from __future__ import annotations

from ._groupimgs import GroupTestResult, group_test_imgs, group_test_maps, sign_flip_test_imgs
from ._maxt import _max_t_block  # noqa: F401  (the kernel, tested through this module)
from ._scores import fisher_z, t_to_z
from ._signflip import (
    THRESHOLD_TYPES,  # noqa: F401  (the threshold types of sign_flip_test)
    SignFlipResult,
    sign_flip_matrix,
    sign_flip_test,
)
from ._winners import (
    LayerComparisonResult,
    compare_best_layers,
    layer_winner_imgs,
    winner_take_all,
)

__all__ = [
    "GroupTestResult",
    "LayerComparisonResult",
    "SignFlipResult",
    "compare_best_layers",
    "fisher_z",
    "group_test_imgs",
    "group_test_maps",
    "layer_winner_imgs",
    "sign_flip_matrix",
    "sign_flip_test",
    "sign_flip_test_imgs",
    "t_to_z",
    "winner_take_all",
]
