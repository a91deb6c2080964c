"""Stimuli decoded once and shared by every network (dnnrsa._decodedclips).

- every recipe (video clip, image frames, waveform, log-mel, the cross-channel network's
  face and log-mel inputs) makes, from the store, inputs equal byte for byte to those it
  decodes itself, for clips, a silent video, a sound file and a still image, with the
  same errors;
- the activations of a video, an image and an audio network (untrained, seeded) and of
  the cross-channel checkpoint read through the store equal the direct ones, and the
  store is read without decoding anything;
- two networks decode each stimulus twice without the store and once with it;
- entries are written atomically: readers running beside writers see a whole entry or
  none;
- the interfaces (``DecodeStimuli``, ``ExtractFeatures`` with ``decoded_clips``) and the
  DNN workflow: the extract nodes of two networks depend on one ``decode_stimuli`` node,
  which keeps the frames their recipes take; one network alone decodes by itself.
"""

from __future__ import annotations

import threading
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dnnrsa import _decode
from dnnrsa._decodedclips import DecodedClips
from dnnrsa.features import extract_features
from dnnrsa.models import get_model, load_checkpoint
from dnnrsa.models.recipes import (
    ImageFramesRecipe,
    LogMelImageRecipe,
    VideoClipRecipe,
    WaveformRecipe,
)
from dnnrsa.stimuli import InputRecipe, StimulusError, load_inputs, write_clip

VIDEO = "torchvision/r3d_18=random"
IMAGE = "torchvision/resnet18=random"
AUDIO = "torchvision/resnet18_logmel=random"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three 1-s audio-visual clips (25 fps, 48 x 64, 22.05 kHz) with moving patterns."""
    folder = tmp_path_factory.mktemp("shared_clips")
    yy, xx = np.mgrid[:48, :64]
    sr = 22050
    t = np.arange(sr) / sr
    paths = []
    for k in range(3):
        frames = np.empty((25, 48, 64, 3), np.uint8)
        for i in range(25):
            frames[i, ..., 0] = (127 + 100 * np.sin(xx / (4 + k) + i / 4)).astype(np.uint8)
            frames[i, ..., 1] = (127 + 100 * np.cos(yy / (3 + k) - i / 5)).astype(np.uint8)
            frames[i, ..., 2] = ((xx + yy + 7 * i + 30 * k) % 256).astype(np.uint8)
        audio = 0.3 * np.sin(2 * np.pi * (170 + 80 * k) * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
        paths.append(write_clip(folder / f"clip{k}.mp4", frames, 25, audio, sr, threads=1))
    return paths


@pytest.fixture(scope="module")
def odd_stimuli(tmp_path_factory):
    """A video without sound, a sound file and a still image."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("shared_odd")
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 255, size=(10, 32, 48, 3), dtype=np.uint8)
    silent = write_clip(folder / "silent.mp4", frames, 25, threads=1)
    sound = folder / "tone.wav"
    samples = 8000 * np.sin(2 * np.pi * 300 * np.arange(12000) / 24000)
    with wave.open(str(sound), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(24000)
        fh.writeframes(samples.astype("<i2").tobytes())
    still = folder / "still.png"
    Image.fromarray(rng.integers(0, 255, size=(40, 56, 3), dtype=np.uint8)).save(still)
    return {"silent": silent, "sound": sound, "still": still}


def _recipes(checkpoint):
    return [
        VideoClipRecipe(n_frames=16),
        ImageFramesRecipe(n_frames=8, resize=64, crop=56),
        WaveformRecipe(sample_rate=16000, duration_s=0.8),
        LogMelImageRecipe(duration_s=0.8, n_mels=32),
        load_checkpoint(checkpoint)["recipe"],
        InputRecipe(n_frames=3, n_mels=32),
        InputRecipe(modalities=("visual",), n_frames=5),
    ]


def _counts(recipes) -> list[int]:
    return [r.n_frames for r in recipes if "visual" in r.modalities]


@pytest.fixture
def refuse_decoding(monkeypatch):
    """Make any decoding of a container fail: what runs then reads the store alone."""

    def refuse(container, path, **kwargs):
        raise AssertionError(f"{path} decoded although the store holds it")

    def apply():
        monkeypatch.setattr(_decode, "_decode_streams", refuse)

    return apply


@pytest.fixture
def count_decoding(monkeypatch):
    """Count the decodings of every stimulus file (by its name)."""
    counts = Counter()
    real = _decode._decode_streams

    def counting(container, path, **kwargs):
        counts[Path(path).name] += 1
        return real(container, path, **kwargs)

    monkeypatch.setattr(_decode, "_decode_streams", counting)
    return counts


# ---------------------------------------------------------------- the recipes' inputs
@pytest.mark.parametrize("every_frame", [False, True])
def test_every_recipe_reads_the_store_exactly(
    tmp_path, clips, odd_stimuli, crosschannel_checkpoint, every_frame, refuse_decoding
):
    recipes = _recipes(crosschannel_checkpoint)
    store = DecodedClips(tmp_path / "store", None if every_frame else _counts(recipes))
    stimuli = [*clips, *odd_stimuli.values()]
    direct = {}
    for i, recipe in enumerate(recipes):
        for path in stimuli:
            direct[i, path.name] = load_inputs(path, recipe, missing="blank")
    assert store.fill(stimuli, n_jobs=2) == len(stimuli)
    assert len(list(store.root.glob("*.npz"))) == len(stimuli)
    assert store.fill(stimuli) == 0  # held already: nothing decoded again
    refuse_decoding()
    for i, recipe in enumerate(recipes):
        for path in stimuli:
            got = load_inputs(path, recipe, missing="blank", store=store)
            want = direct[i, path.name]
            assert list(got) == list(want)
            for modality in want:
                assert got[modality].dtype == want[modality].dtype
                assert np.array_equal(got[modality], want[modality]), (recipe, path.name)


def test_the_stores_errors_are_the_recipes_own(tmp_path, odd_stimuli):
    store = DecodedClips(tmp_path / "store", [16])
    store.fill(odd_stimuli.values())
    for recipe in (WaveformRecipe(), LogMelImageRecipe(), InputRecipe()):
        with pytest.raises(StimulusError, match="has no audio track"):
            load_inputs(odd_stimuli["silent"], recipe, store=store)
    with pytest.raises(StimulusError, match="not found"):
        load_inputs(tmp_path / "gone.mp4", VideoClipRecipe(), store=store)


def test_a_stimulus_the_store_lacks_is_decoded_as_without_it(tmp_path, clips, count_decoding):
    """Frames the store does not keep, or a stimulus it does not hold: the recipe decodes
    the file itself, with the same inputs."""
    store = DecodedClips(tmp_path / "store", [8])
    store.fill(clips[:1])
    count_decoding.clear()
    recipe = VideoClipRecipe(n_frames=16)  # 16 frames: not kept
    for path in clips[:2]:
        want = recipe.load(path)["visual"]
        assert np.array_equal(recipe.load(path, store=store)["visual"], want)
    assert count_decoding == {clips[0].name: 2, clips[1].name: 2}


# ---------------------------------------------------------------- the activations
@pytest.mark.parametrize("model", [VIDEO, IMAGE, AUDIO, "checkpoint"])
def test_activations_through_the_store_equal_the_direct_ones(
    tmp_path, clips, crosschannel_checkpoint, model, refuse_decoding
):
    kwargs = {"device": "cpu", "seed": 3, "n_jobs": 1, "batch_size": 2}
    if model == "checkpoint":
        kwargs["checkpoint"] = crosschannel_checkpoint
        recipe = load_checkpoint(crosschannel_checkpoint)["recipe"]
        model = "crosschannel"
    else:
        recipe = get_model(model.split("=")[0]).recipe
    direct = extract_features(clips, model, **kwargs)
    store = DecodedClips(tmp_path / "store", _counts([recipe]))
    store.fill(clips)
    description = store.save(tmp_path / "decoded_clips.json")
    refuse_decoding()
    shared = extract_features(clips, model, decoded_clips=description, **kwargs)
    assert shared.layer_names == direct.layer_names
    for name in direct.layer_names:
        assert np.array_equal(shared.activations[name], direct.activations[name]), name


def test_two_networks_decode_each_stimulus_once(tmp_path, clips, count_decoding):
    kwargs = {"device": "cpu", "n_jobs": 1, "batch_size": 3, "layers": None}
    networks = (IMAGE, AUDIO)
    for network in networks:
        extract_features(clips, network, **kwargs)
    assert count_decoding == {p.name: 2 for p in clips}  # once per network

    count_decoding.clear()
    counts = _counts([get_model(n.split("=")[0]).recipe for n in networks])
    store = DecodedClips(tmp_path / "store", counts)
    store.fill(clips, n_jobs=2)
    for network in networks:
        extract_features(clips, network, decoded_clips=store, **kwargs)
    assert count_decoding == {p.name: 1 for p in clips}  # once in all
    assert len(list(store.root.glob("*.npz"))) == len(clips)


def test_readers_beside_writers_see_whole_entries(tmp_path, clips):
    """Two writers fill one store while readers read it: a reader gets nothing or the
    whole clip, never part of an entry."""
    store = DecodedClips(tmp_path / "store", [16])

    def select(timeline):
        return _decode._frame_indices(timeline, 16)

    want = {p.name: _decode._decode_file(p, select=select) for p in clips}
    seen, errors = Counter(), []
    done = threading.Event()

    def read():
        try:
            while True:
                last = done.is_set()  # a last pass once the writers are done
                for path in clips:
                    got = store.read(path, video=True, audio=True, select=select)
                    if got is None:
                        continue
                    seen[path.name] += 1
                    frames, _, fps, audio, rate = want[path.name]
                    assert np.array_equal(got[0], frames) and np.array_equal(got[3], audio)
                    assert (got[2], got[4]) == (fps, rate)
                if last:
                    break
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=store.fill, args=(clips,)) for _ in range(2)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert errors == []
    assert sum(seen.values()) > 0
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".")] == []
    assert len(list(store.root.glob("*.npz"))) == len(clips)


# ---------------------------------------------------------------- interfaces and workflow
def test_decode_node_feeds_the_extraction(tmp_path, clips, refuse_decoding):
    from nipype.pipeline import engine as pe

    from dnnrsa.interfaces.dnn import DecodeStimuli, ExtractFeatures

    def run(interface, name):
        return pe.Node(interface, name=name, base_dir=str(tmp_path / "work")).run().outputs

    stim = [str(p) for p in clips]
    decoded = run(
        DecodeStimuli(stim_files=stim, store_dir=str(tmp_path / "store"), frame_counts=[8]),
        "decode",
    )
    assert DecodedClips.load(decoded.decoded_clips) == DecodedClips(tmp_path / "store", [8])
    layers = ["layer1", "fc"]
    direct = extract_features(stim, IMAGE, layers=layers, device="cpu", seed=0)
    refuse_decoding()
    out = run(
        ExtractFeatures(
            stim_files=stim,
            model="torchvision/resnet18",
            weights="random",
            layers=layers,
            device="cpu",
            decoded_clips=decoded.decoded_clips,
        ),
        "extract",
    )
    with np.load(out.features_file) as data:
        for i, name in enumerate(layers):
            assert np.array_equal(data[f"layer{i:03d}"], direct.activations[name])


def _dnn_wf(small, tmp_path, *options):
    import pandas as pd

    from dnnrsa.bids_app.parser import build_parser
    from dnnrsa.bids_app.run import config_from_options
    from dnnrsa.bids_app.workflows import init_dnn_wf

    argv = [str(small.root), str(tmp_path / "o"), "participant", "-w", str(tmp_path / "w")]
    config = config_from_options(build_parser().parse_args([*argv, *options]))
    table = tmp_path / "stimuli.tsv"
    pd.DataFrame({"stim_file": small.stim_files}).to_csv(table, sep="\t", index=False)
    stim = [str(small.root / "stimuli" / f) for f in small.stim_files]
    wf = init_dnn_wf(
        config,
        stim_paths=stim,
        stim_labels=list(small.stim_files),
        stim_conditions=list(small.stim_files),
        conditions=list(small.stim_files),
        stimulus_table=str(table),
        task="cat",
    )
    return wf, stim


def test_the_extract_nodes_of_the_networks_depend_on_one_decode_node(
    bids_one_subject, tmp_path, crosschannel_checkpoint
):
    """Four networks read frames (the checkpoint, two video and one image network) and
    one reads sound: one decode node feeds all five."""
    small = bids_one_subject
    options = ["--checkpoint", str(crosschannel_checkpoint)]
    for name in (VIDEO, "torchvision/mc3_18=random", IMAGE, AUDIO):
        options += ["--network", name]
    wf, stim = _dnn_wf(small, tmp_path, *options, "--nprocs", "3")
    graph = wf._graph
    (decode,) = [n for n in graph.nodes if n.name == "decode_stimuli"]
    extracts = sorted(n.name for n in graph.nodes if n.name.startswith("extract_"))
    assert extracts == [
        "extract_mc318random",
        "extract_net",
        "extract_r3d18random",
        "extract_resnet18logmelrandom",
        "extract_resnet18random",
    ]
    for node in graph.successors(decode):
        assert graph.get_edge_data(decode, node)["connect"] == [("decoded_clips", "decoded_clips")]
    assert sorted(n.name for n in graph.successors(decode)) == extracts
    assert list(decode.inputs.stim_files) == stim
    assert decode.inputs.store_dir == str(tmp_path / "w" / "decoded_clips")
    ckpt_frames = load_checkpoint(crosschannel_checkpoint)["recipe"].n_frames
    # the video networks take 16 frames, resnet18 8, the log-mel network none
    assert decode.inputs.frame_counts == sorted({ckpt_frames, 16, 8})
    assert decode.n_procs == 3 and decode.inputs.n_jobs == 3


@pytest.mark.parametrize("networks", [[], [VIDEO, IMAGE], [VIDEO, IMAGE, AUDIO]])
def test_fewer_than_four_networks_reading_frames_decode_by_themselves(
    bids_one_subject, tmp_path, crosschannel_checkpoint, networks
):
    """One, three, and three with a network of sound: each decodes the stimuli itself."""
    options = ["--checkpoint", str(crosschannel_checkpoint)]
    for name in networks:
        options += ["--network", name]
    wf, _ = _dnn_wf(bids_one_subject, tmp_path, *options)
    assert "decode_stimuli" not in wf.list_node_names()
    for name in wf.list_node_names():
        if name.startswith("extract_"):
            assert list(wf._graph.predecessors(wf.get_node(name))) == []
