"""dnnrsa: compare deep neural networks with human fMRI by representational similarity analysis.

Importing the package is light: torch, nipype and CuPy are imported only by the
modules that need them. Submodules:

``backend``     numpy / CuPy selection
``rdm``         RDM computation, comparison and files
``searchlight`` whole-brain searchlight RSA
``stimuli``     decoding video and audio stimuli into model inputs
``models``      model registry and the cross-channel CNN
``features``    layer activations with caching
``train``       training a registered model
``analysis``    DNN-side analyses (category index, layer similarity, arm relevance)
``glm``         per-stimulus fMRI patterns with nilearn
``stats``       group statistics (sign-flip permutations, TFCE, clusters)
``demo``        the built-in demo data set
"""

from ._version import __version__

__all__ = ["__version__"]
