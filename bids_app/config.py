"""The run configuration: one frozen object, built from the command line, passed explicitly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from .. import __version__

#: Features per stimulus above which a layer is reduced, before its RDM, by a seeded
#: sparse random projection to this many features (``--feature-budget``).
DEFAULT_FEATURE_BUDGET = 1_000_000
#: Principal components per layer of the encoding models (``--encoding-components``),
#: as :data:`dnnrsa.encoding.DEFAULT_N_COMPONENTS`.
DEFAULT_ENCODING_COMPONENTS = 10
#: Groups of stimuli the encoding models hold out (``--encoding-stimulus-folds``), as
#: :data:`dnnrsa.encoding.DEFAULT_STIMULUS_FOLDS`.
DEFAULT_ENCODING_STIMULUS_FOLDS = 6


@dataclass(frozen=True)
class RunConfig:
    """Everything one run of the BIDS App depends on.

    Paths are absolute. The object is immutable; workflow factories receive it as
    an argument (there is no global configuration).
    """

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    work_dir: Path
    participant_label: tuple[str, ...] = ()
    task: str | None = None
    space: str | None = None
    derivatives: tuple[Path, ...] = ()
    bids_filters: dict = field(default_factory=dict)
    skip_bids_validation: bool = False
    # DNN models
    model: str | None = "crosschannel"
    checkpoints: tuple[Path, ...] = ()
    # standard networks (--network): "NAME", "NAME=FILE" (absolute) or "NAME=random"
    networks: tuple[str, ...] = ()
    feature_budget: int = DEFAULT_FEATURE_BUDGET  # features per stimulus of a layer RDM
    layers: tuple[str, ...] = ()
    model_rdms: tuple[tuple[str, Path], ...] = ()
    dnn_metric: str = "correlation"
    face_crop: str = "auto"  # auto, centre or a crop table (TSV)
    face_crops: dict = field(default_factory=dict)  # stim_file -> [x0, y0, x1, y1] used
    allow_silent_video: bool = False  # a video without audio gets silence (else refused)
    # fMRI patterns
    condition_column: str = "stim_file"
    glm_method: str = "lsa"
    glm_output: str = "effect"
    noise_model: str = "ar1"
    noise_normalisation: str = "none"
    confounds: tuple[str, ...] = ()
    smoothing_fwhm: float | None = None
    # searchlight
    metric: str = "correlation"
    comparator: str = "spearman"
    radius_mm: float = 6.0
    min_voxels: int = 10
    searchlight_memory_mb: int = 1024
    # encoding models (--encoding): banded ridge of each checkpoint's parts
    encoding: bool = False
    encoding_components: int = DEFAULT_ENCODING_COMPONENTS
    encoding_stimulus_folds: int = DEFAULT_ENCODING_STIMULUS_FOLDS  # 0: runs only
    encoding_layer_maps: bool = False
    encoding_mask: str = "brain"  # the voxels fitted: brain, or rois (the union of the regions)
    encoding_networks: list = field(default_factory=list)  # model labels; empty: every network
    # regions of interest
    rois: tuple[tuple[str, Path], ...] = ()  # (NAME, mask file) of --roi
    roi_atlas: str | None = None
    roi_labels: tuple[str, ...] = ()
    roi_bootstrap: str = "subjects"
    roi_n_boot: int = 1000
    # group level
    n_permutations: int = 1000
    tfce: bool = False  # TFCE for every map
    tfce_layers: tuple[str, ...] = ()  # TFCE for these layers only
    cluster_threshold: float = 0.001
    fwe_alpha: float = 0.05
    # execution
    nprocs: int = 1
    mem_gb: float | None = None
    device: str = "auto"
    plugin: str = "MultiProc"
    plugin_args: dict = field(default_factory=dict)
    seed: int = 0
    reports: bool = True
    verbosity: int = 0
    version: str = __version__

    def as_dict(self) -> dict:
        """Plain dict (paths as strings) for provenance files and sidecars."""

        def plain(value):
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, tuple | list):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {str(k): plain(v) for k, v in value.items()}
            return value

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_toml(
        self,
        extra: dict | None = None,
        tables: dict | None = None,
        *,
        title: str = "dnnrsa run configuration",
    ) -> str:
        """The configuration as TOML (written next to the outputs for provenance).

        ``extra`` adds top-level keys, ``tables`` named tables (name -> dict), each
        after a comment line when the dict holds a ``"#"`` entry; ``title`` is the
        file's first line, a comment. Keys whose value is None are left out, and so
        are empty top-level tables and ``networks``, ``feature_budget`` and the
        encoding options at their defaults; inside a table or a list, a value TOML cannot hold
        is written as its text (None as ``"None"``). Written with tomli-w.
        """
        doc: dict = {"dnnrsa_version": __version__}
        for key, value in {**self.as_dict(), **(extra or {})}.items():
            if value is None or value == {}:
                continue
            if key in _LEFT_OUT_AT_DEFAULT and value == _LEFT_OUT_AT_DEFAULT[key]:
                continue  # files of runs without standard networks read as before
            doc[key] = _toml_ready(value)
        comments = {}
        for name, table in (tables or {}).items():
            table = dict(table)
            comments[name] = table.pop("#", None)
            doc[name] = {str(k): _toml_ready(v) for k, v in table.items() if v is not None}
        text = "\n" + tomli_w.dumps(doc)
        for name, comment in comments.items():
            if comment:
                header = f"\n[{name}]\n"
                text = text.replace(header, f"\n# {comment}{header}", 1)
        return f"# {title}{text}"


#: Fields the configuration files leave out at their default (added after the files'
#: format was fixed: a run that does not use them writes the same file as before).
_LEFT_OUT_AT_DEFAULT = {
    "networks": [],
    "feature_budget": DEFAULT_FEATURE_BUDGET,
    "encoding": False,
    "encoding_components": DEFAULT_ENCODING_COMPONENTS,
    "encoding_stimulus_folds": DEFAULT_ENCODING_STIMULUS_FOLDS,
    "encoding_layer_maps": False,
    "encoding_mask": "brain",
    "encoding_networks": [],
}


def _toml_ready(value):
    """``value`` with what TOML cannot hold written as text, as the configuration
    files always had it: keys as strings, None and other objects as their ``str``."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_toml_ready(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _toml_ready(v) for k, v in value.items()}
    return str(value)
