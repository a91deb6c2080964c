"""The command line of the BIDS App: a pure ``build_parser()``.

:class:`DefaultsFormatter` is the help formatter of every dnnrsa command: it states
an option's default once, and only where the default is a value worth printing.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from .. import __version__
from ..bidsnames import check_label, is_label
from .config import (
    DEFAULT_ENCODING_COMPONENTS,
    DEFAULT_ENCODING_STIMULUS_FOLDS,
    DEFAULT_FEATURE_BUDGET,
)
from .errors import CommandParser, UsageError

LEVELS = ("participant", "group")
CONFOUND_STRATEGIES = {
    "none": (),
    "motion6": ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"),
    "motion6+wmcsf": (
        "trans_x",
        "trans_y",
        "trans_z",
        "rot_x",
        "rot_y",
        "rot_z",
        "white_matter",
        "csf",
    ),
}


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that states each option's default once.

    ``(default: <value>)`` is appended to an option whose default is a number or a
    word and whose help does not already mention its default. Options whose default
    is absent (``None``), an empty list or a flag's on/off state say in words what
    happens without them (``"(default: all)"``).
    """

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text.lower()
            or isinstance(default, bool)
            or not isinstance(default, int | float | str)
            or default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


def _positive_float(name):
    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number; got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{name} must be positive; got {text!r}")
        return value

    return check


def _positive_int(name):
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer; got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1; got {text!r}")
        return value

    return check


def _stimulus_folds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--encoding-stimulus-folds must be an integer; got {text!r}"
        ) from None
    if value != 0 and value < 3:
        raise argparse.ArgumentTypeError(
            f"--encoding-stimulus-folds must be 0 (runs only) or at least 3; got {text!r}"
        )
    return value


def _memory_gb(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)[bB]?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"--mem must look like 16, 16G or 16000M; got {text!r}")
    value, unit = float(match.group(1)), match.group(2).upper() or "G"
    return value * {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0}[unit]


def _label(text: str) -> str:
    try:
        return check_label(text, "participant label", prefix="sub-")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"participant labels must be alphanumeric (with or without 'sub-'); got {text!r}"
        ) from None


def _space(text: str) -> str:
    from .collect import split_space

    try:
        split_space(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _model_rdm(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--model-rdm must be NAME=FILE.tsv; got {text!r}")
    if not is_label(name):
        raise argparse.ArgumentTypeError(
            f"--model-rdm NAME must be alphanumeric (it becomes a BIDS entity label); got {name!r}"
        )
    return name, Path(path).expanduser().absolute()


def _network(text: str) -> str:
    """``NAME``, ``NAME=FILE`` (made absolute) or ``NAME=random``; the name is checked
    against the registry in the preflight (64), the weights too (66 when not found)."""
    from dnnrsa.models.standard import RANDOM, parse_network

    try:
        name, source = parse_network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--network: {exc}") from None
    if source is None:
        return name
    if source == RANDOM:
        return f"{name}={RANDOM}"
    return f"{name}={Path(source).expanduser().absolute()}"


def _roi(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--roi must be NAME=MASK.nii.gz; got {text!r}")
    if not is_label(name):
        raise argparse.ArgumentTypeError(
            f"--roi NAME must be alphanumeric (it becomes a BIDS entity label); got {name!r}"
        )
    return name, Path(path).expanduser().absolute()


def _face_crop(text: str) -> str:
    if text in ("auto", "centre", "center"):
        return "centre" if text == "center" else text
    return str(Path(text).expanduser().absolute())


def _path(text: str) -> Path:
    return Path(text).expanduser().absolute()


class _ListNetworks(argparse.Action):
    """``--list-networks``: print the registered networks and exit 0 (as ``--version``)."""

    def __init__(
        self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None
    ):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from dnnrsa.models.standard import list_networks

        print(list_networks())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser (no side effects)."""
    from dnnrsa._registries import comparator_names

    parser = CommandParser(
        prog="dnnrsa",
        description=(
            "dnnrsa: compare the layers of deep neural networks with fMRI by searchlight "
            "representational similarity analysis (a BIDS App)."
        ),
        formatter_class=DefaultsFormatter,
    )
    parser.add_argument("bids_dir", type=_path, help="root of the BIDS data set (never written to)")
    parser.add_argument("output_dir", type=_path, help="folder of the BIDS derivatives written")
    parser.add_argument(
        "analysis_level", help="'participant' (per-subject maps) or 'group' (inference and reports)"
    )
    parser.add_argument("--version", action="version", version=f"dnnrsa {__version__}")
    parser.add_argument(
        "--list-networks",
        action=_ListNetworks,
        help="print every registered network (the study's, torchvision's, torchaudio's and "
        "timm's) with its layers and their parts, its input recipe and the weight file it "
        "expects, then exit; nothing is listed by default",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="count",
        default=0,
        help="log more: -v adds debug messages, nipype's workflow messages and the traceback of "
        "an unexpected error, -vv also nipype's interface messages (default: progress messages)",
    )

    g = parser.add_argument_group("selecting data")
    g.add_argument(
        "--participant-label",
        "--participant_label",
        dest="participant_label",
        nargs="+",
        type=_label,
        default=[],
        help="subjects to analyse, with or without 'sub-' (default: all)",
    )
    g.add_argument("--task", help="task label (default: the only task in the data set)")
    g.add_argument(
        "--space",
        type=_space,
        help="space of preprocessed BOLD in the derivatives, with its resolution where fMRIPrep "
        "wrote several (SPACE:res-N, as fMRIPrep's --output-spaces) (default: "
        "MNI152NLin2009cAsym with -d, 'native' for raw BOLD); fsaverage5, fsaverage6 and "
        "fsaverage name fMRIPrep's surface runs (hemi-L and hemi-R GIFTI files), found and "
        "checked but not yet analysed by the participant level",
    )
    g.add_argument(
        "-d",
        "--derivatives",
        nargs="+",
        type=_path,
        default=[],
        help="preprocessed derivatives (fMRIPrep outputs): BOLD, brain mask and confounds "
        "(default: none; the raw BOLD of bids_dir is used)",
    )
    g.add_argument(
        "--bids-filter-file",
        type=_path,
        help="JSON of pybids filters per query (bold) (default: no filters)",
    )
    g.add_argument(
        "--skip-bids-validation",
        action="store_true",
        help="do not run the BIDS validator (default: the validator runs)",
    )
    g.add_argument(
        "--conditions-from",
        dest="condition_column",
        default="stim_file",
        help="events.tsv column naming the conditions (e.g. trial_type for category designs)",
    )

    g = parser.add_argument_group("models")
    g.add_argument("--model", default="crosschannel", help="registered DNN model")
    g.add_argument(
        "--checkpoint",
        nargs="+",
        type=_path,
        default=[],
        help="trained checkpoint(s) of the model; one per training regime (its layers become "
        "models) (default: none; then --model-rdm is needed)",
    )
    g.add_argument(
        "--network",
        dest="networks",
        action="append",
        type=_network,
        default=[],
        metavar="NAME[=FILE|=random]",
        help="a standard network (dnnrsa --list-networks: torchvision/..., torchaudio/..., "
        "timm/...) whose every layer becomes a model: NAME alone reads the library's own "
        "weight file from $TORCH_HOME/hub/checkpoints (never downloaded), NAME=FILE a state "
        "dict, NAME=random the seeded untrained network (repeatable; default: none)",
    )
    g.add_argument(
        "--feature-budget",
        type=_positive_int("--feature-budget"),
        default=DEFAULT_FEATURE_BUDGET,
        metavar="N",
        help="a layer with more features per stimulus is reduced to N features by a seeded "
        "sparse random projection before its RDM (recorded in its sidecar)",
    )
    g.add_argument(
        "--layers",
        nargs="+",
        default=[],
        help="layers of --model to use (default: all named layers; --network uses every layer)",
    )
    g.add_argument(
        "--model-rdm",
        action="append",
        type=_model_rdm,
        default=[],
        metavar="NAME=FILE.tsv",
        help="a model RDM of your own: square TSV with condition labels (repeatable; "
        "default: none)",
    )
    g.add_argument(
        "--face-crop",
        type=_face_crop,
        default="auto",
        metavar="auto|centre|FILE.tsv",
        help="face crop of each stimulus for the network: auto detects the face (OpenCV), centre "
        "takes the centred square, FILE.tsv gives boxes by hand (columns stim_file, x0, y0, x1, "
        "y1; stimuli without a row are detected)",
    )
    g.add_argument(
        "--allow-silent-video",
        action="store_true",
        help="give a stimulus video without an audio track silence as the network's sound "
        "(default: such a video is refused when a --checkpoint needs sound)",
    )
    g.add_argument(
        "--dnn-metric",
        default="correlation",
        choices=["correlation", "euclidean", "cosine"],
        help="dissimilarity of layer activations",
    )

    g = parser.add_argument_group("fMRI patterns")
    g.add_argument(
        "--glm",
        dest="glm_method",
        choices=["lsa", "lss"],
        default="lsa",
        help="pattern estimation: lsa fits one regressor per condition and run (least squares "
        "all), lss one model per event (least squares separate)",
    )
    g.add_argument(
        "--glm-output",
        choices=["effect", "t"],
        default="effect",
        help="pattern values: effect sizes or t statistics",
    )
    g.add_argument(
        "--noise-model",
        choices=["ar1", "ols"],
        default="ar1",
        help="noise model of the GLM: ar1 (nilearn's default, an AR(1) model of the residuals) "
        "or ols (ordinary least squares: about 13x faster on whole-brain 2 mm runs)",
    )
    g.add_argument(
        "--noise-normalisation",
        choices=["none", "univariate", "multivariate"],
        default="none",
        help="noise normalisation of the patterns from the GLM residuals (multivariate needs a "
        "dense voxel covariance: masks up to 20,000 voxels)",
    )
    g.add_argument(
        "--confounds",
        nargs="+",
        default=["motion6"],
        help=f"confound strategy ({', '.join(CONFOUND_STRATEGIES)}) or column names of the "
        "fMRIPrep confounds file, used only with -d (default: motion6)",
    )
    g.add_argument(
        "--smoothing-fwhm",
        type=_positive_float("--smoothing-fwhm"),
        default=None,
        help="smooth the BOLD before the GLM, FWHM in mm (default: no smoothing)",
    )

    g = parser.add_argument_group("searchlight")
    g.add_argument(
        "--metric",
        choices=["correlation", "euclidean", "crossnobis"],
        default="correlation",
        help="neural dissimilarity",
    )
    g.add_argument(
        "--comparator",
        choices=list(comparator_names(searchlight=True)),
        default="spearman",
        help="how each sphere's neural RDM is compared with every model RDM",
    )
    g.add_argument(
        "--radius-mm",
        type=_positive_float("--radius-mm"),
        default=6.0,
        help="searchlight sphere radius in mm: every in-mask voxel whose centre lies within it",
    )
    g.add_argument(
        "--min-voxels",
        type=_positive_int("--min-voxels"),
        default=10,
        help="spheres with fewer usable voxels get NaN",
    )
    g.add_argument(
        "--searchlight-memory-mb",
        type=_positive_int("--searchlight-memory-mb"),
        default=1024,
        help="memory budget of one searchlight chunk (CPU RAM or GPU memory)",
    )

    g = parser.add_argument_group("encoding models")
    g.add_argument(
        "--encoding",
        action="store_true",
        help="also fit voxelwise banded ridge encoding models of each --checkpoint (one band "
        "per part of the network) and each --network (one band of all its layers) on "
        "the patterns, cross-validated over runs (at least 2; 3 with --encoding-stimulus-folds "
        "0) and "
        "stimuli, within the brain mask: joint R², each band's share, unique and shared "
        "variance, the noise ceiling (default: off)",
    )
    g.add_argument(
        "--encoding-components",
        type=_positive_int("--encoding-components"),
        default=DEFAULT_ENCODING_COMPONENTS,
        metavar="N",
        help="principal components kept per layer, fitted on the training stimuli of each fold",
    )
    g.add_argument(
        "--encoding-stimulus-folds",
        type=_stimulus_folds,
        default=DEFAULT_ENCODING_STIMULUS_FOLDS,
        metavar="G",
        help="groups of stimuli held out as well as runs (at least 3; 0: runs only, every "
        "stimulus in training and test)",
    )
    g.add_argument(
        "--encoding-layer-maps",
        action="store_true",
        help="also fit one encoding model per layer (R² and r maps of each layer; costs one "
        "model per layer) (default: off)",
    )
    g.add_argument(
        "--encoding-networks",
        nargs="+",
        metavar="LABEL",
        help="fit the encoding models of these networks only, by model label (a "
        "checkpoint's regime or file name, a standard network's label as in the file names; "
        "default: every network)",
    )
    g.add_argument(
        "--encoding-mask",
        choices=["brain", "rois"],
        default="brain",
        help="the voxels the encoding models are fitted on: the whole brain mask, or the union "
        "of the regions of --roi (rois: needs --roi, or --roi-atlas with --roi-labels; the maps "
        "are NaN outside the regions)",
    )

    g = parser.add_argument_group("regions of interest")
    g.add_argument(
        "--roi",
        action="append",
        type=_roi,
        default=[],
        metavar="NAME=MASK.nii.gz",
        help="a region of interest: a mask in the space of the BOLD data, resampled to its grid "
        "by nearest neighbour; the participant level writes its RDM, the group level evaluates "
        "every model RDM in it (repeatable; default: none)",
    )
    g.add_argument(
        "--roi-atlas",
        choices=["harvard-oxford"],
        default=None,
        help="take regions from an atlas shipped with the installation (no download): "
        "harvard-oxford, in MNI space, so only for BOLD in an MNI space; a voxel belongs to its "
        "most probable label of at least 25%% (default: none)",
    )
    g.add_argument(
        "--roi-labels",
        nargs="+",
        default=[],
        metavar="LABEL",
        help="labels of --roi-atlas to use as regions, e.g. Left_Insular_Cortex (default: none)",
    )
    g.add_argument(
        "--roi-bootstrap",
        choices=["subjects", "stimuli", "both"],
        default="subjects",
        help="random effect of the group-level ROI evaluation: bootstrap over subjects, "
        "stimuli (conditions) or both",
    )
    g.add_argument(
        "--roi-n-boot",
        type=_positive_int("--roi-n-boot"),
        default=1000,
        help="bootstrap samples of the group-level ROI evaluation",
    )

    g = parser.add_argument_group("group level")
    g.add_argument(
        "--n-permutations",
        type=_positive_int("--n-permutations"),
        default=1000,
        help="permutations of the sign-flip tests",
    )
    g.add_argument(
        "--tfce",
        action="store_true",
        help="add threshold-free cluster enhancement FWE p maps for every layer (default: off)",
    )
    g.add_argument(
        "--tfce-layers",
        nargs="+",
        default=[],
        metavar="LAYER",
        help="add TFCE FWE p maps only for these layers (a layer label of the file names, "
        "e.g. crossmodaldense, or its layer name, e.g. crossmodal_dense, in every network; a "
        "model RDM of your own by its name); TFCE permutations cost far more than max-T "
        "(default: none)",
    )
    g.add_argument(
        "--cluster-threshold",
        type=_positive_float("--cluster-threshold"),
        default=0.001,
        help="cluster-forming p (uncorrected) of the cluster tables",
    )
    g.add_argument(
        "--no-reports",
        dest="reports",
        action="store_false",
        help="skip the HTML reports of both levels (default: reports are written)",
    )

    g = parser.add_argument_group("execution")
    g.add_argument(
        "-w",
        "--work-dir",
        type=_path,
        help="work directory, reused on rerun (default: <output_dir>_work beside output_dir)",
    )
    g.add_argument(
        "--nprocs",
        "--nthreads",
        type=_positive_int("--nprocs"),
        default=None,
        help="parallel nipype nodes (MultiProc), and the jobs of the GLM, the feature "
        "extraction, the searchlight and the group-level max-T (default: the CPUs this "
        "process may use)",
    )
    g.add_argument(
        "--mem",
        "--mem-gb",
        dest="mem_gb",
        type=_memory_gb,
        default=None,
        help="memory nipype may schedule (MultiProc), e.g. 16, 16G or 16000M "
        "(default: nipype's, 90%% of the machine's memory)",
    )
    g.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where the network, the searchlight and the group tests run; auto uses a CUDA GPU "
        "when there is one",
    )
    g.add_argument("--plugin", default="MultiProc", help="nipype execution plugin (e.g. SLURM)")
    g.add_argument(
        "--plugin-args",
        type=_path,
        help="JSON file of arguments for the plugin (default: none)",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed of every random step")
    return parser
