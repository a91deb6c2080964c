"""The standard video, image and audio networks (dnnrsa.models.standard): what dnnrsa
records equals the library's own network run by hand on the same input, the recipes'
preprocessing against hand-computed values, the weight lookup (never a download), the
registry and ``dnnrsa --list-networks``."""

from __future__ import annotations

import hashlib
import sys
import textwrap
import wave

import numpy as np
import pytest
import torch

from dnnrsa.features import extract_features
from dnnrsa.models import (
    FAMILY_GROUP,
    ModelSpec,
    available_families,
    available_models,
    get_model,
)
from dnnrsa.models.recipes import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    KINETICS_MEAN,
    KINETICS_STD,
    ImageFramesRecipe,
    LogMelImageRecipe,
    VideoClipRecipe,
    WaveformRecipe,
    recipe_from_dict,
)
from dnnrsa.models.standard import (
    WeightsError,
    WeightsMismatch,
    WeightsNotFound,
    load_network,
    parse_network,
)
from dnnrsa.stimuli import StimulusError, load_inputs, prepare_inputs, write_clip

RTOL, ATOL = 1e-4, 1e-5


def _seeded(builder, seed: int, **kwargs):
    torch.manual_seed(seed)
    return builder(weights=None, **kwargs).eval()


def _close(ours, theirs, name):
    theirs = theirs.detach().numpy()
    assert ours.shape == theirs.shape, name
    scale = max(1.0, float(np.abs(theirs).max()))
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL * scale, err_msg=name)


def _write_wav(path, samples: np.ndarray, rate: int):
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes(samples.astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two 1-s audio-visual clips (25 fps, 96x128, 44.1 kHz) with moving patterns."""
    folder = tmp_path_factory.mktemp("clips")
    yy, xx = np.mgrid[:96, :128]
    t = np.arange(44100) / 44100
    paths = []
    for k in range(2):
        frames = np.empty((25, 96, 128, 3), np.uint8)
        for i in range(25):
            frames[i, ..., 0] = (127 + 100 * np.sin(xx / (9 + k) + i / 4)).astype(np.uint8)
            frames[i, ..., 1] = (127 + 100 * np.cos(yy / (7 + 2 * k) - i / 5)).astype(np.uint8)
            frames[i, ..., 2] = ((xx + yy + 5 * i + 40 * k) % 256).astype(np.uint8)
        audio = 0.3 * np.sin(2 * np.pi * (180 + 90 * k) * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
        paths.append(write_clip(folder / f"clip{k}.mp4", frames, 25, audio, 44100, threads=1))
    return paths


# --------------------------------------------------------------------------- recipes by hand
def _ramp_frame() -> np.ndarray:
    """96x128: red = 2x, green = 128, blue = 2y + 40 (linear, so bilinear resizing of it
    is known exactly away from the edges)."""
    yy, xx = np.mgrid[:96, :128]
    frame = np.empty((96, 128, 3), np.uint8)
    frame[..., 0] = 2 * xx
    frame[..., 1] = 128
    frame[..., 2] = 2 * yy + 40
    return frame


def test_video_recipe_resize_crop_and_normalisation_by_hand():
    recipe = VideoClipRecipe()  # short side 128, centre 112, Kinetics mean/std
    out = recipe.preprocess(_ramp_frame()[None]).numpy()
    assert out.shape == (1, 3, 112, 112)
    # resized to 128 x int(128 * 128 / 96) = 128 x 170; crop offsets round(16/2) = 8 and
    # round(58/2) = 29; output pixel j samples the source at (j + 0.5) * in/out - 0.5
    cols = np.arange(112)
    rows = np.arange(112)
    red = 2 * ((cols + 29 + 0.5) * 128 / 170 - 0.5) / 255
    blue = 2 * ((rows + 8 + 0.5) * 96 / 128 - 0.5) / 255 + 40 / 255
    expected = np.empty((3, 112, 112))
    expected[0] = ((red - KINETICS_MEAN[0]) / KINETICS_STD[0])[None, :]
    expected[1] = (128 / 255 - KINETICS_MEAN[1]) / KINETICS_STD[1]
    expected[2] = ((blue - KINETICS_MEAN[2]) / KINETICS_STD[2])[:, None]
    np.testing.assert_allclose(out[0], expected, atol=2e-5)
    # the same numbers written out: corner pixel (0, 0)
    np.testing.assert_allclose(out[0, :, 0, 0], [-1.1484088, 0.4845102, -0.7996204], atol=2e-5)


def test_image_recipe_resize_crop_and_normalisation_by_hand():
    recipe = ImageFramesRecipe(resize=232)  # torchvision's resnet50 (IMAGENET1K_V2) setting
    out = recipe.preprocess(_ramp_frame()[None]).numpy()
    assert out.shape == (1, 3, 224, 224)
    # 232 x int(232 * 128 / 96) = 232 x 309 (upsampling: antialiasing changes nothing);
    # crop offsets round(8 / 2) = 4 and round(85 / 2) = 42 (half to even)
    cols, rows = np.arange(224), np.arange(224)
    red = 2 * ((cols + 42 + 0.5) * 128 / 309 - 0.5) / 255
    blue = (2 * ((rows + 4 + 0.5) * 96 / 232 - 0.5) + 40) / 255
    np.testing.assert_allclose(out[0, 0, 0], (red - IMAGENET_MEAN[0]) / IMAGENET_STD[0], atol=2e-5)
    np.testing.assert_allclose(
        out[0, 2, :, 0], (blue - IMAGENET_MEAN[2]) / IMAGENET_STD[2], atol=2e-5
    )
    np.testing.assert_allclose(out[0, 0, 0, 0], -1.5320600, atol=2e-5)


def test_image_recipe_is_torchvisions_own_evaluation_transform():
    """On float frames the recipe is exactly torchvision's ImageClassification preset."""
    from torchvision.models import ResNet50_Weights

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (2, 150, 200, 3), dtype=np.uint8)
    preset = ResNet50_Weights.IMAGENET1K_V2.transforms()
    theirs = preset(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    ours = ImageFramesRecipe(resize=232).preprocess(frames)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_frames_are_taken_at_evenly_spaced_times(tmp_path):
    """75 frames (3 s at 25 fps), frame i a uniform gray 10 + 3i: the recipe takes the
    frame shown at the centre of each of n equal segments, floor((j + 1/2) * 75 / n)."""
    frames = np.empty((75, 48, 64, 3), np.uint8)
    for i in range(75):
        frames[i] = 10 + 3 * i
    path = write_clip(tmp_path / "ramp.mp4", frames, 25, threads=1)
    plain = {"mean": (0, 0, 0), "std": (1, 1, 1), "resize": 48, "crop": 48}
    video = VideoClipRecipe(n_frames=16, **plain).load(path)["visual"]
    assert video.shape == (3, 16, 48, 48)
    taken = np.round((video.mean(axis=(0, 2, 3)) * 255 - 10) / 3).astype(int)
    assert taken.tolist() == [2, 7, 11, 16, 21, 25, 30, 35, 39, 44, 49, 53, 58, 63, 67, 72]
    images = ImageFramesRecipe(n_frames=8, antialias=False, **plain).load(path)["visual"]
    assert images.shape == (8, 3, 48, 48)
    taken = np.round((images.mean(axis=(1, 2, 3)) * 255 - 10) / 3).astype(int)
    assert taken.tolist() == [4, 14, 23, 32, 42, 51, 60, 70]


def test_waveform_recipe_pads_cuts_and_resamples(tmp_path):
    rate = 16000
    tone = np.round(10000 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate))
    path = _write_wav(tmp_path / "tone.wav", tone, rate)
    wave_in = (tone / 32768).astype(np.float32)
    out = WaveformRecipe(duration_s=3.0).load(path)["auditory"]
    assert out.shape == (48000,) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:16000], 0)
    np.testing.assert_array_equal(out[16000:32000], wave_in)
    np.testing.assert_array_equal(out[32000:], 0)
    out = WaveformRecipe(duration_s=0.5).load(path)["auditory"]
    np.testing.assert_array_equal(out, wave_in[4000:12000])
    out = WaveformRecipe(duration_s=0.5, align="start").load(path)["auditory"]
    np.testing.assert_array_equal(out, wave_in[:8000])
    # another rate: torchaudio's resampler, then the same window
    import torchaudio

    slow = _write_wav(tmp_path / "tone8k.wav", tone[:8000], 8000)
    out = WaveformRecipe(duration_s=1.0).load(slow)["auditory"]
    ref = torchaudio.functional.resample(torch.from_numpy(wave_in[:8000]), 8000, 16000).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_logmel_recipe_is_the_spectrogram_on_three_channels(tmp_path):
    from dnnrsa.stimuli import InputRecipe, logmel_input

    rate = 16000
    tone = np.round(8000 * np.sin(2 * np.pi * 300 * np.arange(2 * rate) / rate))
    path = _write_wav(tmp_path / "tone.wav", tone, rate)
    recipe = LogMelImageRecipe()
    out = recipe.load(path)["auditory"]
    assert out.shape == recipe.input_shape("auditory") == (3, 128, 301)
    mel = InputRecipe(modalities=("auditory",), n_mels=128, n_fft=1024)
    expected = logmel_input((tone / 32768).astype(np.float32), rate, mel)[0]
    for channel in out:
        np.testing.assert_allclose(channel, expected, atol=1e-5)


def test_stimuli_without_sound_or_frames(tmp_path, clips):
    frames = np.full((10, 32, 32, 3), 200, np.uint8)
    silent = write_clip(tmp_path / "silent.mp4", frames, 25, threads=1)
    with pytest.raises(StimulusError, match="has no audio track"):
        WaveformRecipe().load(silent)
    np.testing.assert_array_equal(WaveformRecipe().load(silent, missing="blank")["auditory"], 0)
    sound = _write_wav(tmp_path / "a.wav", np.full(800, 1000.0), 16000)
    assert not VideoClipRecipe().load(sound)["visual"].any()
    assert VideoClipRecipe().load(sound)["visual"].shape == (3, 16, 112, 112)
    from PIL import Image

    still = tmp_path / "still.png"
    Image.fromarray(_ramp_frame()).save(still)
    clip = VideoClipRecipe().load(still)["visual"]
    np.testing.assert_array_equal(clip, np.repeat(clip[:, :1], 16, axis=1))
    assert not WaveformRecipe().load(still)["auditory"].any()
    # through the pipeline's own entry points, a recipe's load is what they give
    np.testing.assert_array_equal(
        load_inputs(clips[0], ImageFramesRecipe(n_frames=2))["visual"],
        ImageFramesRecipe(n_frames=2).load(clips[0])["visual"],
    )
    stacked = prepare_inputs(clips, WaveformRecipe(duration_s=0.5), n_jobs=1)
    assert stacked["auditory"].shape == (2, 8000)


def test_recipes_round_trip_through_their_dictionaries():
    for recipe in (
        VideoClipRecipe(n_frames=8),
        ImageFramesRecipe(interpolation="bicubic"),
        WaveformRecipe(duration_s=2.0),
        LogMelImageRecipe(n_mels=64),
    ):
        assert recipe_from_dict(recipe.to_dict()) == recipe
        assert recipe_from_dict(recipe.to_dict()).key() == recipe.key()
    assert VideoClipRecipe().key() != VideoClipRecipe(n_frames=8).key()
    with pytest.raises(ValueError, match="crop"):
        VideoClipRecipe(resize=100, crop=112)


# --------------------------------------------------------------------------- same as the library
def test_video_network_records_what_torchvision_computes(tmp_path, clips):
    from torchvision.models.video import r3d_18

    net = _seeded(r3d_18, 11)
    weights = tmp_path / "r3d.pth"
    torch.save(net.state_dict(), weights)
    features = extract_features(clips, "torchvision/r3d_18", weights=weights, device="cpu")
    assert features.weights["source"] == "file" and features.weights["trained"]
    assert features.weights["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert features.model_key == "weights-" + features.weights["sha256"]
    assert set(features.parts.values()) == {"visual"}
    recipe = get_model("torchvision/r3d_18").recipe
    x = torch.from_numpy(np.stack([recipe.load(p)["visual"] for p in clips]))
    with torch.inference_mode():
        expected = {"stem": net.stem(x)}
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            expected[stage] = getattr(net, stage)(expected[list(expected)[-1]])
        expected["avgpool"] = net.avgpool(expected["layer4"])
        expected["fc"] = net.fc(expected["avgpool"].flatten(1))
        logits = net(x)
    torch.testing.assert_close(expected["fc"], logits)
    assert list(features.activations) == list(expected)
    for name, value in expected.items():
        _close(features.activations[name], value, name)


def test_image_network_records_what_torchvision_computes_averaged_over_frames(tmp_path, clips):
    from safetensors.torch import save_file
    from torchvision.models import resnet50

    net = _seeded(resnet50, 12)
    weights = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    features = extract_features(clips, "torchvision/resnet50", weights=weights, device="cpu")
    recipe = get_model("torchvision/resnet50").recipe
    assert recipe.n_frames == 8 and recipe.resize == 232 and recipe.crop == 224
    per_stimulus = []
    with torch.inference_mode():
        for path in clips:
            x = torch.from_numpy(recipe.load(path)["visual"])  # the 8 frames as a batch
            out = {"maxpool": net.maxpool(net.relu(net.bn1(net.conv1(x))))}
            for stage in ("layer1", "layer2", "layer3", "layer4"):
                out[stage] = getattr(net, stage)(out[list(out)[-1]])
            out["avgpool"] = net.avgpool(out["layer4"])
            out["fc"] = net.fc(out["avgpool"].flatten(1))
            per_stimulus.append({k: v.mean(0) for k, v in out.items()})
    assert list(features.activations) == list(per_stimulus[0])
    for name in per_stimulus[0]:
        _close(features.activations[name], torch.stack([s[name] for s in per_stimulus]), name)


def test_audio_network_records_what_torchaudio_computes(tmp_path, clips):
    import torchaudio

    torch.manual_seed(13)
    net = torchaudio.models.wav2vec2_base().eval()
    weights = tmp_path / "wav2vec2.pt"
    torch.save(net.state_dict(), weights)
    features = extract_features(clips, "torchaudio/wav2vec2_base", weights=weights, device="cpu")
    assert set(features.parts.values()) == {"auditory"}
    recipe = get_model("torchaudio/wav2vec2_base").recipe
    waves = torch.from_numpy(np.stack([recipe.load(p)["auditory"] for p in clips]))
    with torch.inference_mode():
        conv, _ = net.feature_extractor(waves, None)
        layers, _ = net.extract_features(waves)  # torchaudio's per-layer outputs
    assert len(layers) == 12
    _close(features.activations["feature_extractor"], conv, "feature_extractor")
    for i, value in enumerate(layers):
        _close(features.activations[f"transformer_{i + 1}"], value, f"transformer_{i + 1}")


def test_timm_network_by_name_records_what_timm_computes(tmp_path, clips):
    timm = pytest.importorskip("timm", reason="timm is the networks extra")
    torch.manual_seed(14)
    net = timm.create_model("test_vit", pretrained=False).eval()
    weights = tmp_path / "test_vit.pth"
    torch.save(net.state_dict(), weights)
    features = extract_features(clips, f"timm/test_vit={weights}", device="cpu")
    recipe = get_model("timm/test_vit").recipe
    assert (recipe.crop, recipe.interpolation) == (160, "bicubic")
    with torch.inference_mode():
        expected = []
        for path in clips:
            x = torch.from_numpy(recipe.load(path)["visual"])
            tokens = net.norm_pre(net._pos_embed(net.patch_embed(x)))
            blocks = []
            for block in net.blocks:
                tokens = block(tokens)
                blocks.append(tokens.mean(0))
            expected.append(blocks + [net(x).mean(0)])
    names = list(features.activations)
    assert names == [f"blocks_{i}" for i in range(6)] + ["head"]
    for j, name in enumerate(names):
        _close(features.activations[name], torch.stack([e[j] for e in expected]), name)


def test_untrained_control_is_seeded_and_marked(tmp_path, clips):
    a = extract_features(clips, "torchvision/resnet18_logmel=random", cache_dir=tmp_path)
    b = extract_features(clips, "torchvision/resnet18_logmel", weights="random", seed=0)
    c = extract_features(clips, "torchvision/resnet18_logmel=random", seed=1)
    assert a.weights == {
        "source": "random",
        "trained": False,
        "file": None,
        "sha256": None,
        "seed": 0,
        "official": "torchvision ResNet18_Weights.IMAGENET1K_V1",
    }
    assert a.model_key.startswith("init-torchvision/resnet18_logmel-")
    for name in a.activations:
        np.testing.assert_array_equal(a.activations[name], b.activations[name])
    assert not np.allclose(a.activations["fc"], c.activations["fc"])
    assert a.model_key != c.model_key
    # the cache: one folder per weights, read back unchanged
    (folder,) = [p for p in tmp_path.iterdir() if p.name.startswith("torchvision_resnet18")]
    assert len(list(folder.glob("*.npz"))) == 2
    again = extract_features(clips, "torchvision/resnet18_logmel=random", cache_dir=tmp_path)
    for name in a.activations:
        np.testing.assert_array_equal(a.activations[name], again.activations[name])


def test_the_weight_files_hash_keys_the_cache(tmp_path, clips):
    from torchvision.models import resnet18

    files = []
    for seed in (1, 2):
        files.append(tmp_path / f"w{seed}.pth")
        torch.save(_seeded(resnet18, seed).state_dict(), files[-1])
    cache = tmp_path / "cache"
    one = extract_features(clips, "torchvision/resnet18_logmel", weights=files[0], cache_dir=cache)
    two = extract_features(clips, "torchvision/resnet18_logmel", weights=files[1], cache_dir=cache)
    shas = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert [one.weights["sha256"], two.weights["sha256"]] == shas
    folders = sorted(p.name for p in cache.iterdir())
    assert folders == sorted(f"torchvision_resnet18_logmel-weights-{s[:32]}" for s in shas)
    assert not np.allclose(one.activations["fc"], two.activations["fc"])


# --------------------------------------------------------------------------- weights, never fetched
@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Empty TORCH_HOME and Hugging Face cache; every download function raises."""
    import huggingface_hub
    import torchvision.models._api

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args} {kwargs}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    return tmp_path


def test_official_file_in_torch_home_is_found(offline):
    from torchvision.models.video import R3D_18_Weights, r3d_18

    name = R3D_18_Weights.KINETICS400_V1.url.rsplit("/", 1)[-1]
    assert name == "r3d_18-b3b3357e.pth"
    folder = offline / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    net = _seeded(r3d_18, 21)
    torch.save(net.state_dict(), folder / name)
    model, spec, info = load_network("torchvision/r3d_18")
    assert info["weights"]["source"] == "cache" and info["weights"]["trained"]
    assert info["weights"]["file"] == str(folder / name)
    assert info["weights"]["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    for key, value in net.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_no_file_names_the_expected_file_and_where(offline):
    with pytest.raises(WeightsNotFound) as info:
        load_network("torchvision/r3d_18")
    text = str(info.value)
    assert str(offline / "torch" / "hub" / "checkpoints" / "r3d_18-b3b3357e.pth") in text
    assert "TORCH_HOME" in text and "torchvision/r3d_18=random" in text
    with pytest.raises(WeightsNotFound, match="hubert_fairseq_base_ls960.pth"):
        load_network("torchaudio/hubert_base")
    with pytest.raises(WeightsNotFound, match=r"models--timm--test_vit\.r160_in1k"):
        load_network("timm/test_vit")
    with pytest.raises(WeightsNotFound, match="weight file for torchvision/s3d not found"):
        load_network("torchvision/s3d=" + str(offline / "nope.pth"))
    # every listed network: the error, never a download (the fixture refuses them)
    for name in available_models():
        if get_model(name).weights is not None:
            with pytest.raises(WeightsNotFound, match=get_model(name).weights.file_name):
                load_network(name)


def test_a_file_that_does_not_fit_names_the_first_mismatched_tensor(offline):
    from torchvision.models.video import r3d_18

    folder = offline / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(_seeded(r3d_18, 3, num_classes=10).state_dict(), folder / "r3d_18-b3b3357e.pth")
    with pytest.raises(WeightsMismatch) as info:
        load_network("torchvision/r3d_18")
    assert "tensor 'fc.weight' has shape (10, 512) in the file and (400, 512)" in str(info.value)
    state = _seeded(r3d_18, 3).state_dict()
    del state["layer2.0.conv1.0.weight"]
    torch.save(state, offline / "short.pth")
    with pytest.raises(WeightsMismatch, match="'layer2.0.conv1.0.weight' of the network is not"):
        load_network("torchvision/r3d_18", offline / "short.pth")
    state["layer2.0.conv1.0.weight"] = torch.zeros(128, 64, 3, 3, 3)
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, offline / "long.pth")
    with pytest.raises(WeightsMismatch, match="'extra.weight' of the file is not in the network"):
        load_network("torchvision/r3d_18", offline / "long.pth")


def test_unusable_weight_files_are_refused(offline):
    import argparse

    torch.save({"args": argparse.Namespace(lr=1)}, offline / "pickled.pth")
    with pytest.raises(WeightsError, match="pickled Python object"):
        load_network("torchvision/resnet18=" + str(offline / "pickled.pth"))
    (offline / "weights.npz").write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"\.pth, \.pt or \.safetensors"):
        load_network("torchvision/resnet18", offline / "weights.npz")
    torch.save({"fc.weight": torch.full((2, 2), float("nan"))}, offline / "nan.pt")
    with pytest.raises(WeightsError, match="NaN or infinite"):
        load_network("torchvision/resnet18", offline / "nan.pt")


def test_timm_weights_in_the_hugging_face_cache_are_found(offline):
    timm = pytest.importorskip("timm", reason="timm is the networks extra")
    from safetensors.torch import save_file

    repo = offline / "hf" / "hub" / "models--timm--test_vit.r160_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    torch.manual_seed(5)
    net = timm.create_model("test_vit", pretrained=False)
    save_file(net.state_dict(), str(repo / "snapshots" / "abc123" / "model.safetensors"))
    model, _, info = load_network("timm/test_vit")
    assert info["weights"]["file"] == str(repo / "snapshots" / "abc123" / "model.safetensors")
    torch.testing.assert_close(model.net.head.weight, net.head.weight, rtol=0, atol=0)


def test_random_networks_are_built_without_any_download(offline):
    for name in ("torchvision/mc3_18", "torchaudio/wavlm_base", "timm/test_vit"):
        model, spec, info = load_network(f"{name}=random", seed=2)
        assert info["weights"]["trained"] is False and not model.training


def test_parse_network():
    assert parse_network("torchvision/r3d_18") == ("torchvision/r3d_18", None)
    assert parse_network("torchvision/r3d_18=random") == ("torchvision/r3d_18", "random")
    assert parse_network("timm/x= /a/b.pth") == ("timm/x", "/a/b.pth")
    for bad in ("", "=x", "torchvision/r3d_18="):
        with pytest.raises(ValueError):
            parse_network(bad)


# --------------------------------------------------------------------------- registry and listing
def test_families_are_found_by_the_registry():
    assert available_families() == ["timm", "torchaudio", "torchvision"]
    names = available_models()
    for name in (
        "crosschannel",
        "torchvision/r3d_18",
        "torchvision/r2plus1d_18",
        "torchvision/mc3_18",
        "torchvision/s3d",
        "torchvision/resnet50",
        "torchvision/vit_b_16",
        "torchvision/resnet18_logmel",
        "torchaudio/wav2vec2_base",
        "torchaudio/hubert_base",
        "torchaudio/wavlm_base",
    ):
        assert name in names
        spec = get_model(name)
        assert isinstance(spec, ModelSpec) and spec.name == name
        assert {layer.part for layer in spec.layers} <= {"visual", "auditory", "crossmodal"}
    spec = get_model("torchaudio/hubert_base")
    assert spec.layer_names == ["feature_extractor"] + [f"transformer_{i}" for i in range(1, 13)]
    assert spec.parts["transformer_12"] == "auditory"
    assert get_model("torchvision/resnet18_logmel").parts["layer4"] == "auditory"
    assert get_model("torchvision/s3d").weights.file_name == "s3d-d76dad2f.pth"
    assert get_model("torchvision/resnet50").recipe == ImageFramesRecipe(resize=232)
    assert get_model("torchvision/vit_b_16").recipe == ImageFramesRecipe()
    assert get_model("torchvision/s3d").recipe == VideoClipRecipe(resize=256, crop=224)
    assert get_model("torchvision/mc3_18").recipe == VideoClipRecipe()
    assert get_model("torchaudio/wavlm_base").recipe == WaveformRecipe()
    with pytest.raises(ValueError, match="torchvision network must be one of"):
        get_model("torchvision/nosuchnet")
    with pytest.raises(ValueError, match="timm has no architecture 'nosuchnet'"):
        get_model("timm/nosuchnet")
    with pytest.raises(ValueError, match="family of \\['timm', 'torchaudio', 'torchvision'\\]"):
        get_model("nosuchlibrary/r3d_18")


def test_the_builtin_families_are_the_declared_entry_points():
    """setup.cfg declares the families dnnrsa also knows without installed metadata."""
    import configparser
    from pathlib import Path

    from dnnrsa.models import _BUILTIN_FAMILIES

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    declared = {
        name.strip(): value.strip()
        for name, _, value in (
            line.partition("=")
            for line in cfg["options.entry_points"][FAMILY_GROUP].strip().splitlines()
        )
    }
    assert declared == {ep.name: ep.value for ep in _BUILTIN_FAMILIES}
    for ep in _BUILTIN_FAMILIES:
        assert ep.load().name == ep.name


@pytest.fixture
def family_plugin(tmp_path, monkeypatch):
    pkg = tmp_path / "dnnrsa_familycheck"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent("""\
        import dataclasses
        from dnnrsa.models import ModelFamily, get_model

        def _resolve(member):
            if member == "wrongname":
                return get_model("crosschannel")
            if member not in ("a", "b"):
                raise ValueError(f"toy has no {member!r}")
            return dataclasses.replace(get_model("crosschannel"), name=f"toy/{member}")

        family = ModelFamily("toy", _resolve, lambda: ["a"], "a toy family")
        """)
    )
    info = tmp_path / "dnnrsa_familycheck-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: dnnrsa_familycheck\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[{FAMILY_GROUP}]\ntoy = dnnrsa_familycheck:family\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "dnnrsa_familycheck", raising=False)
    return tmp_path


def test_a_plugin_family_through_entry_points(family_plugin):
    assert "toy" in available_families()
    assert "toy/a" in available_models() and "toy/b" not in available_models()
    assert get_model("toy/b").name == "toy/b"  # resolved though not listed
    assert get_model("crosschannel").name == "crosschannel"
    with pytest.raises(ValueError, match="toy has no 'c'"):
        get_model("toy/c")
    with pytest.raises(TypeError, match="named 'toy/wrongname'"):
        get_model("toy/wrongname")


def test_list_networks_names_every_family(capsys):
    from dnnrsa.bids_app.run import main

    assert main(["--list-networks"]) == 0
    out = capsys.readouterr().out
    for name in available_models():
        assert f"\n{name}: " in "\n" + out
    for text in (
        "timm/<name>",
        "timm/resnet50",
        "r3d_18-b3b3357e.pth",
        "hubert_fairseq_base_ls960.pth",
        "wavlm_base.pth",
        "vit_b_16-c867db91.pth",
        "models--timm--resnet50.a1_in1k",
        "transformer_12",
        "16 frames at evenly spaced times",
        "activations averaged over the 8 frames",
        "mono waveform resampled to 16000 Hz",
        "torchvision/r3d_18=random (untrained)",
    ):
        assert text in out, text
    lines = [ln.split() for ln in out.splitlines() if ln.startswith("    ") and len(ln.split()) > 2]
    parts = {words[1] for words in lines if not words[0].startswith(("or", "looked"))}
    assert {"visual", "auditory", "crossmodal"} <= parts
