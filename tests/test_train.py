"""Training: determinism, augmentation, the command line, and real speech (RAVDESS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dnnrsa.bids_app.train_cli import main
from dnnrsa.features import extract_features
from dnnrsa.models import load_model
from dnnrsa.models.crosschannel import CrossChannelCNN
from dnnrsa.stimuli import InputRecipe, write_clip
from dnnrsa.train import (
    TRAINING_THREADS,
    augment_batch,
    fit,
    read_labels,
    train_model,
    train_regimes,
)

RAVDESS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ravdess"


SMALL = InputRecipe(image_size=32, duration_s=0.5)  # keeps these tests fast


def _inputs(rng, n, recipe=SMALL):
    return {
        "visual": rng.standard_normal((n, *recipe.visual_shape)).astype(np.float32),
        "auditory": rng.standard_normal((n, *recipe.auditory_shape)).astype(np.float32),
    }


def _small_model(n_outputs, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CrossChannelCNN(n_outputs, recipe=SMALL)


def test_fit_is_seeded_and_deterministic_on_cpu():
    rng = np.random.default_rng(0)
    inputs, y = _inputs(rng, 4), np.array([0, 1] * 2)
    states = []
    for seed in (3, 3, 4):
        model = _small_model(2)
        history = fit(
            model, inputs, y, epochs=2, batch_size=4, seed=seed, device="cpu", progress=False
        )
        assert [h["epoch"] for h in history] == [1, 2]
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)
    w = "crossmodal.output.weight"
    assert not torch.equal(states[0][w], states[2][w])
    # the model actually moved away from its initialisation
    assert not torch.equal(states[0][w], _small_model(2).state_dict()[w])


def test_training_stops_at_a_perfect_validation_plateau_and_equals_a_shorter_run():
    """stop_after_perfect=2 ends training after the first two consecutive epochs with
    every validation stimulus correct, with the weights of a run of that many epochs."""
    rng = np.random.default_rng(1)
    y = np.array([0, 1] * 4)
    inputs = _inputs(rng, 8)
    for modality in inputs:  # an easy task: the class shifts every input value
        inputs[modality] += (4.0 * y - 2.0).reshape(-1, *[1] * (inputs[modality].ndim - 1))
    options = dict(batch_size=4, learning_rate=1e-3, seed=5, device="cpu", progress=False)
    stopped_model = _small_model(2)
    history = fit(
        stopped_model, inputs, y, validation=(inputs, y), epochs=40, stop_after_perfect=2, **options
    )
    accuracy = [h["val_accuracy"] for h in history]
    assert 2 <= len(history) < 40
    assert accuracy[-2:] == [1.0, 1.0]
    assert not any(a == b == 1.0 for a, b in zip(accuracy[:-2], accuracy[1:-1], strict=True))
    full_model = _small_model(2)
    fit(full_model, inputs, y, validation=(inputs, y), epochs=len(history), **options)
    for key, value in full_model.state_dict().items():
        assert torch.equal(value, stopped_model.state_dict()[key]), key
    with pytest.raises(ValueError, match="validation set"):
        fit(_small_model(2), inputs, y, epochs=1, stop_after_perfect=2, **options)
    with pytest.raises(ValueError, match="positive integer"):
        fit(_small_model(2), inputs, y, validation=(inputs, y), stop_after_perfect=0, **options)


def test_freeze_keeps_a_part_fixed():
    rng = np.random.default_rng(1)
    inputs, y = _inputs(rng, 6), np.array([0, 1, 2] * 2)
    model = _small_model(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, inputs, y, epochs=1, batch_size=3, freeze=("visual",), device="cpu", progress=False)
    after = model.state_dict()
    for key in before:
        if key.startswith("visual."):
            torch.testing.assert_close(before[key], after[key], rtol=0, atol=0)
    assert not torch.equal(before["auditory.conv1.0.weight"], after["auditory.conv1.0.weight"])
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_augmentation_is_seeded_and_label_preserving():
    rng = np.random.default_rng(2)
    x = [torch.as_tensor(a) for a in _inputs(rng, 5, InputRecipe()).values()]
    a1 = augment_batch(x, ("visual", "auditory"), torch.Generator().manual_seed(9))
    a2 = augment_batch(x, ("visual", "auditory"), torch.Generator().manual_seed(9))
    for u, v, orig in zip(a1, a2, x, strict=True):
        assert u.shape == orig.shape
        torch.testing.assert_close(u, v, rtol=0, atol=0)
        assert not torch.allclose(u, orig)
    # a spectrogram with one loud frame: the frame moves by at most 20 frames
    spec = torch.zeros(4, 1, 80, 301)
    spec[:, :, :, 150] = 5.0
    out = augment_batch([spec], ("auditory",), torch.Generator().manual_seed(1))[0]
    peak = out[:, 0].amax(dim=1).argmax(dim=1)
    assert torch.all((peak - 150).abs() <= 20)


def _synthetic_set(folder: Path, n_per_class=4):
    rng = np.random.default_rng(5)
    rows = []
    sr = 16000
    t = np.arange(sr) / sr
    for k in range(2 * n_per_class):
        emo = k % 2
        frames = np.full((5, 32, 32, 3), 60 + 120 * emo, np.uint8)
        audio = 0.3 * np.sin(2 * np.pi * (300 + 600 * emo) * t) + 0.01 * rng.standard_normal(sr)
        name = f"c{k:02d}.mp4"
        write_clip(folder / name, frames, 25, audio, sr)
        rows.append(
            {
                "file": name,
                "emotion": ["happy", "sad"][emo],
                "identity": f"a{k % 3}",
                "gender": "f",
                "sentence": str(1 + k // n_per_class),
            }
        )
    pd.DataFrame(rows).to_csv(folder / "labels.tsv", sep="\t", index=False)
    return folder / "labels.tsv"


def test_command_line_trains_and_writes_a_checkpoint(tmp_path, capsys):
    stim = tmp_path / "stimuli"
    stim.mkdir()
    labels = _synthetic_set(stim)
    out = tmp_path / "out" / "emotion.pt"
    code = main(
        [
            str(stim),
            str(labels),
            str(out),
            "--regime",
            "emotion",
            "--validation-column",
            "sentence",
            "--validation-values",
            "2",
            "--epochs",
            "2",
            "--batch-size",
            "2",
            "--seed",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "validation accuracy" in capsys.readouterr().out
    model, spec, info = load_model(checkpoint=out)
    assert spec.name == "crosschannel" and info["labels"] == ["happy", "sad"]
    assert info["regime"] == "emotion" and info["recipe"] == spec.recipe
    assert info["extra"]["validation_values"] == ["2"] and len(info["extra"]["history"]) == 2
    history = pd.read_csv(tmp_path / "out" / "emotion_history.tsv", sep="\t")
    assert list(history["epoch"]) == [1, 2]
    assert history["val_accuracy"].between(0, 1).all()
    # usage and missing-input errors
    assert main([str(tmp_path / "nope"), str(labels), str(out), "--regime", "emotion"]) == 66
    assert main([str(stim), str(labels), str(out), "--regime", "mood"]) == 64
    assert main([str(stim), str(labels), str(out)]) == 64  # --regime is required
    assert main([str(stim), str(labels), str(out), "--regime", "emotion", "--threads", "0"]) == 64
    assert info["extra"]["threads"] == TRAINING_THREADS == 1
    bad = tmp_path / "bad.tsv"
    pd.DataFrame({"file": ["missing.mp4"], "emotion": ["happy"]}).to_csv(bad, sep="\t", index=False)
    assert main([str(stim), str(bad), str(out), "--regime", "emotion", "--no-progress"]) == 66
    with pytest.raises(ValueError, match="'file' column"):
        pd.DataFrame({"x": [1]}).to_csv(bad, sep="\t", index=False)
        read_labels(bad)


def _ravdess_labels(path: Path) -> pd.DataFrame:
    rows = []
    for wav in sorted(RAVDESS.glob("Actor_*/*.wav")):
        _, _, emotion, intensity, statement, repetition, actor = wav.stem.split("-")
        rows.append(
            {
                "file": str(wav.relative_to(RAVDESS)),
                "emotion": emotion,
                "identity": actor,
                "gender": "male" if int(actor) % 2 else "female",
                "sentence": statement,
                "repetition": repetition,
                "intensity": intensity,
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(path, sep="\t", index=False)
    return table


def _category_index(rdm_vector, labels):
    from dnnrsa.analysis import category_index

    return category_index(rdm_vector, labels)


@pytest.mark.slow
def test_auditory_arm_learns_emotion_from_real_speech(tmp_path):
    """Emotion (8 classes, chance 0.125) from RAVDESS actors 01 and 02, trained on the
    first repetition of every recording and validated on the second repetition."""
    if not RAVDESS.is_dir():
        pytest.skip(f"real test data not found at {RAVDESS} (../shared/data is absent)")
    table = _ravdess_labels(tmp_path / "labels.tsv")
    assert len(table) == 120
    result = train_model(
        RAVDESS,
        tmp_path / "labels.tsv",
        "emotion",
        tmp_path / "emotion.pt",
        validation_column="repetition",
        validation_values=["02"],
        epochs=8,
        batch_size=8,
        learning_rate=1e-4,
        augment=False,
        freeze=("visual",),  # audio-only stimuli: the visual arm sees a blank face
        seed=0,
        device="cpu",
        progress=False,
    )
    assert len(result.val_files) == 60 and len(result.labels) == 8
    accuracy = result.val_accuracy
    print(f"held-out emotion accuracy (repetition 02): {accuracy:.3f} (chance 0.125)")
    # P(accuracy >= 0.3 | guessing) < 1e-4 for 60 held-out clips
    assert accuracy >= 0.3

    from dnnrsa.rdm import compute_rdm

    feats = extract_features(
        result.val_files, checkpoint=result.checkpoint, layers=["crossmodal_auditory_dense"]
    )
    patterns = feats.flattened()["crossmodal_auditory_dense"]
    rdm = compute_rdm(patterns, "correlation")
    emotions = table.loc[table["repetition"] == "02", "emotion"].to_numpy()
    observed = _category_index(rdm, emotions)
    rng = np.random.default_rng(0)
    shuffled = [_category_index(rdm, rng.permutation(emotions)) for _ in range(200)]
    print(
        f"category index for emotion: {observed:.3f}; shuffled 95th pct {np.percentile(shuffled, 95):.3f}"
    )
    assert observed > np.percentile(shuffled, 99)
    assert observed > 0.05


def _four_regime_set(folder: Path) -> Path:
    labels = _synthetic_set(folder)
    table = pd.read_csv(labels, sep="\t", dtype=str)
    table["gender"] = ["f", "f", "m", "m"] * (len(table) // 4)
    table.to_csv(labels, sep="\t", index=False)
    return labels


def test_four_regimes_train_from_one_seed_into_one_folder(tmp_path, capsys):
    stim = tmp_path / "stimuli"
    stim.mkdir()
    labels = _four_regime_set(stim)
    table = pd.read_csv(labels, sep="\t", dtype=str)
    out = tmp_path / "networks"
    regimes = ["emotion", "identity", "gender", "sentence"]
    common = ["--epochs", "1", "--batch-size", "4", "--seed", "1", "--no-progress"]
    common += ["--face-crop", "centre", "--freeze", "visual", "--nprocs", "2"]
    code = main(
        [str(stim), str(labels), "--regime", *regimes, "--output-dir", str(out)]
        + ["--validation-column", "sentence", "--validation-column-for", "sentence=identity"]
        + common
    )
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.count("wrote ") == 4
    states = {}
    for regime in regimes:
        model, _, info = load_model(checkpoint=out / f"{regime}.pt")
        assert info["regime"] == regime
        assert info["labels"] == sorted(table[regime].unique())
        assert info["extra"]["seed"] == 1
        expected = "identity" if regime == "sentence" else "sentence"
        assert info["extra"]["validation_column"] == expected
        assert len(pd.read_csv(out / f"{regime}_history.tsv", sep="\t")) == 1
        states[regime] = model.state_dict()
    # the frozen visual arm keeps its initialisation: the same in every regime
    for regime in regimes[1:]:
        for key, value in states["emotion"].items():
            if key.startswith("visual."):
                torch.testing.assert_close(states[regime][key], value, rtol=0, atol=0)
    # run again from the same seed, one regime after the other in this process (above:
    # two at once, each in its own process): the same networks, weight for weight
    again = train_regimes(
        stim,
        labels,
        ["emotion", "gender"],
        tmp_path / "again",
        validation_column="sentence",
        epochs=1,
        batch_size=4,
        seed=1,
        device="cpu",
        progress=False,
        face_crop="centre",
        freeze=("visual",),
        n_procs=1,
    )
    assert list(again) == ["emotion", "gender"]
    for regime, result in again.items():
        assert result.checkpoint == tmp_path / "again" / f"{regime}.pt"
        state = load_model(checkpoint=result.checkpoint)[0].state_dict()
        for key, value in states[regime].items():
            torch.testing.assert_close(state[key], value, rtol=0, atol=0)


def test_same_seed_gives_the_same_initial_shared_layers_for_any_class_count():
    from dnnrsa.models import build_model

    six, two, other = (build_model("crosschannel", n, seed=s) for n, s in ((6, 4), (2, 4), (2, 5)))
    six, two, other = six.state_dict(), two.state_dict(), other.state_dict()
    shared = [k for k in six if not k.startswith("crossmodal.output.")]
    assert len(shared) > 20
    for key in shared:
        torch.testing.assert_close(six[key], two[key], rtol=0, atol=0)
    assert six["crossmodal.output.weight"].shape[0] == 6
    assert not torch.equal(two["crossmodal.dense.1.weight"], other["crossmodal.dense.1.weight"])


def test_several_regimes_options_are_checked(tmp_path):
    from dnnrsa.bids_app.train_cli import (
        _regimes_and_output,
        _validation_options,
        build_parser,
    )

    stim = tmp_path / "stimuli"
    stim.mkdir()
    labels = _four_regime_set(stim)
    base = [str(stim), str(labels)]
    # a checkpoint file after --regime is still one regime and its file
    args = build_parser().parse_args([*base, "--regime", "emotion", "emotion.pt"])
    assert _regimes_and_output(args) == (["emotion"], Path("emotion.pt"))
    args = build_parser().parse_args([*base, "emotion.pt", "--regime", "emotion"])
    assert _regimes_and_output(args) == (["emotion"], Path("emotion.pt"))
    out = ["--output-dir", str(tmp_path / "nets")]
    # per-regime validation columns and per-column held-out values
    args = build_parser().parse_args(
        [*base, "--regime", "emotion", "sentence", *out, "--validation-column", "sentence"]
        + ["--validation-column-for", "sentence=identity", "--validation-values", "1"]
        + ["identity=a0"]
    )
    assert _validation_options(args, ["emotion", "sentence"]) == (
        {"emotion": "sentence", "sentence": "identity"},
        {"sentence": ["1"], "identity": ["a0"]},
    )
    args = build_parser().parse_args(
        [*base, "--regime", "emotion", "gender", *out, "--validation-column", "sentence"]
        + ["--validation-values", "1"]
    )
    assert _validation_options(args, ["emotion", "gender"]) == ("sentence", ["1"])
    assert main([*base, "--regime", "emotion", "identity"]) == 64  # no --output-dir
    assert main([*base, "x.pt", "--regime", "emotion", "identity", *out]) == 64  # both
    assert main([*base, "--regime", "emotion", "mood", *out]) == 64  # not a column
    assert main([*base, "--regime", "emotion", "emotion", *out]) == 64  # repeated
    # a regime cannot be validated on its own column
    assert (
        main([*base, "--regime", "emotion", "sentence", *out, "--validation-column", "sentence"])
        == 64
    )
    assert main([*base, "--regime", "emotion", *out, "--validation-column-for", "gender=x"]) == 64
    assert not (tmp_path / "nets").exists()
    with pytest.raises(ValueError, match="own column"):
        train_regimes(stim, labels, ["identity"], tmp_path / "n", validation_column="identity")


def test_training_is_bit_identical_whatever_the_threads_and_the_decoding(tmp_path):
    """The same table and seed give the same weights with torch set to 1 or 2 threads
    by the caller and the clips decoded by 1 or 2 workers (in a different order)."""
    stim = tmp_path / "stimuli"
    stim.mkdir()
    labels = _synthetic_set(stim)
    before = torch.get_num_threads()
    states, accuracies = [], []
    try:
        for threads, n_jobs in ((1, 1), (2, 2)):
            torch.set_num_threads(threads)
            result = train_model(
                stim,
                labels,
                "emotion",
                tmp_path / f"emotion_{threads}.pt",
                validation_column="sentence",
                epochs=2,
                batch_size=3,
                seed=2,
                device="cpu",
                progress=False,
                face_crop="centre",
                n_jobs=n_jobs,
            )
            states.append(load_model(checkpoint=result.checkpoint)[0].state_dict())
            accuracies.append([(h["train_accuracy"], h["val_accuracy"]) for h in result.history])
    finally:
        torch.set_num_threads(before)
    assert states[0].keys() == states[1].keys()
    differing = [key for key in states[0] if not torch.equal(states[0][key], states[1][key])]
    assert differing == []
    assert accuracies[0] == accuracies[1]
