"""Model registry, the cross-channel CNN, checkpoints and arm lesions."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dnnrsa.models import (
    LayerSpec,
    ModelSpec,
    available_models,
    build_model,
    get_model,
    load_checkpoint,
    load_model,
    register_model,
    save_checkpoint,
)
from dnnrsa.models.crosschannel import REGIME_CLASSES, CrossChannelCNN, registration
from dnnrsa.stimuli import InputRecipe
from dnnrsa.train import evaluate_lesions, predict

DOC = Path(__file__).resolve().parents[1] / "docs" / "crosschannel.md"


def _record(model, spec, visual, auditory):
    acts = {}
    handles = [
        model.get_submodule(layer.module).register_forward_hook(
            lambda _m, _i, out, name=layer.name: acts.__setitem__(name, out)
        )
        for layer in spec.layers
    ]
    with torch.no_grad():
        logits = model(visual, auditory)
    for h in handles:
        h.remove()
    return acts, logits


def test_registry_finds_crosschannel():
    assert "crosschannel" in available_models()
    spec = get_model("crosschannel")
    assert spec is registration
    with pytest.raises(ValueError, match="'nosuchnet'"):
        get_model("nosuchnet")


def test_29_layers_in_three_ordered_parts():
    spec = get_model("crosschannel")
    assert len(spec.layers) == 29
    parts = [layer.part for layer in spec.layers]
    assert parts == ["visual"] * 15 + ["auditory"] * 7 + ["crossmodal"] * 7
    names = spec.layer_names
    assert len(set(names)) == 29
    # names stay unique once reduced to the alphanumeric labels BIDS entities allow
    assert len({re.sub(r"[^A-Za-z0-9]", "", n) for n in names}) == 29
    model = build_model(spec)
    for layer in spec.layers:
        model.get_submodule(layer.module)  # resolves
    assert spec.arms == {
        "visual": "crossmodal.visual_dense",
        "auditory": "crossmodal.auditory_dense",
    }


def test_documented_shapes_match_the_network():
    text = DOC.read_text()
    rows = re.findall(
        r"^\| (\d+) \| `(\w+)` \| (\w+) \| `([\w.]+)` \| ([\d x]+) \| (\d+) \|", text, re.M
    )
    assert len(rows) == 29
    spec = get_model("crosschannel")
    model = build_model(spec)
    acts, logits = _record(model, spec, torch.zeros(2, 1, 64, 64), torch.zeros(2, 1, 80, 301))
    assert logits.shape == (2, 6)
    for (num, name, part, module, shape, units), layer in zip(rows, spec.layers, strict=True):
        assert (name, part, module) == (layer.name, layer.part, layer.module), num
        got = tuple(acts[name].shape[1:])
        assert got == tuple(int(v) for v in shape.split(" x ")), name
        assert int(np.prod(got)) == int(units)


def test_forward_structure_known_answers():
    """Shunting is E / (d + I); the stack holds both projections; heads have the regime size."""
    rng = np.random.default_rng(3)
    visual = torch.as_tensor(rng.standard_normal((3, 1, 64, 64)), dtype=torch.float32)
    auditory = torch.as_tensor(rng.standard_normal((3, 1, 80, 301)), dtype=torch.float32)
    spec = get_model("crosschannel")
    model = build_model(spec, 2, seed=1)
    with torch.no_grad():
        model.visual.shunting.raw_decay.copy_(torch.linspace(-2, 2, 64))
    acts, logits = _record(model, spec, visual, auditory)
    for arm in ("visual", "auditory"):
        decay = torch.nn.functional.softplus(model.get_submodule(f"{arm}.shunting").raw_decay)
        expected = acts[f"{arm}_excitatory"] / (
            decay.view(1, -1, 1, 1) + 1e-3 + acts[f"{arm}_inhibitory"]
        )
        torch.testing.assert_close(acts[f"{arm}_shunting"], expected)
    stack = acts["crossmodal_stack"]
    torch.testing.assert_close(stack[:, 0].reshape(3, -1), acts["crossmodal_visual_dense"])
    torch.testing.assert_close(stack[:, 1].reshape(3, -1), acts["crossmodal_auditory_dense"])
    torch.testing.assert_close(logits, acts["crossmodal_output"])
    assert logits.shape == (3, 2)
    assert REGIME_CLASSES == {"emotion": 6, "identity": 6, "gender": 2, "sentence": 2}
    with pytest.raises(ValueError, match="n_outputs"):
        CrossChannelCNN(0)


def test_seeded_initialisation():
    a = build_model("crosschannel", seed=5)
    b = build_model("crosschannel", seed=5)
    c = build_model("crosschannel", seed=6)
    for va, vb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb)
    assert not torch.equal(a.visual.conv1_1[0].weight, c.visual.conv1_1[0].weight)


def test_checkpoint_roundtrip_and_rejections(tmp_path):
    spec = get_model("crosschannel")
    model = build_model(spec, 2, seed=2)
    recipe = InputRecipe(n_frames=3)
    path = save_checkpoint(
        tmp_path / "m.pt",
        model,
        spec,
        labels=["01", "02"],
        regime="sentence",
        recipe=recipe,
        extra={"seed": 2},
    )
    loaded, spec2, info = load_model(checkpoint=path)
    assert spec2 is spec and info["labels"] == ["01", "02"] and info["regime"] == "sentence"
    assert info["recipe"] == recipe and info["extra"] == {"seed": 2}
    for va, vb in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb)

    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 99
    torch.save(raw, tmp_path / "future.pt")
    with pytest.raises(ValueError, match=r"future\.pt.*format_version 99"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt is not a dnnrsa checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"obj": Path("x")}, tmp_path / "pickled.pt")  # arbitrary object: not loaded
    with pytest.raises(ValueError, match=r"pickled\.pt holds a pickled Python object"):
        load_checkpoint(tmp_path / "pickled.pt")


def test_runtime_registration_of_another_model():
    class Tiny(torch.nn.Module):
        def __init__(self, n_outputs):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 4, 3))
            self.head = torch.nn.Linear(3, n_outputs)

        def forward(self, x):
            return self.head(self.body(x))

    spec = ModelSpec(
        name="tiny-runtime",
        factory=Tiny,
        layers=[LayerSpec("body", "body", "visual"), LayerSpec("head", "head", "output")],
        recipe=InputRecipe(modalities=("visual",), image_size=4),
        default_outputs=2,
    )
    register_model(spec, overwrite=True)
    assert "tiny-runtime" in available_models()
    assert get_model("tiny-runtime").layer_names == ["body", "head"]
    with pytest.raises(ValueError, match="already registered"):
        register_model(spec)
    with pytest.raises(ValueError, match="duplicate layer names"):
        ModelSpec("bad", Tiny, [LayerSpec("a", "body", "x"), LayerSpec("a", "head", "x")])


def test_lesion_of_an_uninformative_arm_costs_nothing():
    """A constant visual input makes the visual lesion exactly harmless; the auditory
    lesion equals a manual forward pass with the mean auditory arm output."""
    rng = np.random.default_rng(4)
    n = 12
    inputs = {
        "visual": np.repeat(rng.standard_normal((1, 1, 64, 64)).astype(np.float32), n, axis=0),
        "auditory": rng.standard_normal((n, 1, 80, 301)).astype(np.float32),
    }
    model = build_model("crosschannel", 3, seed=7)
    targets = predict(model, inputs).argmax(axis=1)  # intact accuracy is 1 by construction
    result = evaluate_lesions(model, inputs, targets, "crosschannel")
    assert result["accuracy"] == 1.0
    assert result["lesioned"]["visual"] == 1.0 and result["drop"]["visual"] == 0.0
    with torch.no_grad():
        v = model.visual(torch.as_tensor(inputs["visual"]))
        a = (
            model.auditory(torch.as_tensor(inputs["auditory"]))
            .mean(0, keepdim=True)
            .expand(n, -1, -1, -1)
        )
        manual = model.crossmodal(v, a).argmax(1).numpy()
    assert result["lesioned"]["auditory"] == pytest.approx(np.mean(manual == targets))
    assert result["drop"]["auditory"] == pytest.approx(1.0 - np.mean(manual == targets))
    assert len(set(manual)) == 1  # with both arms constant, every stimulus gets one answer
