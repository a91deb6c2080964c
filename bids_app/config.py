"""The run configuration: one frozen object, built from the command line, passed explicitly."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__


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

    def to_toml(self, extra: dict | None = None, tables: dict | None = None) -> str:
        """The configuration as TOML (written next to the outputs for provenance).

        ``extra`` adds top-level keys, ``tables`` named tables (name -> dict), each
        after a comment line when the dict holds a ``"#"`` entry.
        """
        lines = ["# dnnrsa run configuration", f'dnnrsa_version = "{__version__}"', ""]
        tables_out: list[str] = []
        for key, value in {**self.as_dict(), **(extra or {})}.items():
            if value is None:
                continue
            if isinstance(value, dict):
                if value:
                    tables_out.append(f"[{key}]")
                    tables_out.extend(
                        f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()
                    )
                    tables_out.append("")
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        for name, table in (tables or {}).items():
            table = dict(table)
            comment = table.pop("#", None)
            if comment:
                tables_out.append(f"# {comment}")
            tables_out.append(f"[{name}]")
            tables_out.extend(f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None)
            tables_out.append("")
        return "\n".join(lines + [""] + tables_out).rstrip() + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
            + "}"
        )
    return json.dumps(str(value))
