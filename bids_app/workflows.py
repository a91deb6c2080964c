"""Workflow factories: nipype workflows built from the dnnrsa interfaces.

Each factory takes the frozen :class:`~dnnrsa.bids_app.config.RunConfig` explicitly.
The factories live in one module per family, re-exported here:

- :mod:`.wf_dnn`: the data-set-level DNN workflow (features, layer RDMs, analyses,
  the model bank);
- :mod:`.wf_participant`: each participant's patterns, brain mask, searchlight maps
  and ROI RDMs, and the participant level;
- :mod:`.wf_group`: the group tests, layer winners, ROI evaluation and findings.
"""

from __future__ import annotations

# the private helpers (``_...``) stay importable from here too: tests reach some of them
from .wf_dnn import (  # noqa: F401
    _add_cross_regime,
    _lesion_possible,
    _table_sink,
    _use_gpu,
    checkpoint_label,
    init_dnn_wf,
)
from .wf_group import (  # noqa: F401
    _check_tfce_layers,
    _group_mem_gb,
    add_group_tests,
    init_findings_wf,
    init_group_wf,
    tfce_wanted,
)
from .wf_participant import (  # noqa: F401
    _n_models,
    _write_brain_mask,
    confound_columns,
    init_dnnrsa_participant_wf,
    init_participant_wf,
    participant_memory_gb,
)

__all__ = [
    "add_group_tests",
    "checkpoint_label",
    "confound_columns",
    "init_dnn_wf",
    "init_dnnrsa_participant_wf",
    "init_findings_wf",
    "init_group_wf",
    "init_participant_wf",
    "participant_memory_gb",
    "tfce_wanted",
]
