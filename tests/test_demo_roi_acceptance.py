"""dnnrsa.demo.scoring.roi_acceptance on hand-made group-level ROI tables (known answers)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dnnrsa.demo import roi_acceptance

TASK, SPACE = "emotion", "MNI152NLin2009cAsym"
LAYERS = {  # model name -> part
    "model-net_layer-v1": "visual",
    "model-net_layer-v2": "visual",
    "model-net_layer-a1": "auditory",
    "model-net_layer-x1": "crossmodal",
    "model-net_layer-x2": "crossmodal",
    "model-own": "model",
}


def _write(out, roi, means, *, lower=0.3, p_zero=None, p_ceiling=None, pairs=None):
    """The evaluation, noise-ceiling and pairwise tables of one region."""
    names = list(LAYERS)
    stem = f"task-{TASK}_space-{SPACE}_roi-{roi}_desc-"
    p_zero = p_zero if p_zero is not None else [0.001] * len(names)
    p_ceiling = p_ceiling if p_ceiling is not None else [0.5] * len(names)
    pd.DataFrame(
        {
            "model": names,
            "mean": means,
            "p_zero": p_zero,
            "p_noise_ceiling": p_ceiling,
            "p_noise_ceiling_adjusted": p_ceiling,
        }
    ).to_csv(out / f"{stem}evaluation_stats.tsv", sep="\t", index=False)
    pd.DataFrame({"bound": ["lower", "upper"], "mean": [lower, lower + 0.2]}).to_csv(
        out / f"{stem}noiseceiling_stats.tsv", sep="\t", index=False
    )
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            p = (pairs or {}).get((a, b), 0.001)
            rows.append(dict(model_a=a, model_b=b, difference=means[i] - means[names.index(b)],
                             p=p, p_adjusted=p))  # fmt: skip
    pd.DataFrame(rows).to_csv(out / f"{stem}pairwise_stats.tsv", sep="\t", index=False)


@pytest.fixture
def derivatives(tmp_path):
    for name, part in LAYERS.items():
        if part != "model":
            (tmp_path / f"task-{TASK}_{name}_rdm.json").write_text(json.dumps({"Part": part}))
    #          v1    v2    a1    x1    x2    own
    _write(tmp_path, "crossmodal", [0.1, 0.15, 0.2, 0.35, 0.25, 0.9])
    _write(tmp_path, "visual", [0.6, 0.5, 0.0, 0.1, 0.2, 0.0])
    _write(tmp_path, "control", [0.0] * 6, p_zero=[0.5, 0.2, 0.02, 0.3, 0.9, 0.0001])
    return tmp_path


def _checks(derivatives):
    table = roi_acceptance(derivatives, task=TASK, space=SPACE)
    return table.set_index(["roi", "check"])


def test_all_checks_hold(derivatives):
    table = _checks(derivatives)
    assert table["holds"].all(), table.to_string()
    row = table.loc[("crossmodal", "best crossmodal layer beats best visual layer")]
    # the best layer of a part by bootstrap mean; user models are not a part
    assert (row["model"], row["other"]) == ("model-net_layer-x1", "model-net_layer-v2")
    assert row["value"] == pytest.approx(0.2) and row["reference"] == pytest.approx(0.15)
    row = table.loc[("crossmodal", "best crossmodal layer beats best auditory layer")]
    assert row["other"] == "model-net_layer-a1" and row["value"] == pytest.approx(0.15)
    row = table.loc[("crossmodal", "best crossmodal layer reaches the lower noise ceiling")]
    assert row["value"] == pytest.approx(0.35) and row["reference"] == pytest.approx(0.3)
    row = table.loc[("visual", "best visual layer beats best crossmodal layer")]
    assert (row["model"], row["other"]) == ("model-net_layer-v1", "model-net_layer-x2")
    # the control: Holm over the 5 layers (the user model, p = 0.0001, is not a layer)
    row = table.loc[("control", "no layer above zero (family-wise over layers)")]
    assert row["model"] == "model-net_layer-a1" and row["reference"] == 5
    assert row["p_adjusted"] == pytest.approx(0.1) and bool(row["holds"])
    # rejected where the adjusted p value is at most alpha
    assert not _checks_with_control_p(derivatives, 0.01)["holds"]


def test_checks_that_fail(derivatives):
    # a pairwise difference that is not significant, a layer below the noise ceiling,
    # a control layer above zero family-wise
    _write(
        derivatives, "crossmodal", [0.1, 0.15, 0.2, 0.25, 0.25, 0.9],
        p_ceiling=[0.5, 0.5, 0.5, 0.01, 0.5, 0.5],
        pairs={("model-net_layer-v2", "model-net_layer-x1"): 0.2},
    )  # fmt: skip
    _write(derivatives, "control", [0.0] * 6, p_zero=[0.5, 0.2, 0.001, 0.3, 0.9, 0.5])
    table = _checks(derivatives)
    assert not table.loc[("crossmodal", "best crossmodal layer beats best visual layer"), "holds"]
    assert table.loc[("crossmodal", "best crossmodal layer beats best auditory layer"), "holds"]
    ceiling = table.loc[("crossmodal", "best crossmodal layer reaches the lower noise ceiling")]
    assert ceiling["value"] < ceiling["reference"] and not ceiling["holds"]
    control = table.loc[("control", "no layer above zero (family-wise over layers)")]
    assert control["p_adjusted"] == pytest.approx(0.005) and not control["holds"]
    # the visual region is unchanged
    assert table.loc["visual", "holds"].all()


def _checks_with_control_p(derivatives, p):
    _write(derivatives, "control", [0.0] * 6, p_zero=[0.5, 0.2, p, 0.3, 0.9, 0.5])
    return _checks(derivatives).loc[("control", "no layer above zero (family-wise over layers)")]


def test_a_missing_region_is_named(derivatives):
    for path in derivatives.glob("*_roi-control_*"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match="roi-control_desc-evaluation"):
        roi_acceptance(derivatives, task=TASK, space=SPACE)
