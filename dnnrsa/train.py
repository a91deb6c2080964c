"""Training a registered model for one regime.

:func:`fit` trains a torch model on arrays (the work); :func:`train_model` reads a
folder of stimuli and a labels table, splits off a validation set by a chosen
column, calls :func:`fit` and writes a checkpoint with the label set and the input
recipe; :func:`train_regimes` trains one network per regime (emotion, identity,
gender, sentence) from the same stimuli and seed; the command ``dnnrsa-train`` calls
them.

Training is seeded and reproducible: on one CPU type, two runs with the same seed and
the same labels table give bit-identical weights, whatever the number of cores, the
load or the number of decoding threads (initialisation, shuffling, augmentation and
dropout all draw from seeded generators; the batches are drawn from the rows in the
table's order; and torch computes with :data:`TRAINING_THREADS` intra-op threads
while it trains, because oneDNN's convolution weight gradients depend on the thread
count). :func:`train_regimes` trains several regimes at once, each in its own process
with those threads, so the weights do not depend on how many run at once either.

Augmentation (training batches only), drawn per stimulus:

* visual: horizontal flip (p = 0.5), translation by up to 4 pixels (zero fill),
  contrast x [0.8, 1.2] and brightness +-0.1;
* auditory: time shift by up to 20 frames (filled with the spectrogram's minimum,
  i.e. silence), a level shift of +-0.3 (about +-6 dB with the default recipe's
  scale), one time mask (up to 20 frames) and one frequency mask (up to 8 bands)
  set to the spectrogram mean.

:func:`evaluate_lesions` and the other arm-lesion functions live in
:mod:`dnnrsa.lesions`, and :func:`predict` and :func:`evaluate` in ``dnnrsa._predict``;
they are re-exported here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._predict import _to_tensors, evaluate, predict
from .lesions import arm_lesion_outcomes, arm_lesion_table, evaluate_lesions, lesion_summary

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ("file", "emotion", "identity", "gender", "sentence")
REGIMES = ("emotion", "identity", "gender", "sentence")

#: Torch intra-op threads while a network trains (``fit(threads=...)``). The weights
#: depend on this number (oneDNN's convolution weight gradients sum in an order set by
#: the thread count), never on the machine's core count or load: the same value gives
#: the same checkpoint on every machine with the same processor type. One thread per
#: network, with the regimes trained side by side in processes (:func:`train_regimes`),
#: is as fast on an idle 2-core machine as two threads per network one after the other
#: (2.15 against 2.3 s per epoch of the demo's emotion network), and does not slow down
#: when another busy process takes a core (4.2 s per epoch, against 6.5 s with two
#: threads).
TRAINING_THREADS = 1

__all__ = [
    "LABEL_COLUMNS",
    "REGIMES",
    "TRAINING_THREADS",
    "TrainResult",
    "arm_lesion_outcomes",
    "arm_lesion_table",
    "augment_batch",
    "evaluate",
    "evaluate_lesions",
    "fit",
    "lesion_summary",
    "predict",
    "read_labels",
    "train_model",
    "train_regimes",
]


# --------------------------------------------------------------------------- arrays
def augment_batch(batch, modalities: Sequence[str], generator) -> list:
    """Randomly perturb a training batch (see the module docstring).

    Parameters
    ----------
    batch : sequence of torch.Tensor
        One tensor per modality, shapes ``(n, 1, H, W)`` (visual) and
        ``(n, 1, n_mels, n_time)`` (auditory).
    modalities : sequence of {"visual", "auditory"}
    generator : torch.Generator

    Returns
    -------
    list of torch.Tensor
    """
    import torch
    import torch.nn.functional as F

    out = []
    for x, modality in zip(batch, modalities, strict=True):
        n = x.shape[0]
        dev = x.device

        def rand(*shape, dev=dev):
            return torch.rand(*shape, generator=generator).to(dev)

        def randint(high, size, dev=dev):
            return torch.randint(0, high, size, generator=generator).to(dev)

        if modality == "visual":
            flip = rand(n) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            pad = 4
            padded = F.pad(x, (pad, pad, pad, pad))
            dy, dx = randint(2 * pad + 1, (n,)), randint(2 * pad + 1, (n,))
            h, w = x.shape[-2:]
            rows = (dy.view(-1, 1) + torch.arange(h, device=dev)).view(n, 1, h, 1)
            cols = (dx.view(-1, 1) + torch.arange(w, device=dev)).view(n, 1, 1, w)
            idx_n = torch.arange(n, device=dev).view(n, 1, 1, 1)
            x = padded[idx_n, torch.zeros_like(idx_n), rows, cols]
            contrast = 0.8 + 0.4 * rand(n, 1, 1, 1)
            bright = 0.2 * rand(n, 1, 1, 1) - 0.1
            x = x * contrast + bright
        elif modality == "auditory":
            n_mels, n_time = x.shape[-2:]
            max_shift = 20
            shift = randint(2 * max_shift + 1, (n,)) - max_shift
            floor = x.amin(dim=(1, 2, 3), keepdim=True)
            padded = torch.cat(
                [floor.expand(n, 1, n_mels, max_shift), x, floor.expand(n, 1, n_mels, max_shift)],
                dim=-1,
            )
            cols = (max_shift - shift).view(-1, 1) + torch.arange(n_time, device=dev)
            x = torch.gather(padded, -1, cols.view(n, 1, 1, n_time).expand(n, 1, n_mels, n_time))
            x = x + (0.6 * rand(n, 1, 1, 1) - 0.3)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            t_len, t0 = randint(21, (n,)), rand(n)
            t_start = (t0 * (n_time - t_len).clamp(min=1)).long()
            t = torch.arange(n_time, device=dev).view(1, -1)
            t_mask = (t >= t_start.view(-1, 1)) & (t < (t_start + t_len).view(-1, 1))
            f_len, f0 = randint(9, (n,)), rand(n)
            f_start = (f0 * (n_mels - f_len).clamp(min=1)).long()
            f = torch.arange(n_mels, device=dev).view(1, -1)
            f_mask = (f >= f_start.view(-1, 1)) & (f < (f_start + f_len).view(-1, 1))
            mask = t_mask.view(n, 1, 1, n_time) | f_mask.view(n, 1, n_mels, 1)
            x = torch.where(mask, mean.expand_as(x), x)
        out.append(x)
    return out


def fit(
    model,
    inputs,
    targets,
    *,
    modalities: Sequence[str] = ("visual", "auditory"),
    validation: tuple | None = None,
    epochs: int = 20,
    batch_size: int = 16,
    learning_rate: float = 1e-4,
    weight_decay: float = 1e-4,
    augment: bool = True,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    freeze: Sequence[str] = (),
    on_epoch=None,
    threads: int = TRAINING_THREADS,
    stop_after_perfect: int | None = None,
) -> list[dict]:
    """Train a classifier with Adam and cross-entropy.

    Parameters
    ----------
    model : torch.nn.Module
        Modified in place.
    inputs : mapping of modality to ndarray of shape (n, ...), or sequence
    targets : ndarray of shape (n,), int
        Class indices.
    modalities : sequence of str
        Forward argument order.
    validation : (inputs, targets), optional
        Held-out set evaluated after each epoch.
    epochs, batch_size : int
    learning_rate, weight_decay : float
    augment : bool
        Apply :func:`augment_batch` to training batches.
    seed : int
        Seeds shuffling, augmentation and dropout.
    device : {"auto", "cpu", "cuda"}
    progress : bool
        Show a progress bar.
    freeze : sequence of str
        Dotted paths of submodules (e.g. ``"visual"``) kept fixed: their parameters
        are not updated and their batch-norm statistics stay as they are.
    on_epoch : callable, optional
        Called as ``on_epoch(record)`` after each epoch.
    threads : int
        Torch intra-op threads while training (default :data:`TRAINING_THREADS`, 2);
        the caller's setting is restored afterwards. The weights depend on this value
        but not on the machine's core count or load. On CUDA, cuDNN is also asked for
        deterministic algorithms (without autotuning) while training.
    stop_after_perfect : int, optional
        Stop before ``epochs`` once every validation stimulus has been classified
        correctly after this many consecutive epochs (a plateau at the ceiling, where
        more epochs cannot improve the validation accuracy); None (default) trains
        every epoch. Needs ``validation``.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``loss``, ``train_accuracy``, ``val_accuracy``
        (NaN without validation), ``seconds``.
    """
    import time

    import torch

    from .features import torch_device

    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    _check_threads(threads)
    _check_stop(stop_after_perfect, validation)
    dev = torch.device(torch_device(device))
    tensors = _to_tensors(inputs, modalities)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    n = len(y)
    if any(len(t) != n for t in tensors):
        raise ValueError("inputs and targets must have the same number of stimuli")
    generator = torch.Generator().manual_seed(int(seed))
    model.to(dev)
    frozen, optimiser, grad_flags = _optimiser(model, freeze, learning_rate, weight_decay)
    history = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="training", unit="epoch")
    with _reproducible_compute(int(threads), dev), torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            total_loss, correct = _train_epoch(
                model,
                frozen,
                optimiser,
                tensors,
                y,
                generator,
                modalities,
                batch_size,
                augment,
                dev,
            )
            record = {
                "epoch": epoch,
                "loss": total_loss / n,
                "train_accuracy": correct / n,
                "val_accuracy": float("nan"),
            }
            if validation is not None:
                record["val_accuracy"] = evaluate(
                    model, validation[0], validation[1], modalities=modalities, device=str(dev)
                )
            record["seconds"] = time.perf_counter() - t0
            history.append(record)
            _report_epoch(record, bar)
            if on_epoch is not None:
                on_epoch(record)
            if _at_ceiling(history, stop_after_perfect):
                logger.info(
                    "stopped after epoch %d of %d: every validation stimulus correct in "
                    "the last %d epochs",
                    epoch,
                    epochs,
                    stop_after_perfect,
                )
                break
    if bar is not None:
        bar.close()
    for p in model.parameters():
        p.requires_grad_(grad_flags[id(p)])
    model.eval()
    return history


def _check_stop(stop_after_perfect, validation) -> None:
    if stop_after_perfect is None:
        return
    value = stop_after_perfect
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"stop_after_perfect must be a positive integer or None; got {value!r}")
    if validation is None:
        raise ValueError("stop_after_perfect needs a validation set (validation=...)")


def _at_ceiling(history: list[dict], stop_after_perfect: int | None) -> bool:
    """Whether the last ``stop_after_perfect`` epochs classified every validation
    stimulus correctly."""
    if stop_after_perfect is None or len(history) < stop_after_perfect:
        return False
    return all(r["val_accuracy"] == 1.0 for r in history[-stop_after_perfect:])


def _optimiser(model, freeze, learning_rate, weight_decay):
    """Adam over the parameters outside the frozen submodules, which are switched off.

    Returns
    -------
    frozen : list of torch.nn.Module
        The submodules named by ``freeze`` (their gradients are now off).
    optimiser : torch.optim.Adam
    grad_flags : dict
        ``requires_grad`` of every parameter before, by ``id``, to restore afterwards.
    """
    import torch

    frozen = [model.get_submodule(path) for path in freeze]
    frozen_ids = {id(p) for module in frozen for p in module.parameters()}
    trainable = [p for p in model.parameters() if id(p) not in frozen_ids]
    if not trainable:
        raise ValueError(f"freeze={list(freeze)!r} leaves no parameter to train")
    optimiser = torch.optim.Adam(trainable, lr=learning_rate, weight_decay=weight_decay)
    grad_flags = {id(p): p.requires_grad for p in model.parameters()}
    for module in frozen:
        module.requires_grad_(False)
    return frozen, optimiser, grad_flags


def _train_epoch(
    model, frozen, optimiser, tensors, y, generator, modalities, batch_size, augment, dev
):
    """One pass over the training set in a seeded random order.

    Returns
    -------
    total_loss : float
        Sum over the stimuli trained on of their batch's mean loss.
    correct : int
        Stimuli classified correctly during the pass.
    """
    import torch
    from torch.nn import functional as F

    n = len(y)
    model.train()
    for module in frozen:
        module.eval()
    order = torch.randperm(n, generator=generator)
    total_loss, correct = 0.0, 0
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2 and n > 1:
            continue  # batch norm needs at least two samples
        batch = [t[idx].to(dev) for t in tensors]
        if augment:
            batch = augment_batch(batch, modalities, generator)
        target = y[idx].to(dev)
        logits = model(*batch)
        loss = F.cross_entropy(logits, target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        total_loss += float(loss.detach()) * len(idx)
        correct += int((logits.detach().argmax(1) == target).sum())
    return total_loss, correct


def _report_epoch(record, bar) -> None:
    """Log an epoch's record and show it on the progress bar (when there is one)."""
    logger.info(
        "epoch %d: loss %.4f, train accuracy %.3f, validation accuracy %.3f",
        record["epoch"],
        record["loss"],
        record["train_accuracy"],
        record["val_accuracy"],
    )
    if bar is not None:
        bar.set_postfix(
            loss=f"{record['loss']:.3f}",
            acc=f"{record['train_accuracy']:.2f}",
            val=f"{record['val_accuracy']:.2f}",
        )
        bar.update()


@contextmanager
def _reproducible_compute(threads: int, dev):
    """Torch with ``threads`` intra-op threads (and deterministic cuDNN on CUDA) inside."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if dev.type == "cuda":
            cudnn = torch.backends.cudnn
            with cudnn.flags(
                enabled=cudnn.enabled,
                benchmark=False,
                deterministic=True,
                allow_tf32=cudnn.allow_tf32,
            ):
                yield
        else:
            yield
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------- files
def read_labels(path: str | os.PathLike, regime: str | None = None):
    """Read a labels table (TSV with a ``file`` column and one column per label).

    Parameters
    ----------
    path : path-like
        Tab-separated; columns ``file``, ``emotion``, ``identity``, ``gender``,
        ``sentence`` (others are kept). All values are read as text.
    regime : str, optional
        A column that must be present and complete.

    Returns
    -------
    pandas.DataFrame
    """
    import pandas as pd

    path = Path(path)
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "file" not in table.columns:
        raise ValueError(
            f"labels table {path} must have a 'file' column; got {list(table.columns)}"
        )
    if regime is not None:
        if regime not in table.columns:
            raise ValueError(
                f"regime {regime!r} is not a column of {path} (columns: {list(table.columns)})"
            )
        empty = table[regime].str.strip() == ""
        if empty.any():
            raise ValueError(f"{path}: column {regime!r} is empty for {int(empty.sum())} rows")
    return table


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`.

    Attributes
    ----------
    checkpoint : Path
    labels : list of str
        Class names in output order.
    history : list of dict
        Per-epoch records (see :func:`fit`).
    train_files, val_files : list of str
    """

    checkpoint: Path
    labels: list[str]
    history: list[dict]
    train_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)

    @property
    def val_accuracy(self) -> float:
        return self.history[-1]["val_accuracy"] if self.history else float("nan")


def train_model(
    stimulus_dir: str | os.PathLike,
    labels: str | os.PathLike,
    regime: str,
    output: str | os.PathLike,
    *,
    model: str = "crosschannel",
    validation_column: str | None = None,
    validation_values: Sequence[str] | None = None,
    epochs: int = 20,
    batch_size: int = 16,
    learning_rate: float = 1e-4,
    weight_decay: float = 1e-4,
    augment: bool = True,
    seed: int = 0,
    device: str = "auto",
    missing: str = "error",
    freeze: Sequence[str] = (),
    progress: bool = True,
    face_crop="auto",
    n_jobs: int = -1,
    threads: int = TRAINING_THREADS,
    stop_after_perfect: int | None = None,
) -> TrainResult:
    """Train a registered model for one regime from stimulus files.

    Parameters
    ----------
    stimulus_dir : path-like
        Folder the ``file`` column is relative to.
    labels : path-like
        Labels table (see :func:`read_labels`).
    regime : str
        Column to learn (``emotion``, ``identity``, ``gender``, ``sentence`` or any
        other column of the table).
    output : path-like
        Checkpoint file to write (rewritten after every epoch); the per-epoch
        history goes to ``<output stem>_history.tsv`` beside it.
    model : str
        Registered model name.
    validation_column : str, optional
        Column whose values define the validation split.
    validation_values : sequence of str, optional
        Values of ``validation_column`` held out for validation (default: the last
        of its sorted unique values).
    epochs, batch_size, learning_rate, weight_decay, augment, seed, device, progress
        See :func:`fit`.
    missing : {"error", "blank"}
        Videos without audio (see :func:`dnnrsa.stimuli.load_inputs`).
    freeze : sequence of str
        Submodules kept fixed (see :func:`fit`), e.g. ``("visual",)`` to train the
        auditory arm and the cross-modal part on audio-only stimuli.
    face_crop : {"auto", "centre"} or path-like
        Face crops: detected (default), the centred square, or a crop table (TSV
        with columns ``file``, ``x0``, ``y0``, ``x1``, ``y1``); see
        :func:`dnnrsa.faces.resolve_crops`. The mode is recorded in the checkpoint
        (``extra["face_crop"]``), and feature extraction warns when it differs.
    n_jobs : int
        Decoding threads (see :func:`dnnrsa.stimuli.prepare_inputs`); -1 (default) for
        one per CPU. The inputs, and so the checkpoint, do not depend on it.
    threads : int
        Torch intra-op threads while training (see :func:`fit`; default
        :data:`TRAINING_THREADS`), recorded in the checkpoint (``extra["threads"]``).
    stop_after_perfect : int, optional
        Stop early once the validation accuracy has been 1 for this many consecutive
        epochs (see :func:`fit`; needs a validation split), recorded in the
        checkpoint (``extra["stop_after_perfect"]``; ``extra["epochs"]`` stays the
        largest number of epochs, the history has the epochs run).

    The batches are drawn from the rows in the labels table's order: the same table
    (rows in the same order) and seed give the same checkpoint.

    Returns
    -------
    TrainResult
    """
    from .models import get_model

    opts = _TrainingOptions(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        augment=augment,
        seed=seed,
        device=device,
        missing=missing,
        freeze=freeze,
        progress=progress,
        face_crop=face_crop,
        n_jobs=n_jobs,
        threads=threads,
        stop_after_perfect=stop_after_perfect,
    )
    _check_threads(threads)
    _check_stop(stop_after_perfect, validation=())
    spec = get_model(model)
    table = read_labels(labels, regime)
    is_val = _validation_split(table, validation_column, validation_values, labels)
    stimulus_dir = Path(stimulus_dir)
    files = [stimulus_dir / f for f in table["file"]]
    _log_training(spec, table, regime, is_val)
    inputs, mode = _training_inputs(spec, table, files, opts)
    return _train_prepared(
        spec, table, files, inputs, mode, regime, output, is_val, validation_column, opts
    )


def train_regimes(
    stimulus_dir: str | os.PathLike,
    labels: str | os.PathLike,
    regimes: Sequence[str],
    output_dir: str | os.PathLike,
    *,
    model: str = "crosschannel",
    validation_column: str | Mapping[str, str | None] | None = None,
    validation_values: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    epochs: int = 20,
    batch_size: int = 16,
    learning_rate: float = 1e-4,
    weight_decay: float = 1e-4,
    augment: bool = True,
    seed: int = 0,
    device: str = "auto",
    missing: str = "error",
    freeze: Sequence[str] = (),
    progress: bool = True,
    face_crop="auto",
    n_jobs: int = -1,
    threads: int = TRAINING_THREADS,
    stop_after_perfect: int | None = None,
    n_procs: int | None = None,
) -> dict[str, TrainResult]:
    """Train one network per regime from the same stimuli and the same seed.

    Each regime is trained as by :func:`train_model` and written to
    ``output_dir/<regime>.pt`` (with ``<regime>_history.tsv`` beside it). The clips are
    read and cropped once and shared by every regime.

    *Same seed* means that every network starts from the generator state ``seed``:
    the layers are created in the same order, so every layer before the output layer
    (both arms and the cross-modal part up to its dense layer) starts from identical
    weights in every regime; the output layer, created last, has one row per class and
    is identical only between regimes with the same number of classes. Shuffling,
    augmentation and dropout draw from the same seeded streams too, so two regimes
    with the same training stimuli see the same batches in the same order; the
    networks differ only by the labels they learn.

    Parameters
    ----------
    stimulus_dir, labels
        As for :func:`train_model`.
    regimes : sequence of str
        Columns to learn, one network each (e.g. ``REGIMES``); names become file names.
    output_dir : path-like
        Folder of the checkpoints (created when missing).
    validation_column : str or mapping of regime to str or None, optional
        Column defining the validation split: one for every regime, or one per regime
        (a regime missing from the mapping, or mapped to None, trains on every
        stimulus). A regime cannot be validated on its own column (holding out its
        values would leave classes never trained): give such a regime another column,
        e.g. ``{"sentence": "identity"}`` for an unseen speaker.
    validation_values : sequence of str or mapping of column to values, optional
        Values held out: a sequence for every regime's column, or a mapping from
        validation column to its values (a column missing from the mapping holds out
        its last value in sorted order).
    model, epochs, batch_size, learning_rate, weight_decay, augment, seed
        As for :func:`train_model`, the same for every regime.
    device, missing, freeze, progress, face_crop, n_jobs, threads, stop_after_perfect
        As for :func:`train_model`, the same for every regime.
    n_procs : int, optional
        Regimes trained at once, each in its own process with ``threads`` torch threads
        (default: as many as the CPUs this process may use allow, ``available_cpus() //
        threads``, at most one per regime; 1 trains them one after the other in this
        process). The checkpoints do not depend on it.

    Returns
    -------
    dict of str to TrainResult
        One result per regime, in the order of ``regimes``.
    """
    from .models import get_model

    opts = _TrainingOptions(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        augment=augment,
        seed=seed,
        device=device,
        missing=missing,
        freeze=freeze,
        progress=progress,
        face_crop=face_crop,
        n_jobs=n_jobs,
        threads=threads,
        stop_after_perfect=stop_after_perfect,
    )
    regimes = _checked_regimes(regimes)
    _check_threads(threads)
    _check_stop(stop_after_perfect, validation=())
    spec = get_model(model)
    table = read_labels(labels)
    for regime in regimes:
        read_labels(labels, regime)  # a missing or incomplete column is an error
    columns, splits = _regime_splits(table, regimes, validation_column, validation_values, labels)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stimulus_dir = Path(stimulus_dir)
    files = [stimulus_dir / f for f in table["file"]]
    workers = _regime_workers(n_procs, len(regimes), opts.threads)
    inputs, mode = _training_inputs(spec, table, files, opts)
    jobs = []
    for regime in regimes:
        is_val = splits[regime]
        n_train_classes = table.loc[~is_val, regime].nunique()
        if n_train_classes < 2:
            logger.warning(
                "regime %s has %d class among its training stimuli", regime, n_train_classes
            )
        _log_training(spec, table, regime, is_val)
        jobs.append(_RegimeJob(regime, output_dir / f"{regime}.pt", is_val, columns[regime]))
    if workers == 1:
        return {
            job.regime: _train_prepared(
                spec, table, files, inputs, mode, job.regime, job.output, job.is_val,
                job.validation_column, opts,
            )
            for job in jobs
        }  # fmt: skip
    return _train_in_processes(spec.name, table, files, inputs, mode, jobs, opts, workers)


@dataclass(frozen=True)
class _RegimeJob:
    """One regime of :func:`train_regimes`: its checkpoint and validation split."""

    regime: str
    output: Path
    is_val: np.ndarray
    validation_column: str | None


def _regime_workers(n_procs: int | None, n_regimes: int, threads: int) -> int:
    """How many regimes :func:`train_regimes` trains at once."""
    from ._cpus import available_cpus

    if n_procs is None:
        n_procs = max(1, available_cpus() // threads)
    elif isinstance(n_procs, bool) or not isinstance(n_procs, int | np.integer) or n_procs < 1:
        raise ValueError(f"n_procs must be a positive integer or None; got {n_procs!r}")
    return int(min(n_procs, n_regimes))


def _train_in_processes(model, table, files, inputs, mode, jobs, opts, workers) -> dict:
    """Train every job of :func:`train_regimes` in ``workers`` processes at once.

    The prepared inputs go to the workers as ``.npy`` files in a temporary folder
    (memory-mapped there, never decoded again); each worker trains as the sequential
    path does, with the same options, so its checkpoint is the same; one progress bar
    here counts the epochs of all of them.
    """
    import dataclasses
    import multiprocessing
    import tempfile
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm.auto import tqdm

    context = multiprocessing.get_context("spawn")  # torch's thread pools do not survive fork
    worker_opts = dataclasses.replace(opts, progress=False)
    total = opts.epochs * len(jobs)
    with tempfile.TemporaryDirectory(prefix="dnnrsa-train-") as tmp, context.Manager() as manager:
        arrays = {}
        for modality, array in inputs.items():
            arrays[modality] = str(Path(tmp) / f"{modality}.npy")
            np.save(arrays[modality], array)
        queue = manager.Queue()
        bar = tqdm(total=total, desc="training", unit="epoch", disable=not opts.progress)
        state: dict[str, str] = {}
        try:
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {
                    pool.submit(
                        _regime_worker, model, table, files, arrays, mode, job, worker_opts, queue
                    ): job
                    for job in jobs
                }
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    _drain_progress(queue, bar, state)
                    for future in done:
                        result = future.result()  # a worker's error is raised here
                        bar.update(opts.epochs - len(result.history))  # stopped early
                _drain_progress(queue, bar, state)
        finally:
            bar.close()
        results = {job.regime: future.result() for future, job in futures.items()}
    for job in jobs:
        run = len(results[job.regime].history)
        if run < opts.epochs:
            logger.info(
                "%s: stopped after epoch %d of %d (every validation stimulus correct in the "
                "last %d epochs)",
                job.regime,
                run,
                opts.epochs,
                opts.stop_after_perfect,
            )
    return {job.regime: results[job.regime] for job in jobs}


def _drain_progress(queue, bar, state: dict[str, str]) -> None:
    """Move the epochs the workers reported onto the progress bar."""
    import queue as queue_module

    updated = False
    while True:
        try:
            regime, record = queue.get_nowait()
        except queue_module.Empty:
            break
        bar.update(1)
        state[regime] = f"{record['epoch']} val {record['val_accuracy']:.2f}"
        updated = True
    if updated:
        bar.set_postfix_str(", ".join(f"{r} {v}" for r, v in state.items()), refresh=False)


def _regime_worker(model, table, files, arrays, mode, job, opts, queue) -> TrainResult:
    """Train one regime in a worker process of :func:`_train_in_processes`."""
    from .models import get_model

    inputs = {modality: np.load(path, mmap_mode="r") for modality, path in arrays.items()}
    return _train_prepared(
        get_model(model), table, files, inputs, mode, job.regime, job.output, job.is_val,
        job.validation_column, opts, report=lambda record: queue.put((job.regime, record)),
    )  # fmt: skip


@dataclass(frozen=True)
class _TrainingOptions:
    """The options of :func:`train_model` and :func:`train_regimes` that every regime
    shares (see :func:`train_model`)."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    augment: bool
    seed: int
    device: str
    missing: str
    freeze: Sequence[str]
    progress: bool
    face_crop: Any
    n_jobs: int
    threads: int
    stop_after_perfect: int | None = None


def _checked_regimes(regimes) -> list[str]:
    """The regimes as a list of names, checked: at least one, none twice, each a file name."""
    regimes = [str(r) for r in ([regimes] if isinstance(regimes, str) else regimes)]
    if not regimes:
        raise ValueError("give at least one regime to train")
    repeated = sorted({r for r in regimes if regimes.count(r) > 1})
    if repeated:
        raise ValueError(f"regimes {repeated} are given more than once")
    for regime in regimes:
        if not regime or regime in (".", "..") or any(c in regime for c in "/\\"):
            raise ValueError(f"regime {regime!r} cannot name a checkpoint file")
    return regimes


def _regime_splits(table, regimes, validation_column, validation_values, labels):
    """The validation column and split of each regime (see :func:`train_regimes`).

    Returns
    -------
    columns : dict of str to str or None
        Each regime's validation column.
    splits : dict of str to ndarray of bool
        Each regime's validation stimuli (:func:`_validation_split`).
    """
    if isinstance(validation_column, Mapping):
        unknown = sorted(set(validation_column) - set(regimes))
        if unknown:
            raise ValueError(f"validation_column names regimes {unknown} not in {regimes}")
        columns = {r: validation_column.get(r) for r in regimes}
    else:
        columns = dict.fromkeys(regimes, validation_column)
    splits = {}
    for regime in regimes:
        column = columns[regime]
        if column is not None and column == regime:
            raise ValueError(
                f"regime {regime!r} cannot be validated on its own column: holding out its "
                f"values leaves classes that never train; give it another validation column"
            )
        if isinstance(validation_values, Mapping):
            values = validation_values.get(column) if column is not None else None
        else:
            values = validation_values
        splits[regime] = _validation_split(table, column, values, labels)
    return columns, splits


def _log_training(spec, table, regime, is_val) -> None:
    """Log what is about to be trained: model, regime, classes and the split's sizes."""
    logger.info(
        "training %s for %s: %d classes, %d training and %d validation stimuli",
        spec.name,
        regime,
        table[regime].nunique(),
        int((~is_val).sum()),
        int(is_val.sum()),
    )


def _check_threads(threads) -> None:
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise ValueError(f"threads must be a positive integer; got {threads!r}")


def _validation_split(table, validation_column, validation_values, labels) -> np.ndarray:
    """Boolean mask of the validation stimuli (all False without a validation column)."""
    if validation_column is None:
        return np.zeros(len(table), bool)
    if validation_column not in table.columns:
        raise ValueError(
            f"validation_column {validation_column!r} is not a column of {labels} "
            f"(columns: {list(table.columns)})"
        )
    values = sorted(table[validation_column].unique())
    held = [str(v) for v in validation_values] if validation_values else values[-1:]
    unknown = sorted(set(held) - set(values))
    if unknown:
        raise ValueError(
            f"validation_values {unknown} do not occur in column {validation_column!r} "
            f"(values: {values})"
        )
    is_val = table[validation_column].isin(held).to_numpy()
    if is_val.all():
        raise ValueError("the validation split leaves no training stimuli")
    return is_val


def _training_inputs(spec, table, files, opts: _TrainingOptions):
    """Network inputs of every stimulus of the table, and the face-crop mode recorded."""
    from .faces import crop_mode, resolve_crops, table_mode
    from .stimuli import prepare_inputs

    recipe = spec.recipe
    face_crop = opts.face_crop
    crops = resolve_crops(
        files,
        face_crop,
        names=list(table["file"]),
        column="file",
        model_frames=(recipe.n_frames,),
        n_jobs=opts.n_jobs,
    )
    mode = table_mode(crops) if crop_mode(face_crop) == "table" else crop_mode(face_crop)
    inputs = prepare_inputs(
        files,
        recipe,
        [c.box for c in crops],
        missing=opts.missing,
        progress=opts.progress,
        n_jobs=opts.n_jobs,
    )
    return inputs, mode


def _train_prepared(
    spec, table, files, inputs, mode, regime, output, is_val, validation_column, opts, report=None
) -> TrainResult:
    """Build a seeded network for ``regime``, train it on prepared inputs, checkpoint it."""
    import pandas as pd

    from ._io import atomic_write
    from .models import build_model, save_checkpoint

    recipe = spec.recipe
    label_set = sorted(table[regime].unique())
    y = table[regime].map({v: i for i, v in enumerate(label_set)}).to_numpy()
    train_in = {m: a[~is_val] for m, a in inputs.items()}
    val = None
    if is_val.any():
        val = ({m: a[is_val] for m, a in inputs.items()}, y[is_val])
    seed = opts.seed
    net = build_model(spec, len(label_set), seed=seed)
    output = Path(output)
    history_path = output.with_name(output.stem + "_history.tsv")
    meta = {
        "seed": int(seed),
        "epochs": int(opts.epochs),
        "validation_column": validation_column,
        "freeze": list(opts.freeze),
        "face_crop": mode,
        "threads": int(opts.threads),
        "stop_after_perfect": opts.stop_after_perfect,
        "validation_values": sorted({str(v) for v in table.loc[is_val, validation_column]})
        if validation_column
        else [],
    }
    history: list[dict] = []

    def on_epoch(record):
        history.append(record)
        save_checkpoint(
            output,
            net,
            spec,
            labels=label_set,
            regime=regime,
            recipe=recipe,
            extra={**meta, "history": [dict(r) for r in history]},
        )
        with atomic_write(history_path) as fh:
            pd.DataFrame(history).to_csv(fh, sep="\t", index=False)
        if report is not None:
            report(record)

    fit(
        net,
        train_in,
        y[~is_val],
        modalities=recipe.modalities,
        validation=val,
        epochs=opts.epochs,
        batch_size=opts.batch_size,
        learning_rate=opts.learning_rate,
        weight_decay=opts.weight_decay,
        augment=opts.augment,
        seed=seed,
        device=opts.device,
        progress=opts.progress,
        freeze=opts.freeze,
        on_epoch=on_epoch,
        threads=opts.threads,
        stop_after_perfect=opts.stop_after_perfect if val is not None else None,
    )
    return TrainResult(
        checkpoint=output,
        labels=label_set,
        history=history,
        train_files=[str(f) for f, v in zip(files, is_val, strict=True) if not v],
        val_files=[str(f) for f, v in zip(files, is_val, strict=True) if v],
    )
