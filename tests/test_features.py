"""Feature extraction: hooks, batching, the on-disk cache and plugin models."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch

import dnnrsa.stimuli as stimuli
from dnnrsa.features import extract_activations, extract_features, file_sha256
from dnnrsa.models import available_models, build_model, get_model, save_checkpoint
from dnnrsa.stimuli import prepare_inputs, write_clip


def _manual_crosschannel(model, visual, auditory):
    """Every named layer of the cross-channel CNN by calling its submodules by hand."""
    out = {}
    vis, aud, cm = model.visual, model.auditory, model.crossmodal
    x = visual
    for name in (
        "conv1_1 conv1_2 pool1 conv2_1 conv2_2 pool2 conv3_1 conv3_2 conv3_3 pool3 conv4_1".split()
    ):
        x = getattr(vis, name)(x)
        out[f"visual_{name}"] = x
    e, i = vis.excitatory(x), vis.inhibitory(x)
    s = vis.shunting(e, i)
    out.update(visual_excitatory=e, visual_inhibitory=i, visual_shunting=s)
    out["visual_pool4"] = vis.pool4(s)
    x = auditory
    for name in ("conv1", "pool1", "conv2"):
        x = getattr(aud, name)(x)
        out[f"auditory_{name}"] = x
    e, i = aud.excitatory(x), aud.inhibitory(x)
    s = aud.shunting(e, i)
    out.update(auditory_excitatory=e, auditory_inhibitory=i, auditory_shunting=s)
    out["auditory_pool2"] = aud.pool2(s)
    vd = cm.visual_dense(out["visual_pool4"])
    ad = cm.auditory_dense(out["auditory_pool2"])
    out.update(crossmodal_visual_dense=vd, crossmodal_auditory_dense=ad)
    x = cm.stack(vd, ad)
    out["crossmodal_stack"] = x
    for name in ("conv", "pool", "dense", "output"):
        x = getattr(cm, name)(x)
        out[f"crossmodal_{name}"] = x
    return {k: v.numpy() for k, v in out.items()}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Five short synthetic audio-visual clips (different faces and tones)."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(11)
    sr = 22050
    t = np.arange(int(1.2 * sr)) / sr
    paths = []
    for k in range(5):
        base = rng.integers(40, 200, size=(1, 12, 16, 3))
        frames = np.repeat(np.kron(base, np.ones((1, 6, 6, 1))), 10, axis=0).astype(np.uint8)
        audio = 0.3 * np.sin(2 * np.pi * (200 + 150 * k) * t)
        paths.append(write_clip(folder / f"clip{k}.mp4", frames, 25, audio, sr))
    return paths


def test_hooks_equal_a_manual_forward_pass():
    rng = np.random.default_rng(0)
    inputs = {
        "visual": rng.standard_normal((7, 1, 64, 64)).astype(np.float32),
        "auditory": rng.standard_normal((7, 1, 80, 301)).astype(np.float32),
    }
    spec = get_model("crosschannel")
    model = build_model(spec, 4, seed=3)
    modules = {layer.name: layer.module for layer in spec.layers}
    got = extract_activations(
        model, inputs, modules, modalities=("visual", "auditory"), batch_size=3
    )
    with torch.no_grad():
        manual = _manual_crosschannel(
            model, torch.as_tensor(inputs["visual"]), torch.as_tensor(inputs["auditory"])
        )
    assert list(got) == spec.layer_names
    for name in spec.layer_names:
        assert got[name].shape == manual[name].shape, name
        np.testing.assert_allclose(got[name], manual[name], rtol=1e-5, atol=1e-6, err_msg=name)
    # batching does not change anything (eval mode)
    whole = extract_activations(
        model, inputs, modules, modalities=("visual", "auditory"), batch_size=7
    )
    for name in spec.layer_names:
        np.testing.assert_allclose(got[name], whole[name], rtol=1e-5, atol=1e-6)


def test_cache_second_run_decodes_nothing(clips, tmp_path, monkeypatch):
    decoded = []
    real = stimuli.load_inputs

    def counting(path, *args, **kwargs):
        decoded.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(stimuli, "load_inputs", counting)
    cache = tmp_path / "cache"
    first = extract_features(clips, "crosschannel", cache_dir=cache, batch_size=2)
    assert len(decoded) == len(clips)
    assert len(first.activations) == 29
    assert first.activations["auditory_conv1"].shape == (5, 16, 80, 301)

    decoded.clear()
    second = extract_features(clips, "crosschannel", cache_dir=cache)
    assert decoded == []
    for name in first.layer_names:
        np.testing.assert_array_equal(first.activations[name], second.activations[name])

    # the cached values are what a direct extraction gives
    spec = get_model("crosschannel")
    model = build_model(spec)
    direct = extract_activations(
        model,
        prepare_inputs(clips),
        {layer.name: layer.module for layer in spec.layers},
        modalities=spec.recipe.modalities,
    )
    for name in spec.layer_names:
        np.testing.assert_allclose(first.activations[name], direct[name], rtol=1e-5, atol=1e-6)

    # a subset of layers comes from the same cache
    decoded.clear()
    sub = extract_features(clips, cache_dir=cache, layers=["crossmodal_conv", "visual_pool1"])
    assert decoded == [] and sub.layer_names == ["visual_pool1", "crossmodal_conv"]

    # changing one file's contents recomputes that stimulus only
    changed = tmp_path / "changed.mp4"
    changed.write_bytes(clips[0].read_bytes())
    decoded.clear()
    extract_features([changed, clips[1]], cache_dir=cache)
    assert decoded == []  # same contents, other name: still cached
    write_clip(changed, np.zeros((4, 72, 96, 3), np.uint8), 25, np.zeros(8000), 16000)
    decoded.clear()
    again = extract_features([changed, clips[1]], cache_dir=cache)
    assert decoded == [str(changed)]
    assert not np.allclose(
        again.activations["visual_conv1_1"][0], first.activations["visual_conv1_1"][0]
    )


def test_cache_is_keyed_by_checkpoint(clips, tmp_path, monkeypatch):
    spec = get_model("crosschannel")
    ckpt_a = save_checkpoint(
        tmp_path / "a.pt", build_model(spec, 2, seed=1), spec, labels=["x", "y"]
    )
    ckpt_b = save_checkpoint(
        tmp_path / "b.pt", build_model(spec, 2, seed=2), spec, labels=["x", "y"]
    )
    assert file_sha256(ckpt_a) != file_sha256(ckpt_b)
    cache = tmp_path / "cache"
    fa = extract_features(clips[:2], checkpoint=ckpt_a, cache_dir=cache)
    decoded = []
    real = stimuli.load_inputs
    monkeypatch.setattr(
        stimuli, "load_inputs", lambda p, *a, **k: decoded.append(p) or real(p, *a, **k)
    )
    fb = extract_features(clips[:2], checkpoint=ckpt_b, cache_dir=cache)
    assert len(decoded) == 2  # other weights: nothing reused
    assert fa.model_key != fb.model_key and fa.labels == ["x", "y"]
    assert not np.allclose(fa.activations["crossmodal_output"], fb.activations["crossmodal_output"])
    decoded.clear()
    fa2 = extract_features(clips[:2], checkpoint=ckpt_a, cache_dir=cache)
    assert decoded == []
    np.testing.assert_array_equal(
        fa.activations["crossmodal_dense"], fa2.activations["crossmodal_dense"]
    )
    with pytest.raises(ValueError, match="layers must be names"):
        extract_features(clips[:1], layers=["nope"])


PLUGIN = '''
"""A model registered from outside dnnrsa: torchaudio's DeepSpeech on the log-mel."""
import torch
import torchaudio

from dnnrsa.models import LayerSpec, ModelSpec
from dnnrsa.stimuli import InputRecipe


class SpeechNet(torch.nn.Module):
    def __init__(self, n_outputs=3):
        super().__init__()
        self.net = torchaudio.models.DeepSpeech(n_feature=40, n_hidden=24, n_class=n_outputs)

    def forward(self, auditory):
        # (batch, 1, n_mels, n_time) -> (batch, 1, n_time, n_mels)
        return self.net(auditory.transpose(2, 3)).mean(dim=1)


registration = ModelSpec(
    name="{name}",
    factory=SpeechNet,
    layers=[
        LayerSpec("fc1", "net.fc1", "auditory"),
        LayerSpec("fc2", "net.fc2", "auditory"),
        LayerSpec("fc3", "net.fc3", "auditory"),
        LayerSpec("logprob", "net", "output"),
    ],
    recipe=InputRecipe(modalities=("auditory",), n_mels=40, duration_s=1.0),
    default_outputs=3,
)
'''


def test_plugin_model_through_entry_points(clips, tmp_path, monkeypatch):
    name = "testspeechnet"
    pkg = f"dnnrsa_plugin_{name}"
    root = tmp_path / "site"
    (root / pkg).mkdir(parents=True)
    (root / pkg / "__init__.py").write_text(PLUGIN.replace("{name}", name))
    info = root / f"{pkg}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {pkg}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(f"""\
        [dnnrsa.models]
        {name} = {pkg}:registration
        """)
    )
    assert name not in available_models()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, pkg, raising=False)
    assert name in available_models()
    spec = get_model(name)
    assert spec.layer_names == ["fc1", "fc2", "fc3", "logprob"]

    feats = extract_features(clips[:3], name, cache_dir=tmp_path / "cache", batch_size=2)
    assert feats.model == name and feats.parts["logprob"] == "output"
    # manual forward pass with the same seeded weights
    model = build_model(spec)
    x = torch.as_tensor(prepare_inputs(clips[:3], spec.recipe)["auditory"]).transpose(2, 3)
    with torch.no_grad():
        h1 = model.net.fc1(x)
        h2 = model.net.fc2(h1)
        h3 = model.net.fc3(h2)
        logprob = model.net(x)
    assert feats.activations["fc1"].shape == (3, 1, 17 + 84, 24)
    for key, ref in (("fc1", h1), ("fc2", h2), ("fc3", h3), ("logprob", logprob)):
        np.testing.assert_allclose(feats.activations[key], ref.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(feats.activations["fc3"][0], feats.activations["fc3"][1])


@pytest.mark.gpu
def test_extraction_on_gpu_matches_cpu(clips):
    if not torch.cuda.is_available():
        pytest.skip("torch finds no CUDA device")
    cpu = extract_features(clips[:3], device="cpu")
    gpu = extract_features(clips[:3], device="cuda")
    for name in cpu.layer_names:
        np.testing.assert_allclose(
            gpu.activations[name], cpu.activations[name], rtol=1e-3, atol=1e-3
        )


def test_cache_follows_the_face_crop(clips, tmp_path, monkeypatch):
    """The cache is invalidated when a stimulus's crop changes, and not otherwise."""
    decoded, detected = [], []
    real_load = stimuli.load_inputs
    import dnnrsa.faces as faces

    real_detect = faces._detect_file

    def counting_load(path, *args, **kwargs):
        decoded.append(path.name)
        return real_load(path, *args, **kwargs)

    def counting_detect(path, *args, **kwargs):
        detected.append(path.name)
        return real_detect(path, *args, **kwargs)

    monkeypatch.setattr(stimuli, "load_inputs", counting_load)
    monkeypatch.setattr(faces, "_detect_file", counting_detect)
    cache = tmp_path / "cache"
    kwargs = {"cache_dir": cache, "layers": ["visual_conv1_1"], "n_jobs": 1}
    first = extract_features(clips, crop_boxes="auto", **kwargs)
    assert sorted(decoded) == sorted(detected) == sorted(p.name for p in clips)
    assert [c.source for c in first.crops] == ["fallback"] * len(clips)
    # the same choice again: nothing decoded, not even for detection
    decoded.clear(), detected.clear()
    extract_features(clips, crop_boxes="auto", **kwargs)
    assert decoded == [] and detected == []
    # "centre" gives the same boxes here (no face found): still cached
    extract_features(clips, crop_boxes="centre", **kwargs)
    assert decoded == []
    # a crop table changing one stimulus's box recomputes that stimulus only
    table = tmp_path / "crops.tsv"
    table.write_text(f"file\tx0\ty0\tx1\ty1\n{clips[2].name}\t10\t5\t60\t55\n")
    changed = extract_features(clips, crop_boxes=table, **kwargs)
    assert decoded == [clips[2].name]
    assert changed.crops[2].box == (10, 5, 60, 55) and changed.crops[2].source == "table"
    same = [0, 1, 3, 4]
    np.testing.assert_array_equal(
        changed.activations["visual_conv1_1"][same], first.activations["visual_conv1_1"][same]
    )
    assert not np.allclose(
        changed.activations["visual_conv1_1"][2], first.activations["visual_conv1_1"][2]
    )
    # and back: the earlier crop is still cached
    decoded.clear()
    extract_features(clips, crop_boxes="auto", **kwargs)
    assert decoded == []


def test_n_jobs_sets_torch_threads_and_changes_no_activation(clips, monkeypatch):
    """n_jobs is torch's intra-op thread count during the forward passes (restored
    afterwards); the default is the CPUs of the process's affinity, not os.cpu_count();
    the activations of n_jobs=1 and n_jobs=2 are equal bit for bit."""
    import dnnrsa.features as features

    seen = []
    real = features.extract_activations

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "extract_activations", recording)
    before = torch.get_num_threads()
    one = extract_features(clips[:3], n_jobs=1, batch_size=2)
    two = extract_features(clips[:3], n_jobs=2, batch_size=2)
    assert seen == [1, 2]
    assert torch.get_num_threads() == before
    assert one.layer_names == two.layer_names
    for name in one.layer_names:
        np.testing.assert_array_equal(one.activations[name], two.activations[name], err_msg=name)
    monkeypatch.setattr(features.os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    monkeypatch.setattr(features.os, "cpu_count", lambda: 64)
    assert features.available_cpus() == 1
    seen.clear()
    extract_features(clips[:1])
    assert seen == [1]
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="n_jobs"):
        extract_features(clips[:1], n_jobs=0)
