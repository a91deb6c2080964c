"""Running a network on arrays: inputs to tensors, logits, accuracy.

Used by training (:mod:`dnnrsa.train`, the validation accuracy after each epoch) and by
the arm lesions (:mod:`dnnrsa.lesions`), below both; :mod:`dnnrsa.train` re-exports
:func:`predict` and :func:`evaluate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["evaluate", "predict"]


def _to_tensors(inputs, modalities):
    """One float32 tensor per modality, in the order of ``modalities``."""
    import torch

    if isinstance(inputs, Mapping):
        arrays = [inputs[m] for m in modalities]
    else:
        arrays = list(inputs)
    return [torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in arrays]


def predict(
    model,
    inputs,
    *,
    modalities: Sequence[str] = ("visual", "auditory"),
    batch_size: int = 32,
    device: str = "cpu",
) -> np.ndarray:
    """Logits for a set of inputs.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : mapping of modality to ndarray of shape (n, ...), or sequence
    modalities : sequence of str
        Forward argument order when ``inputs`` is a mapping.

    Returns
    -------
    ndarray of shape (n, n_outputs)
    """
    import torch

    from .features import torch_device

    dev = torch.device(torch_device(device))
    tensors = _to_tensors(inputs, modalities)
    was_training = model.training
    model.eval().to(dev)
    chunks = []
    try:
        with torch.inference_mode():
            for start in range(0, len(tensors[0]), batch_size):
                batch = [t[start : start + batch_size].to(dev) for t in tensors]
                chunks.append(model(*batch).float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(chunks)


def evaluate(model, inputs, targets, **kwargs) -> float:
    """Classification accuracy (fraction correct) of ``model`` on ``inputs``."""
    logits = predict(model, inputs, **kwargs)
    return float(np.mean(logits.argmax(axis=1) == np.asarray(targets)))
