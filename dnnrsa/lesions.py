"""Arm lesions of a trained network: which arm decides.

:func:`evaluate_lesions` measures the accuracy when one arm's input to the cross-modal
part is replaced by its mean over the evaluated stimuli, and the drop from the intact
accuracy; :func:`arm_lesion_outcomes` does it stimulus by stimulus for a checkpoint on
the stimuli that carry one of its classes, and :func:`lesion_summary` and
:func:`arm_lesion_table` sum those outcomes up per arm; :func:`read_lesion_outcomes`
reads the outcomes back from their table, with the network's class count.
:mod:`dnnrsa.train` re-exports the first four.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ._predict import _to_tensors, predict

logger = logging.getLogger(__name__)

__all__ = [
    "arm_lesion_outcomes",
    "arm_lesion_table",
    "checkpoint_class_count",
    "evaluate_lesions",
    "lesion_summary",
    "read_lesion_outcomes",
]


def evaluate_lesions(
    model,
    inputs,
    targets,
    spec=None,
    *,
    arms: Mapping[str, str] | None = None,
    batch_size: int = 32,
    device: str = "cpu",
) -> dict:
    """Accuracy with each arm's input to the cross-modal part replaced by its mean.

    For every arm, the input of the arm's entry module into the shared part (for
    the cross-channel CNN: the flattened output of the visual or auditory arm,
    entering ``crossmodal.visual_dense`` or ``crossmodal.auditory_dense``) is
    recorded for all stimuli, averaged over stimuli, and that mean is fed to the
    module for every stimulus, so the arm carries no stimulus information.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : mapping of modality to ndarray of shape (n_stimuli, ...)
    targets : ndarray of shape (n_stimuli,), int
    spec : ModelSpec or str, optional
        Supplies ``arms`` and the modality order (default: cross-channel CNN).
    arms : mapping of arm name to module path, optional
        Overrides ``spec.arms``.
    batch_size : int
    device : {"auto", "cpu", "cuda"}

    Returns
    -------
    dict
        ``accuracy`` (intact), ``lesioned`` (arm -> accuracy), ``drop``
        (arm -> intact minus lesioned accuracy), ``n_stimuli`` and ``predicted``
        (``"none"`` for the intact network and each arm -> the predicted class index of
        every stimulus).
    """
    import torch

    from .features import replace_input
    from .models import get_model

    spec = get_model(spec or "crosschannel")
    arms = dict(arms if arms is not None else spec.arms)
    if not arms:
        raise ValueError(f"model {spec.name!r} declares no arms to lesion")
    modalities = spec.recipe.modalities
    targets = np.asarray(targets)
    kwargs = {"modalities": modalities, "batch_size": batch_size, "device": device}
    predicted = {"none": predict(model, inputs, **kwargs).argmax(axis=1)}
    for arm, module in arms.items():
        arm_inputs = _module_inputs(model, module, inputs, modalities, batch_size, device)
        mean = torch.as_tensor(arm_inputs.mean(axis=0, dtype=np.float64), dtype=torch.float32)
        with replace_input(model, module, mean):
            predicted[arm] = predict(model, inputs, **kwargs).argmax(axis=1)
    intact = float(np.mean(predicted["none"] == targets))
    lesioned = {arm: float(np.mean(predicted[arm] == targets)) for arm in arms}
    return {
        "accuracy": intact,
        "lesioned": lesioned,
        "drop": {arm: intact - acc for arm, acc in lesioned.items()},
        "n_stimuli": int(len(targets)),
        "predicted": predicted,
    }


def arm_lesion_outcomes(
    checkpoint,
    stim_files: Sequence[str],
    stim_labels: Sequence[str],
    stimulus_table,
    *,
    device: str = "cpu",
    crop_boxes=None,
):
    """Arm lesions of a trained network, stimulus by stimulus.

    The stimuli scored are those whose value in the column of ``stimulus_table`` named
    after the checkpoint's regime is one of the network's classes. Each is classified
    by the intact network and with each arm's input to the shared part replaced by its
    mean over the scored stimuli (:func:`evaluate_lesions`).

    Parameters
    ----------
    checkpoint : path-like
        A checkpoint written by training (records regime, class labels, input recipe).
    stim_files, stim_labels : sequences of str
        Stimulus files and their ``stim_file`` keys in ``stimulus_table``, in the same order.
    stimulus_table : pandas.DataFrame
        Indexed by ``stim_file``, with one column per label set.
    device : {"auto", "cpu", "cuda"}
    crop_boxes : optional
        Face crops of all the stimuli (a crop table keyed by ``stim_labels``, a mode,
        or one box per stimulus; see :func:`dnnrsa.faces.resolve_crops`); default the
        centred square.

    Returns
    -------
    pandas.DataFrame or None
        One row per scored stimulus: ``stim_file``, ``target`` (its class), then
        ``predicted_none`` and ``correct_none`` for the intact network and
        ``predicted_<arm>``, ``correct_<arm>`` for each lesioned arm (class labels and
        0/1); the regime and the number of classes are in ``DataFrame.attrs``
        (``regime``, ``n_classes``). None when the network has no arms, its regime is
        not a column of the table, or fewer than two stimuli carry one of its classes.
    """
    import pandas as pd

    from .models import load_model
    from .stimuli import prepare_inputs

    net, spec, info = load_model(None, checkpoint)
    regime, classes = info.get("regime"), [str(c) for c in info.get("labels", [])]
    if not regime or regime not in stimulus_table.columns or not spec.arms:
        return None
    values = stimulus_table[regime].reindex(list(stim_labels))
    keep = [i for i, v in enumerate(values) if isinstance(v, str) and v in classes]
    if len(keep) < 2:
        return None
    from .faces import resolve_crops

    recipe = info["recipe"]
    crops = resolve_crops(
        stim_files, crop_boxes, names=list(stim_labels), model_frames=(recipe.n_frames,)
    )
    inputs = prepare_inputs([stim_files[i] for i in keep], recipe, [crops[i].box for i in keep])
    targets = np.array([classes.index(values.iloc[i]) for i in keep])
    result = evaluate_lesions(net, inputs, targets, spec, device=device)
    table = pd.DataFrame(
        {"stim_file": [str(stim_labels[i]) for i in keep], "target": [classes[t] for t in targets]}
    )
    for arm, pred in result["predicted"].items():
        table[f"predicted_{arm}"] = [classes[int(k)] for k in pred]
        table[f"correct_{arm}"] = (np.asarray(pred) == targets).astype(int)
    table.attrs.update(regime=str(regime), n_classes=len(classes))
    return table


def lesion_summary(outcomes):
    """Accuracy of the intact and each lesioned network from :func:`arm_lesion_outcomes`.

    Returns
    -------
    pandas.DataFrame
        Columns ``arm`` (``none`` for the intact network), ``accuracy``,
        ``accuracy_drop`` (intact minus lesioned accuracy).
    """
    import pandas as pd

    arms = [c[len("correct_") :] for c in outcomes.columns if c.startswith("correct_")]
    intact = float(outcomes["correct_none"].mean())
    rows = [
        {"arm": arm, "accuracy": acc, "accuracy_drop": intact - acc}
        for arm, acc in ((a, float(outcomes[f"correct_{a}"].mean())) for a in arms)
    ]
    return pd.DataFrame(rows, columns=["arm", "accuracy", "accuracy_drop"])


def arm_lesion_table(
    checkpoint,
    stim_files: Sequence[str],
    stim_labels: Sequence[str],
    stimulus_table,
    *,
    device: str = "cpu",
    crop_boxes=None,
):
    """Arm lesions of a trained network on the stimuli it can be scored on: the
    :func:`lesion_summary` of :func:`arm_lesion_outcomes` (same parameters).

    Returns
    -------
    pandas.DataFrame or None
        Columns ``arm`` (``none`` for the intact network), ``accuracy``, ``accuracy_drop``;
        None where :func:`arm_lesion_outcomes` is None.
    """
    outcomes = arm_lesion_outcomes(
        checkpoint, stim_files, stim_labels, stimulus_table, device=device, crop_boxes=crop_boxes
    )
    return None if outcomes is None else lesion_summary(outcomes)


def checkpoint_class_count(checkpoint) -> int | None:
    """The number of classes of a trained network: the labels its checkpoint records
    (None when it records none)."""
    from .models import load_checkpoint

    return len(load_checkpoint(checkpoint).get("labels", [])) or None


def read_lesion_outcomes(path, n_classes: int | None = None, *, checkpoint=None):
    """Per-stimulus lesion outcomes (:func:`arm_lesion_outcomes`) read from their table.

    The table (TSV: ``stim_file``, ``target``, ``predicted_<arm>``, ``correct_<arm>``)
    does not hold the network's number of classes, which the chance level of its
    accuracy needs; ``attrs["n_classes"]`` gets, in this order: ``n_classes``; the
    number of labels of the network's checkpoint (:func:`checkpoint_class_count`),
    ``checkpoint`` or else the ``Checkpoint`` recorded by the table's JSON sidecar (the
    BIDS App's ``desc-lesionoutcomes`` derivative records it); the number of classes
    among the table's targets, when neither is given or the recorded checkpoint is no
    longer there (with a warning).

    Parameters
    ----------
    path : path-like
        The outcomes table.
    n_classes : int, optional
    checkpoint : path-like, optional
        The network's checkpoint.

    Returns
    -------
    pandas.DataFrame
        The table, with ``stim_file`` and ``target`` read as strings.
    """
    import pandas as pd

    from .bidsnames import read_json, sidecar_path

    table = pd.read_csv(path, sep="\t", dtype={"stim_file": str, "target": str})
    if not n_classes:
        if checkpoint is None:
            recorded = read_json(sidecar_path(path)).get("Checkpoint")
            if recorded and not Path(recorded).is_file():
                logger.warning(
                    "%s: the checkpoint its sidecar records (%s) is not there; its number "
                    "of classes is taken from the targets",
                    path,
                    recorded,
                )
                recorded = None
            checkpoint = recorded or None
        if checkpoint is not None:
            n_classes = checkpoint_class_count(checkpoint)
    table.attrs["n_classes"] = int(n_classes or table["target"].nunique())
    return table


def _module_inputs(model, module, inputs, modalities, batch_size, device) -> np.ndarray:
    import torch

    from .features import torch_device

    captured = []
    target = model.get_submodule(module)
    handle = target.register_forward_pre_hook(
        lambda _m, args: captured.append(args[0].detach().float().cpu().numpy())
    )
    dev = torch.device(torch_device(device))
    tensors = _to_tensors(inputs, modalities)
    was_training = model.training
    model.eval().to(dev)
    try:
        with torch.inference_mode():
            for start in range(0, len(tensors[0]), batch_size):
                model(*[t[start : start + batch_size].to(dev) for t in tensors])
    finally:
        handle.remove()
        model.train(was_training)
    return np.concatenate(captured)
