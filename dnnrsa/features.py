"""Layer activations of a registered model, with an on-disk cache.

:func:`extract_activations` works on arrays: forward hooks record the output of
every requested named layer while batches of inputs pass through the model.
:func:`extract_features` works on stimulus files: it decodes them with the model's
input recipe (:mod:`dnnrsa.stimuli`) and caches every stimulus's activations in
``cache_dir`` under a key made of the SHA-256 of the stimulus file's contents, the
model key (SHA-256 of the checkpoint file, or of the parameters of a randomly
initialised model), the recipe and the crop box: a changed crop recomputes the
stimulus, an unchanged one does not. The standard networks
(:mod:`dnnrsa.models.standard`) take ``weights=`` instead of a checkpoint: a weight
file (its SHA-256 is the model key), ``"random"`` (the seeded untrained network) or
None (the library's own file in the local caches, never downloaded). Face detections
(``crop_boxes="auto"``) are cached beside the activations (``faces/``), so a second run
with unchanged inputs reads the cache and decodes nothing. Given ``decoded_clips`` (the
stimuli decoded once for several networks, :mod:`dnnrsa._decodedclips`), the recipe
reads the frames and audio from there instead of decoding the files again.

:func:`replace_input` temporarily feeds a module a fixed tensor instead of its
input (used by :func:`dnnrsa.train.evaluate_lesions`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._cpus import available_cpus, resolve_n_jobs
from ._decodedclips import DecodedClips
from ._io import atomic_write, content_cache_name, file_sha256
from .backend import resolve_device
from .faces import crop_mode, resolve_crops, table_mode, warn_if_mode_differs
from .models import load_model, model_fingerprint
from .stimuli import InputRecipe, prepare_inputs

logger = logging.getLogger(__name__)

__all__ = [
    "FeatureSet",
    "available_cpus",
    "extract_activations",
    "extract_features",
    "file_sha256",
    "replace_input",
    "torch_device",
    "torch_threads",
]

_CACHE_VERSION = 1


def torch_device(device: str = "auto") -> str:
    """Resolve ``"auto"``, ``"cpu"`` or ``"cuda"`` to the torch device to use.

    The decision is :func:`dnnrsa.backend.resolve_device`'s for torch: ``"auto"``
    uses the GPU when torch can, and warns once when CuPy's answer differs (the RSA
    then runs elsewhere).

    Raises
    ------
    ValueError
        On an unknown device name.
    RuntimeError
        If ``"cuda"`` is requested and torch cannot use a CUDA device.
    """
    return resolve_device(device, "torch")


@contextlib.contextmanager
def torch_threads(n_threads: int):
    """Set torch's intra-op thread count for the duration of the block, then restore it.

    The setting is global to the process; torch's inter-op pool is left alone (it
    cannot be changed once torch has run work in parallel).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n_threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _ordered_inputs(inputs, modalities: Sequence[str] | None) -> list[np.ndarray]:
    if isinstance(inputs, Mapping):
        if modalities is None:
            modalities = list(inputs)
        missing = [m for m in modalities if m not in inputs]
        if missing:
            raise ValueError(f"inputs lack modalities {missing}; got {sorted(inputs)}")
        arrays = [inputs[m] for m in modalities]
    elif isinstance(inputs, (list, tuple)):
        arrays = list(inputs)
    else:
        arrays = [inputs]
    n = {len(a) for a in arrays}
    if len(n) != 1:
        raise ValueError(f"all inputs must have the same number of stimuli; got {sorted(n)}")
    return arrays


@contextlib.contextmanager
def replace_input(model, module: str, value):
    """Feed ``model.get_submodule(module)`` a fixed tensor instead of its input.

    Parameters
    ----------
    model : torch.nn.Module
    module : str
        Dotted submodule path.
    value : torch.Tensor of shape (1, ...) or (...)
        The replacement; broadcast over the batch.
    """
    target = model.get_submodule(module)

    def pre_hook(_mod, args):
        x = args[0]
        v = value.to(device=x.device, dtype=x.dtype)
        if v.dim() == x.dim() - 1:
            v = v.unsqueeze(0)
        return (v.expand_as(x).contiguous(), *args[1:])

    handle = target.register_forward_pre_hook(pre_hook)
    try:
        yield model
    finally:
        handle.remove()


def extract_activations(
    model,
    inputs,
    modules: Mapping[str, str] | Sequence[str],
    *,
    modalities: Sequence[str] | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    dtype=np.float32,
) -> dict[str, np.ndarray]:
    """Record the outputs of named submodules for a set of inputs.

    Parameters
    ----------
    model : torch.nn.Module
        Run in eval mode (its mode is restored afterwards).
    inputs : mapping of modality to ndarray, or sequence of ndarrays
        Model inputs, each of shape ``(n_stimuli, ...)``, passed to ``forward`` in
        ``modalities`` order (mapping) or in the given order (sequence).
    modules : mapping of layer name to submodule path, or sequence of paths
        What to record.
    modalities : sequence of str, optional
        Order of the forward arguments when ``inputs`` is a mapping.
    batch_size : int
    device : {"auto", "cpu", "cuda"}
    dtype : numpy dtype
        Dtype of the returned arrays.

    Returns
    -------
    dict
        Layer name -> ndarray of shape ``(n_stimuli, *layer_shape)``.

    Notes
    -----
    Each recorded module must run exactly once per forward pass and return a
    batch-first tensor (for a tuple output, its first element is recorded). The
    output is copied when the hook fires, so a later in-place operation (e.g.
    ``ReLU(inplace=True)``) does not change what is recorded. The model is moved to
    ``device``.
    """
    import torch

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if not isinstance(modules, Mapping):
        modules = {m: m for m in modules}
    arrays = _ordered_inputs(inputs, modalities)
    n = len(arrays[0])
    dev = torch.device(torch_device(device))
    outputs: dict[str, list] = {name: [] for name in modules}
    calls: dict[str, int] = {}

    def make_hook(name):
        def hook(_mod, _args, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            calls[name] = calls.get(name, 0) + 1
            outputs[name].append(output.detach().to("cpu", torch.float32).numpy().astype(dtype))

        return hook

    handles = []
    was_training = model.training
    model.eval()
    model.to(dev)
    try:
        for name, path in modules.items():
            handles.append(model.get_submodule(path).register_forward_hook(make_hook(name)))
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                calls.clear()
                batch = [
                    torch.as_tensor(
                        np.asarray(a[start : start + batch_size]), dtype=torch.float32
                    ).to(dev)
                    for a in arrays
                ]
                model(*batch)
                bad = {k: v for k, v in calls.items() if v != 1}
                if bad or len(calls) != len(modules):
                    raise RuntimeError(
                        "each recorded module must run exactly once per forward pass; "
                        f"calls: { {k: calls.get(k, 0) for k in modules} }"
                    )
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    # one layer at a time, its batches freed as soon as they are joined: the peak is the
    # activations once plus the largest layer, not twice the activations
    joined = {}
    for name in list(outputs):
        chunks = outputs.pop(name)
        joined[name] = np.concatenate(chunks) if chunks else np.empty((0,), dtype)
        del chunks
    return joined


@dataclass
class FeatureSet:
    """Activations of a model's named layers for a list of stimuli.

    Attributes
    ----------
    activations : dict of str to ndarray of shape (n_stimuli, ...)
        In model layer order.
    stimuli : list of str
        Stimulus files, in row order.
    parts : dict of str to str
        Layer name -> part.
    model : str
        Registry name.
    model_key : str
        SHA-256 identifying the weights.
    labels : list of str
        Output labels of the checkpoint (empty for random weights).
    crops : list of dnnrsa.faces.FaceCrop
        The face crop of each stimulus (empty for a standard network given no crops).
    weights : dict
        Where the weights came from: ``source`` (``"checkpoint"``, ``"file"``,
        ``"cache"`` or ``"random"``), ``trained`` (False for the seeded untrained
        network), ``file`` and ``sha256`` (None for random weights), ``seed``.
    """

    activations: dict[str, np.ndarray]
    stimuli: list[str]
    parts: dict[str, str]
    model: str
    model_key: str
    labels: list[str] = field(default_factory=list)
    crops: list = field(default_factory=list)
    weights: dict = field(default_factory=dict)

    @property
    def layer_names(self) -> list[str]:
        return list(self.activations)

    def flattened(self) -> dict[str, np.ndarray]:
        """Layer name -> ndarray of shape (n_stimuli, n_features)."""
        return {k: v.reshape(len(v), -1) for k, v in self.activations.items()}


def _cache_params(recipe: InputRecipe, crop_box, missing: str) -> dict:
    return {
        "recipe": recipe.to_dict(),
        "crop": None if crop_box is None else [int(v) for v in crop_box],
        "missing": missing,
        "v": _CACHE_VERSION,
    }


def _load_cached(path: Path, names: Sequence[str]) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            if not all(name in data.files for name in names):
                return None
            return {name: data[name] for name in names}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable cache file %s: %s", path, exc)
        return None


def extract_features(
    stimuli: Sequence[str | os.PathLike],
    model: str = "crosschannel",
    *,
    checkpoint: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    layers: Sequence[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    device: str = "auto",
    crop_boxes: Sequence[Sequence[int] | None] | None = None,
    missing: str = "error",
    seed: int = 0,
    progress: bool = False,
    n_jobs: int | None = None,
    decoded_clips=None,
) -> FeatureSet:
    """Activations of every named layer of a registered model for stimulus files.

    Parameters
    ----------
    stimuli : sequence of path-like
        Video, audio or image files.
    model : str
        Registered model name (see :func:`dnnrsa.models.available_models`); with a
        checkpoint, it must match the checkpoint's model. A standard network may be
        given as ``NAME=FILE`` or ``NAME=random`` (see ``weights``).
    checkpoint : path-like, optional
        Trained weights; without one the model has seeded random weights.
    weights : path-like or "random", optional
        For a standard network (``torchvision/...``, ``torchaudio/...``, ``timm/...``):
        a state dict file, ``"random"`` (the seeded untrained network), or None (the
        library's own file in the torch hub or Hugging Face cache; see
        :func:`dnnrsa.models.standard.load_network`, which raises when it is absent).
    layers : sequence of str, optional
        Layer names to return (default all, in model order). All layers are cached.
    cache_dir : path-like, optional
        Folder for cached activations (one ``.npz`` per stimulus in a sub-folder
        per model key). Without it nothing is cached.
    batch_size : int
    device : {"auto", "cpu", "cuda"}
    crop_boxes : {"auto", "centre"}, path-like, mapping or sequence, optional
        Face crops: ``"auto"`` (faces detected), ``"centre"`` or None (the centred
        square), a crop table (TSV), a mapping from file name to box, or one
        ``(x0, y0, x1, y1)`` per stimulus (see :func:`dnnrsa.faces.resolve_crops`).
        A warning is given when the crop mode differs from the one the checkpoint
        was trained with. A standard visual network given None sees the whole frame
        (its recipe's resize and centre crop); audio networks ignore crops.
    missing : {"error", "blank"}
        What to do with a video without audio (see :func:`dnnrsa.stimuli.load_inputs`).
    seed : int
        Seed of the random weights (without a checkpoint).
    progress : bool
    n_jobs : int, optional
        Threads: of the decoding (see :func:`dnnrsa.stimuli.prepare_inputs`), of the
        face detection and torch's intra-op threads during the forward passes (set for
        the call and restored afterwards). None or -1: the CPUs this process may use
        (its CPU affinity). The activations do not depend on it.
    decoded_clips : dnnrsa._decodedclips.DecodedClips or path-like, optional
        Stimuli decoded once for several networks (the store, or the JSON file that
        describes it, :meth:`~dnnrsa._decodedclips.DecodedClips.save`): the frames and
        audio of a stimulus it holds are read from it instead of decoded again. The
        activations do not depend on it.

    Returns
    -------
    FeatureSet
        ``activations[layer]`` of shape ``(n_stimuli, *layer_shape)``, float32.
    """
    paths = [Path(p) for p in stimuli]
    if not paths:
        raise ValueError("stimuli must list at least one file")
    n_jobs = resolve_n_jobs(n_jobs)
    net, spec, info, model_key = _network(model, checkpoint, weights, seed)
    recipe = info["recipe"]
    if isinstance(recipe, InputRecipe) or (
        crop_boxes is not None and "visual" in recipe.modalities
    ):
        crops = _face_crops(paths, crop_boxes, recipe, cache_dir, n_jobs, checkpoint, info)
        crop_boxes = [c.box for c in crops]
    else:  # a standard network: the whole frame (its recipe crops), or no frames at all
        crops, crop_boxes = [], [None] * len(paths)
    wanted = [layer.name for layer in spec.select_layers(layers)]
    cache_root = None
    if cache_dir is not None:
        cache_root = Path(cache_dir) / f"{spec.name}-{model_key[:40]}".replace("/", "_")
        cache_root.mkdir(parents=True, exist_ok=True)
    rows, cache_files = _cached_rows(paths, cache_root, crop_boxes, recipe, missing, wanted)
    todo = [i for i, row in enumerate(rows) if row is None]
    logger.info(
        "%s: %d of %d stimuli from the cache, %d to compute",
        spec.name,
        len(paths) - len(todo),
        len(paths),
        len(todo),
    )
    if todo:
        inputs = prepare_inputs(
            [paths[i] for i in todo],
            recipe,
            None if crop_boxes is None else [crop_boxes[i] for i in todo],
            missing=missing,
            progress=progress,
            n_jobs=n_jobs,
            store=DecodedClips.of(decoded_clips),
        )
        computed = _forward(net, spec, recipe, inputs, batch_size, device, n_jobs)
        for j, i in enumerate(todo):
            row = {name: values[j] for name, values in computed.items()}
            if cache_files[i] is not None:
                with atomic_write(cache_files[i], "wb") as fh:
                    np.savez(fh, **row)
            rows[i] = {name: row[name] for name in wanted}
    if len(todo) == len(paths):  # all computed now, in order: no second copy
        activations = {name: computed[name] for name in wanted}
    else:
        activations = {name: np.stack([row[name] for row in rows]) for name in wanted}
    return FeatureSet(
        activations=activations,
        stimuli=[str(p) for p in paths],
        parts={name: spec.parts[name] for name in wanted},
        model=spec.name,
        model_key=model_key,
        labels=list(info.get("labels") or []),
        crops=crops,
        weights=dict(info["weights"]),
    )


def _network(model, checkpoint, weights, seed: int):
    """The network, its spec, its info (with ``weights``: where they came from) and the
    key of its weights: ``ckpt-`` or ``weights-`` and the file's SHA-256, or ``init-``,
    the model's name and the SHA-256 of its seeded random parameters."""
    from .models import get_model
    from .models.standard import load_network, parse_network

    if isinstance(model, str) and "=" in model:
        if weights is not None:
            raise ValueError(f"give the weights once: model={model!r} and weights={weights!r}")
        model, weights = parse_network(model)
    spec = get_model(model) if checkpoint is None and model is not None else None
    if spec is not None and spec.weights is not None:
        net, spec, info = load_network(spec, weights, seed=seed)
        sha = info["weights"]["sha256"]
        key = f"weights-{sha}" if sha else f"init-{spec.name}-" + model_fingerprint(net)
        return net, spec, info, key
    if weights is not None:
        raise ValueError(
            f"weights= is for the standard networks (torchvision/..., torchaudio/..., "
            f"timm/...); model {model!r} takes a checkpoint"
        )
    net, spec, info = load_model(model if checkpoint is None else None, checkpoint, seed=seed)
    if checkpoint is not None and model is not None and model != spec.name:
        raise ValueError(f"checkpoint {checkpoint} holds model {spec.name!r}, not {model!r}")
    if checkpoint is not None:
        sha = file_sha256(checkpoint)
        info["weights"] = {
            "source": "checkpoint",
            "trained": True,
            "file": str(checkpoint),
            "sha256": sha,
        }
        return net, spec, info, "ckpt-" + sha
    info["weights"] = {"source": "random", "trained": False, "file": None, "sha256": None}
    info["weights"]["seed"] = int(seed)
    return net, spec, info, f"init-{spec.name}-" + model_fingerprint(net)


def _face_crops(paths, crop_boxes, recipe, cache_dir, n_jobs, checkpoint, info) -> list:
    """The face crop of every stimulus (:func:`dnnrsa.faces.resolve_crops`), with a
    warning when the mode differs from the one the checkpoint was trained with."""
    requested = crop_mode(crop_boxes)
    crops = resolve_crops(
        paths,
        crop_boxes,
        model_frames=(getattr(recipe, "n_frames", 1),),
        cache_dir=None if cache_dir is None else Path(cache_dir) / "faces",
        n_jobs=n_jobs,
    )
    if checkpoint is not None and requested != "boxes":
        used = table_mode(crops) if requested == "table" else requested
        trained = (info.get("extra") or {}).get("face_crop")
        warn_if_mode_differs(trained, used, f"checkpoint {Path(checkpoint).name}")
    return crops


def _cached_rows(paths, cache_root, crop_boxes, recipe, missing, wanted):
    """Per stimulus, its cached activations of the ``wanted`` layers (None when not
    cached) and its cache file (None without a cache)."""
    rows: list[dict[str, np.ndarray] | None] = [None] * len(paths)
    cache_files: list[Path | None] = [None] * len(paths)
    if cache_root is not None:
        for i, path in enumerate(paths):
            if not path.is_file():
                raise FileNotFoundError(f"stimulus file not found: {path}")
            box = None if crop_boxes is None else crop_boxes[i]
            cache_files[i] = cache_root / content_cache_name(
                path, _cache_params(recipe, box, missing), ".npz"
            )
            rows[i] = _load_cached(cache_files[i], wanted)
    return rows, cache_files


def _forward(net, spec, recipe, inputs, batch_size, device, n_jobs) -> dict:
    """Activations of every layer of the model (all are cached), with ``n_jobs`` torch
    threads for the call."""
    modules = {layer.name: layer.module for layer in spec.layers}
    with torch_threads(n_jobs):
        acts = extract_activations(
            net,
            inputs,
            modules,
            modalities=recipe.modalities,
            batch_size=batch_size,
            device=device,
        )
    return {layer.name: acts[layer.name] for layer in spec.layers}
