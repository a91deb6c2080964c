"""The run's configuration files (bids_app.config.RunConfig.to_toml, written with tomli-w):
for the same run they read back to the dict the earlier hand-written TOML writer gave,
and a folder recorded in that writer's format is checked by its parsed record."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from dnnrsa.bids_app.config import RunConfig
from dnnrsa.bids_app.errors import UsageError
from dnnrsa.bids_app.outputs import (
    CONFIG_FILE,
    GROUP_CONFIG_FILE,
    analysis_record,
    claim_output_folder,
    write_group_config,
    write_participant_config,
)

#: What the hand-written writer wrote for :func:`_run` (sub-01, then sub-03 with the same
#: record) with @OUT@ for the output folder and @INPUTS@ for the folder of the inputs.
EARLIER_PARTICIPANT_CONFIG = r"""# dnnrsa run configuration
dnnrsa_version = "0.1.0"

bids_dir = "/data/bids"
output_dir = "@OUT@"
analysis_level = "participant"
work_dir = "/work/w"
participant_label = ["03"]
task = "faces"
space = "MNI152NLin2009cAsym"
derivatives = ["/data/fmriprep"]
skip_bids_validation = false
model = "crosschannel"
checkpoints = ["@INPUTS@/net.pt"]
layers = ["conv1", "fc"]
model_rdms = [["category", "@INPUTS@/cat.tsv"]]
dnn_metric = "correlation"
face_crop = "@INPUTS@/crops.tsv"
allow_silent_video = true
condition_column = "stim_file"
glm_method = "lsa"
glm_output = "effect"
noise_model = "ar1"
noise_normalisation = "none"
confounds = ["motion6", "csf"]
smoothing_fwhm = 4.0
metric = "correlation"
comparator = "spearman"
radius_mm = 8.5
min_voxels = 10
searchlight_memory_mb = 1024
rois = [["visual", "@INPUTS@/vis.nii.gz"]]
roi_atlas = "harvard-oxford"
roi_labels = ["Occipital Pole", "Lateral Occipital Cortex"]
roi_bootstrap = "subjects"
roi_n_boot = 1000
n_permutations = 1000
tfce = false
tfce_layers = ["fc"]
cluster_threshold = 0.001
fwe_alpha = 0.05
nprocs = 1
mem_gb = 12.5
device = "auto"
plugin = "MultiProc"
seed = 7
reports = true
verbosity = 2
version = "0.1.0"
participants = ["01", "03"]

[bids_filters]
"bold" = {"session" = "None", "acquisition" = "hi"}
"events" = {"run" = [1, 2]}

[face_crops]
"a b.mp4" = [0, 1, 95, 96]
"\u00e9\"q\\.mp4" = [1, 2, 3, 4]

[plugin_args]
"n_procs" = 2
"memory_gb" = 4.5
"raise_insufficient" = false

# the options that fix what the outputs mean (checked by every run)
[analysis]
dnnrsa_version = "0.1.0"
model = "crosschannel"
layers = ["conv1", "fc"]
dnn_metric = "correlation"
condition_column = "stim_file"
glm_method = "lsa"
glm_output = "effect"
noise_model = "ar1"
noise_normalisation = "none"
confounds = ["motion6", "csf"]
smoothing_fwhm = 4.0
metric = "correlation"
comparator = "spearman"
radius_mm = 8.5
min_voxels = 10
roi_atlas = "harvard-oxford"
roi_labels = ["Occipital Pole", "Lateral Occipital Cortex"]
seed = 7
allow_silent_video = true
checkpoints = ["net.pt sha256:9a129038d9a00aed"]
model_rdms = {"category" = "cat.tsv sha256:5dd1197866f47982"}
rois = {"visual" = "vis.nii.gz sha256:48bf9b4f142ab45c"}
face_crop = "crops.tsv sha256:328016ffd7bf950f"
grids = {"MNI152NLin2009cAsym" = "91x109x91 at 2x2x2 mm"}
"""

#: What it wrote for the group level of the same folder (sub-01 and sub-03, then sub-02).
EARLIER_GROUP_CONFIG = r"""# dnnrsa group run configuration
dnnrsa_version = "0.1.0"

bids_dir = "/data/bids"
output_dir = "@OUT@"
analysis_level = "group"
work_dir = "/work/w"
participant_label = ["01", "02"]
task = "faces"
space = "MNI152NLin2009cAsym"
derivatives = ["/data/fmriprep"]
skip_bids_validation = false
model = "crosschannel"
checkpoints = ["@INPUTS@/net.pt"]
layers = ["conv1", "fc"]
model_rdms = [["category", "@INPUTS@/cat.tsv"]]
dnn_metric = "correlation"
face_crop = "@INPUTS@/crops.tsv"
allow_silent_video = true
condition_column = "stim_file"
glm_method = "lsa"
glm_output = "effect"
noise_model = "ar1"
noise_normalisation = "none"
confounds = ["motion6", "csf"]
smoothing_fwhm = 4.0
metric = "correlation"
comparator = "spearman"
radius_mm = 8.5
min_voxels = 10
searchlight_memory_mb = 1024
rois = [["visual", "@INPUTS@/vis.nii.gz"]]
roi_atlas = "harvard-oxford"
roi_labels = ["Occipital Pole", "Lateral Occipital Cortex"]
roi_bootstrap = "subjects"
roi_n_boot = 1000
n_permutations = 1000
tfce = false
tfce_layers = ["fc"]
cluster_threshold = 0.001
fwe_alpha = 0.05
nprocs = 1
mem_gb = 12.5
device = "auto"
plugin = "MultiProc"
seed = 7
reports = true
verbosity = 2
version = "0.1.0"
participants = ["01", "02", "03"]
n_maps = 2

[bids_filters]
"bold" = {"session" = "None", "acquisition" = "hi"}
"events" = {"run" = [1, 2]}

[face_crops]
"a b.mp4" = [0, 1, 95, 96]
"\u00e9\"q\\.mp4" = [1, 2, 3, 4]

[plugin_args]
"n_procs" = 2
"memory_gb" = 4.5
"raise_insufficient" = false
"""


def _run(tmp_path: Path) -> RunConfig:
    """A participant run with every kind of value: nested filters with a null, paths,
    pairs, floats, a crop table, crop boxes with quotes and non-ASCII names."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, body in [
        ("net.pt", b"weights"),
        ("cat.tsv", b"a\tb\n"),
        ("vis.nii.gz", b"mask"),
        ("crops.tsv", b"stim_file\tx0\n"),
    ]:
        (inputs / name).write_bytes(body)
    return RunConfig(
        bids_dir=Path("/data/bids"),
        output_dir=tmp_path / "out",
        analysis_level="participant",
        work_dir=Path("/work/w"),
        participant_label=("01", "02"),
        task="faces",
        space="MNI152NLin2009cAsym",
        derivatives=(Path("/data/fmriprep"),),
        bids_filters={"bold": {"session": None, "acquisition": "hi"}, "events": {"run": [1, 2]}},
        checkpoints=(inputs / "net.pt",),
        layers=("conv1", "fc"),
        model_rdms=(("category", inputs / "cat.tsv"),),
        face_crop=str(inputs / "crops.tsv"),
        face_crops={"a b.mp4": [0, 1, 95, 96], '\u00e9"q\\.mp4': [1, 2, 3, 4]},
        confounds=("motion6", "csf"),
        smoothing_fwhm=4.0,
        radius_mm=8.5,
        rois=(("visual", inputs / "vis.nii.gz"),),
        roi_atlas="harvard-oxford",
        roi_labels=("Occipital Pole", "Lateral Occipital Cortex"),
        tfce_layers=("fc",),
        mem_gb=12.5,
        plugin_args={"n_procs": 2, "memory_gb": 4.5, "raise_insufficient": False},
        seed=7,
        verbosity=2,
        allow_silent_video=True,
    )


def _earlier(text: str, config: RunConfig) -> dict:
    text = text.replace("@OUT@", str(config.output_dir))
    return tomllib.loads(text.replace("@INPUTS@", str(config.checkpoints[0].parent)))


def _record(config: RunConfig) -> dict:
    return {**analysis_record(config), "grids": {"MNI152NLin2009cAsym": "91x109x91 at 2x2x2 mm"}}


def test_configuration_files_read_back_as_before(tmp_path):
    config = _run(tmp_path)
    record = _record(config)
    write_participant_config(config, ["01"], record)
    second = dataclasses.replace(config, participant_label=("03",))
    path = write_participant_config(second, ["03"], record)
    text = path.read_text(encoding="utf-8")
    assert tomllib.loads(text) == _earlier(EARLIER_PARTICIPANT_CONFIG, config)
    assert text.startswith("# dnnrsa run configuration\n")
    assert (
        "# the options that fix what the outputs mean (checked by every run)\n[analysis]\n" in text
    )

    group = dataclasses.replace(config, analysis_level="group")
    groups = [SimpleNamespace(subjects=["01", "03"]), SimpleNamespace(subjects=["02"])]
    text = write_group_config(group, groups).read_text(encoding="utf-8")
    assert tomllib.loads(text) == _earlier(EARLIER_GROUP_CONFIG, config)
    assert text.startswith("# dnnrsa group run configuration\n")


def test_a_folder_recorded_by_the_earlier_writer_is_compared_by_its_parsed_record(tmp_path):
    """The refusal compares dicts: the earlier format's record accepts the same options
    (and the new file keeps its participants) and refuses another radius."""
    config = _run(tmp_path)
    config.output_dir.mkdir()
    earlier = EARLIER_PARTICIPANT_CONFIG.replace("@OUT@", str(config.output_dir))
    earlier = earlier.replace("@INPUTS@", str(config.checkpoints[0].parent))
    (config.output_dir / CONFIG_FILE).write_text(earlier, encoding="utf-8")
    record = claim_output_folder(config, {})
    assert record == _record(config)
    path = write_participant_config(config, ["02"], record)
    assert tomllib.loads(path.read_text())["participants"] == ["01", "02", "03"]
    with pytest.raises(UsageError, match="--radius-mm: 8.5 in the folder, 10.0 in this run"):
        claim_output_folder(dataclasses.replace(config, radius_mm=10.0), {})
    assert not (config.output_dir / GROUP_CONFIG_FILE).exists()


def test_values_toml_cannot_hold_are_written_as_text_and_none_is_left_out(tmp_path):
    config = RunConfig(
        bids_dir=Path("/b"), output_dir=tmp_path, analysis_level="participant", work_dir=tmp_path
    )
    text = config.to_toml(
        extra={"nothing": None, "empty": {}, "objects": [Path("/x"), None]},
        tables={"t": {"#": "a comment", "kept": 1, "dropped": None}},
    )
    data = tomllib.loads(text)
    assert "nothing" not in data and "empty" not in data and "task" not in data
    assert data["objects"] == ["/x", "None"]
    assert data["t"] == {"kept": 1}
    assert "# a comment\n[t]\n" in text
