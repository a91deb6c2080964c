"""Model registry.

A model is described by a :class:`ModelSpec`: a factory that builds the torch
module, its ordered named layers (each with the submodule whose output is recorded
and the part of the network it belongs to), and the input recipe that turns
stimuli into its inputs. Models are found through the entry point group
``dnnrsa.models``; each entry point names a :class:`ModelSpec` (or a callable
returning one). Another package registers a model by declaring, in its own
metadata::

    [options.entry_points]
    dnnrsa.models =
        mynet = mypackage.mynet:registration

The cross-channel CNN (``crosschannel``) registers itself the same way.

Families of models are named ``<family>/<member>`` and resolved on demand: an entry
point of the group ``dnnrsa.model_families`` names a :class:`ModelFamily` (or a
callable returning one). dnnrsa registers three, the standard networks of
:mod:`dnnrsa.models.standard`: ``torchvision/<architecture>`` (video and image),
``torchaudio/<architecture>`` (speech) and ``timm/<any timm architecture>``.

Checkpoints are plain dictionaries of tensors and metadata written with
``torch.save`` and read with ``torch.load(..., weights_only=True)``; see
:func:`save_checkpoint` and :func:`load_checkpoint`.

Importing this module does not import torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .._io import atomic_write
from ..stimuli import InputRecipe

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dnnrsa.models"
FAMILY_GROUP = "dnnrsa.model_families"
CHECKPOINT_FORMAT = "dnnrsa-checkpoint"
CHECKPOINT_VERSION = 1
#: The built-in model, also when dnnrsa runs from a checkout without installed metadata.
_BUILTIN = (
    metadata.EntryPoint(
        name="crosschannel",
        value="dnnrsa.models.crosschannel:registration",
        group=ENTRY_POINT_GROUP,
    ),
)
#: The built-in families of standard networks (dnnrsa.models.standard).
_BUILTIN_FAMILIES = tuple(
    metadata.EntryPoint(
        name=name, value=f"dnnrsa.models.standard:{name}_family", group=FAMILY_GROUP
    )
    for name in ("timm", "torchaudio", "torchvision")
)
_RUNTIME: dict[str, ModelSpec] = {}
_RESOLVED: dict[str, ModelSpec] = {}

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "ENTRY_POINT_GROUP",
    "FAMILY_GROUP",
    "LayerSpec",
    "ModelFamily",
    "ModelSpec",
    "available_families",
    "available_models",
    "get_family",
    "build_model",
    "check_checkpoint",
    "get_model",
    "load_checkpoint",
    "load_model",
    "model_fingerprint",
    "register_model",
    "save_checkpoint",
]


@dataclass(frozen=True)
class LayerSpec:
    """One named layer of a model.

    Parameters
    ----------
    name : str
        Public layer name (used in file names and tables).
    module : str
        Dotted path of the submodule whose output is the layer's activation
        (``torch.nn.Module.get_submodule``). It must run once per forward pass and
        return a batch-first tensor (or a tuple whose first element is one).
    part : str
        Part of the network (for the cross-channel CNN: ``"visual"``,
        ``"auditory"`` or ``"crossmodal"``).
    description : str
    """

    name: str
    module: str
    part: str
    description: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Parameters
    ----------
    name : str
        Registry name.
    factory : callable
        ``factory(n_outputs: int) -> torch.nn.Module``; the module's ``forward``
        takes one tensor per modality of ``recipe.modalities``, in that order, each
        of shape ``(batch, *recipe.input_shape(modality))``, and returns logits of
        shape ``(batch, n_outputs)``.
    layers : sequence of LayerSpec
        The named layers, in order.
    recipe : InputRecipe
        Default input recipe.
    arms : mapping of str to str, optional
        For lesion analyses: arm name -> dotted path of the submodule whose
        *input* is that arm's contribution to the shared (cross-modal) part.
    default_outputs : int
        Number of outputs when none is given.
    description : str
    weights : dnnrsa.models.standard.OfficialWeights, optional
        For a standard network (a feature extractor whose ``forward`` need not return
        logits): where its trained weights are looked for
        (:func:`dnnrsa.models.standard.load_network`); None for models trained with
        dnnrsa (checkpoints).
    """

    name: str
    factory: Callable[..., Any]
    layers: tuple[LayerSpec, ...]
    recipe: InputRecipe = field(default_factory=InputRecipe)
    arms: Mapping[str, str] = field(default_factory=dict)
    default_outputs: int = 6
    description: str = ""
    weights: Any = None

    def __post_init__(self):
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        names = [layer.name for layer in layers]
        if not names:
            raise ValueError(f"model {self.name!r} must declare at least one layer")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model {self.name!r} declares duplicate layer names {dupes}")

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def parts(self) -> dict[str, str]:
        """Layer name -> part."""
        return {layer.name: layer.part for layer in self.layers}

    def select_layers(self, layers: Sequence[str] | None = None) -> tuple[LayerSpec, ...]:
        """The named layers (all by default), in model order."""
        if layers is None:
            return self.layers
        known = {layer.name: layer for layer in self.layers}
        unknown = [name for name in layers if name not in known]
        if unknown:
            raise ValueError(
                f"layers must be names of model {self.name!r} ({self.layer_names}); got {unknown}"
            )
        wanted = set(layers)
        return tuple(layer for layer in self.layers if layer.name in wanted)

    def build(self, n_outputs: int | None = None):
        """Instantiate the torch module (random weights)."""
        return self.factory(n_outputs=int(n_outputs or self.default_outputs))


def register_model(spec: ModelSpec, *, overwrite: bool = False) -> None:
    """Register a model for this process (entry points are the persistent way)."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec; got {type(spec).__name__}")
    if spec.name in _RUNTIME and not overwrite:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    _RUNTIME[spec.name] = spec


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """The entry points of group ``dnnrsa.models`` by name (an installed one replaces
    the built-in of the same name)."""
    found = {ep.name: ep for ep in _BUILTIN}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep
    return found


@dataclass(frozen=True)
class ModelFamily:
    """Models named ``<name>/<member>``, built on demand.

    Parameters
    ----------
    name : str
        The family's name, the part before the ``/``.
    resolve : callable
        ``resolve(member: str) -> ModelSpec`` (the spec's name is ``<name>/<member>``);
        raises ValueError for a member the family does not have.
    members : callable, optional
        ``members() -> sequence of str``: the members to list (a family may resolve
        more than it lists, e.g. every timm architecture).
    description : str
    """

    name: str
    resolve: Callable[[str], ModelSpec]
    members: Callable[[], Sequence[str]] = tuple
    description: str = ""


def _family_entry_points() -> dict[str, metadata.EntryPoint]:
    """The entry points of group ``dnnrsa.model_families`` by name (an installed one
    replaces the built-in of the same name)."""
    found = {ep.name: ep for ep in _BUILTIN_FAMILIES}
    for ep in metadata.entry_points(group=FAMILY_GROUP):
        found[ep.name] = ep
    return found


def available_families() -> list[str]:
    """Names of all model families (``<family>/<member>`` names)."""
    return sorted(_family_entry_points())


def get_family(name: str) -> ModelFamily:
    """Look up a model family by name (the part of a model name before the ``/``)."""
    targets = _family_entry_points()
    if name not in targets:
        raise ValueError(f"model family must be one of {available_families()}; got {name!r}")
    entry_point = targets[name]
    try:
        obj = entry_point.load()
    except (ImportError, AttributeError) as exc:
        raise ImportError(
            f"cannot load model family {name!r} from entry point {entry_point.value!r}: {exc}"
        ) from exc
    family = obj if isinstance(obj, ModelFamily) else obj()
    if not isinstance(family, ModelFamily):
        raise TypeError(
            f"entry point {entry_point.value!r} for model family {name!r} must give a "
            f"ModelFamily; got {type(family).__name__}"
        )
    return family


def _family_members() -> list[str]:
    """``<family>/<member>`` for every member the families list (a family that fails to
    load is left out with a warning)."""
    names = []
    for family_name in available_families():
        try:
            family = get_family(family_name)
        except (ImportError, TypeError) as exc:
            logger.warning("model family %s left out: %s", family_name, exc)
            continue
        names += [f"{family_name}/{member}" for member in family.members()]
    return names


def available_models() -> list[str]:
    """Names of all registered models (entry points, runtime registrations and the
    members the model families list)."""
    return sorted(set(_entry_points()) | set(_RUNTIME) | set(_family_members()))


def get_model(name: str | ModelSpec) -> ModelSpec:
    """Look up a registered model.

    Parameters
    ----------
    name : str or ModelSpec
        Registry name (a ModelSpec is returned unchanged).

    Returns
    -------
    ModelSpec
    """
    if isinstance(name, ModelSpec):
        return name
    if name in _RUNTIME:
        return _RUNTIME[name]
    targets = _entry_points()
    if name not in targets and "/" in str(name):
        return _family_model(name)
    if name not in targets:
        raise ValueError(f"model must be one of {available_models()}; got {name!r}")
    entry_point = targets[name]
    try:
        obj = entry_point.load()
    except (ImportError, AttributeError) as exc:
        raise ImportError(
            f"cannot load model {name!r} from entry point {entry_point.value!r}: {exc}"
        ) from exc
    spec = obj if isinstance(obj, ModelSpec) else obj()
    if not isinstance(spec, ModelSpec):
        raise TypeError(
            f"entry point {entry_point.value!r} for model {name!r} must give a ModelSpec; "
            f"got {type(spec).__name__}"
        )
    return spec


def _family_model(name: str) -> ModelSpec:
    """The member of a family named ``<family>/<member>`` (resolved once per process)."""
    if name in _RESOLVED:
        return _RESOLVED[name]
    family_name, member = name.split("/", 1)
    if family_name not in _family_entry_points():
        raise ValueError(
            f"model must be one of {available_models()} or <family>/<member> with a family "
            f"of {available_families()}; got {name!r}"
        )
    spec = get_family(family_name).resolve(member)
    if not isinstance(spec, ModelSpec) or spec.name != name:
        raise TypeError(
            f"model family {family_name!r} must resolve {member!r} to a ModelSpec named "
            f"{name!r}; got {getattr(spec, 'name', type(spec).__name__)!r}"
        )
    _RESOLVED[name] = spec
    return spec


def build_model(name: str | ModelSpec, n_outputs: int | None = None, *, seed: int | None = 0):
    """Instantiate a registered model with seeded random weights, in eval mode."""
    import torch

    spec = get_model(name)
    if seed is None:
        module = spec.build(n_outputs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = spec.build(n_outputs)
    return module.eval()


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(
    path: str | os.PathLike,
    model,
    spec: ModelSpec | str,
    *,
    labels: Sequence[str] = (),
    regime: str | None = None,
    recipe: InputRecipe | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint: state dict, label set, recipe and plain metadata.

    Parameters
    ----------
    path : path-like
    model : torch.nn.Module
    spec : ModelSpec or str
    labels : sequence of str
        Class names in output order.
    regime : str, optional
        Training target (e.g. ``"emotion"``).
    recipe : InputRecipe, optional
        Recipe the model was trained with (default: the spec's).
    extra : mapping, optional
        More plain metadata (numbers, strings, lists, dicts).
    """
    import torch

    spec = get_model(spec)
    recipe = recipe or spec.recipe
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "model": spec.name,
        "n_outputs": len(labels) if labels else _n_outputs(model),
        "labels": [str(label) for label in labels],
        "regime": regime,
        "recipe": recipe.to_dict(),
        "state_dict": state,
        "extra": dict(extra or {}),
    }
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        torch.save(payload, fh)
    return path


def _n_outputs(model) -> int:
    last = None
    for module in model.modules():
        if hasattr(module, "out_features"):
            last = module.out_features
    return int(last) if last is not None else 0


def _unreadable(path: Path, exc: BaseException) -> str:
    """What is wrong with a file ``torch.load`` refused, and what to do, in dnnrsa's words.

    torch's own text is never passed on: it advises loading the file with
    ``weights_only=False``, which would run whatever code a pickle holds.
    """
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    blocked = re.search(r"GLOBAL\s+([\w.]+)", text)
    if blocked:
        return (
            f"{path} holds a pickled Python object ({blocked.group(1)}), which dnnrsa never "
            "loads: a dnnrsa checkpoint holds only tensors and plain metadata; use a checkpoint "
            "written by dnnrsa-train (or dnnrsa.models.save_checkpoint)"
        )
    truncated = ("central directory", "unexpected EOF", "failed reading", "truncated")
    if isinstance(exc, EOFError) or any(word in text for word in truncated):
        size = path.stat().st_size
        return (
            f"{path} is truncated or corrupt ({size} bytes; it ends before the checkpoint "
            "does): copy it again from where it was written, or write it again with "
            "dnnrsa-train"
        )
    return (
        f"{path} is not a dnnrsa checkpoint (torch cannot read it as one: "
        f"{type(exc).__name__}); use a checkpoint written by dnnrsa-train"
    )


def _non_finite(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or infinity."""
    import torch

    return [
        name
        for name, tensor in state.items()
        if torch.is_tensor(tensor)
        and (tensor.is_floating_point() or tensor.is_complex())
        and not bool(torch.isfinite(tensor).all())
    ]


def _listed(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint safely (``weights_only=True``) and check its format.

    Returns
    -------
    dict
        Keys ``model``, ``n_outputs``, ``labels``, ``regime``, ``recipe`` (an
        :class:`InputRecipe`), ``state_dict``, ``extra``.

    Raises
    ------
    ValueError
        When the file is truncated, holds pickled objects, is not a dnnrsa checkpoint of
        a supported format version, or has NaN or infinite weights; the message names
        the file (and the tensors) and says what to do.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # torch raises many types for a file it cannot read
        raise ValueError(_unreadable(path, exc)) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a dnnrsa checkpoint (format {CHECKPOINT_FORMAT!r})")
    version = payload.get("format_version")
    if version != CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint {path} has format_version {version!r}; this dnnrsa reads version "
            f"{CHECKPOINT_VERSION}"
        )
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(torch.is_tensor(t) for t in state.values()):
        raise ValueError(f"checkpoint {path} has no state_dict of named tensors")
    bad = _non_finite(state)
    if bad:
        raise ValueError(
            f"checkpoint {path} has NaN or infinite weights in {len(bad)} tensor(s): "
            f"{_listed(bad)}; such a network gives no usable activations (training diverged): "
            "use a checkpoint saved before that, or train again (e.g. with a lower "
            "--learning-rate)"
        )
    out = dict(payload)
    out["recipe"] = InputRecipe.from_dict(payload["recipe"])
    return out


def _state_mismatch(model, state: Mapping[str, Any]) -> str:
    """What keeps ``state`` from loading into ``model`` (empty when it fits): tensors the
    model has and the checkpoint lacks, tensors it does not know, shapes that differ."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unknown = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} where the model has {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} tensor(s) of another shape: {_listed(shapes, 3)}")
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing: {_listed(missing)}")
    if unknown:
        parts.append(f"{len(unknown)} tensor(s) the model does not have: {_listed(unknown)}")
    return "; ".join(parts)


def check_checkpoint(path: str | os.PathLike, model: str | None = None) -> dict:
    """Read a checkpoint and check that it builds its model: the model is registered,
    and every tensor of the state dict is there with the model's shape.

    Parameters
    ----------
    path : path-like
    model : str, optional
        The model the checkpoint must hold (e.g. the ``--model`` of a run).

    Returns
    -------
    dict
        What :func:`load_checkpoint` returns.

    Raises
    ------
    ValueError
        As :func:`load_checkpoint`, and when the checkpoint's model is not registered,
        is not ``model``, or its state dict does not fit the model (naming the tensors).
    """
    path = Path(path)
    info = load_checkpoint(path)
    name = info.get("model")
    if name not in available_models():
        raise ValueError(
            f"checkpoint {path} holds model {name!r}, which is not registered (models: "
            f"{available_models()}): install the package that registers it, or use a "
            "checkpoint of one of these models"
        )
    if model is not None and name != model:
        raise ValueError(
            f"checkpoint {path} holds model {name!r}, not {model!r}: pass --model {name}, "
            f"or a checkpoint of {model!r}"
        )
    spec = get_model(name)
    mismatch = _state_mismatch(spec.build(info["n_outputs"]), info["state_dict"])
    if mismatch:
        raise ValueError(
            f"checkpoint {path} does not fit model {name!r} with {info['n_outputs']} outputs: "
            f"{mismatch}; use the checkpoint as dnnrsa-train wrote it, with the dnnrsa "
            "version (and model package) that trained it"
        )
    return info


def load_model(
    name: str | ModelSpec | None = None,
    checkpoint: str | os.PathLike | None = None,
    *,
    n_outputs: int | None = None,
    seed: int = 0,
):
    """Build a model, from a checkpoint or with seeded random weights.

    Parameters
    ----------
    name : str or ModelSpec, optional
        Registered model; taken from the checkpoint when omitted.
    checkpoint : path-like, optional
    n_outputs : int, optional
        Output size for a randomly initialised model.
    seed : int
        Seed for random initialisation (ignored with a checkpoint).

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on CPU.
    spec : ModelSpec
    info : dict
        Checkpoint metadata (``labels``, ``regime``, ``recipe``...), or for random
        weights ``{"recipe": spec.recipe, "labels": [], "seed": seed}``.
    """
    if checkpoint is None:
        if name is None:
            raise ValueError("give a model name or a checkpoint")
        spec = get_model(name)
        model = build_model(spec, n_outputs, seed=seed)
        return model, spec, {"recipe": spec.recipe, "labels": [], "regime": None, "seed": seed}
    info = load_checkpoint(checkpoint)
    spec = get_model(name if name is not None else info["model"])
    if spec.name != info["model"]:
        raise ValueError(
            f"checkpoint {checkpoint} holds model {info['model']!r}, not {spec.name!r}"
        )
    model = spec.build(info["n_outputs"])
    mismatch = _state_mismatch(model, info["state_dict"])
    if mismatch:
        raise ValueError(f"checkpoint {checkpoint} does not fit model {spec.name!r}: {mismatch}")
    model.load_state_dict(info["state_dict"])
    info.pop("state_dict")
    return model.eval(), spec, info


def model_fingerprint(model, extra: str = "") -> str:
    """SHA-256 of a model's parameters and buffers (names, shapes, dtypes, values)."""
    h = hashlib.sha256(extra.encode())
    for key, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()
