"""End to end on the demo data set (fast setting): the pipeline recovers the planted ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from dnnrsa.demo import groundtruth_auc


def roc_auc(scores, positive):
    """The demo's AUC of one map against one region, through its scoring function."""
    return groundtruth_auc({"map": scores}, {"region": positive}).loc["map", "region"]


def test_roc_auc_known_answers():
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1], bool)) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1], bool)) == 0.0
    assert roc_auc(np.array([1.0, 1.0, 1.0, 1.0]), np.array([0, 1, 0, 1], bool)) == 0.5
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    s, y = rng.normal(size=200), rng.random(200) > 0.7
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s))


@pytest.mark.slow
def test_fast_demo_recovers_ground_truth(fast_demo):
    result = fast_demo
    auc = result["auc"]
    print(auc.round(3).to_string())
    print({k: round(v, 1) for k, v in result["timings"].items()})
    # each part of the network maps onto the region that carries its kind of features
    for part in ("visual", "auditory", "crossmodal"):
        assert auc.loc[part, part] >= 0.9, (
            f"{part} layers: AUC {auc.loc[part, part]:.3f} in their region"
        )
    # arm relevance: the trained network needs both arms (lesions written by the participant level)
    import pandas as pd

    lesion = pd.read_csv(
        result["derivatives"] / "task-emotion_model-emotion_desc-armlesion_stats.tsv", sep="\t"
    ).set_index("arm")
    assert set(lesion.index) == {"none", "visual", "auditory"}
    intact = lesion.loc["none", "accuracy"]
    assert intact > 1 / 6 + 0.2  # well above chance on the 72 fMRI stimuli
    np.testing.assert_allclose(lesion["accuracy_drop"], intact - lesion["accuracy"], atol=1e-5)
    assert result["report"].is_file()
    html = result["report"].read_text()
    assert "data:image/png;base64," in html


@pytest.mark.slow
def test_fast_demo_roi_acceptance(fast_demo):
    """Issue 16 on the demo: the best cross-modal layer wins in the planted STS/TPJ region
    and reaches its noise ceiling, the best visual layer wins in early visual cortex, and
    no layer explains the negative control (see dnnrsa.demo.scoring.roi_acceptance).

    In STS/TPJ the emotion network's best cross-modal layer leads its best visual layer;
    with the fast setting's two participants the lead is not significant (measured:
    +0.041, adjusted p 0.088; the full demo's eight participants: +0.056, adjusted
    p 0.019). The emotion network decides mostly from the face (finding 3), so its upper
    visual layers carry nearly the emotion geometry of its cross-modal layers; this test
    holds the lead and the five other checks (docs/demo_dataset.md)."""
    import json

    import pandas as pd

    checks = fast_demo["roi_acceptance"]
    print(checks.to_string())
    deriv = fast_demo["derivatives"]
    saved = pd.read_csv(deriv / "demo_roi_acceptance.tsv", sep="\t")
    assert saved["check"].tolist() == checks["check"].tolist()
    table = checks.set_index(["roi", "check"])
    assert list(table.index) == [
        ("crossmodal", "best crossmodal layer beats best visual layer"),
        ("crossmodal", "best crossmodal layer beats best auditory layer"),
        ("crossmodal", "best crossmodal layer reaches the lower noise ceiling"),
        ("visual", "best visual layer beats best auditory layer"),
        ("visual", "best visual layer beats best crossmodal layer"),
        ("control", "no layer above zero (family-wise over layers)"),
    ]
    lead_check = ("crossmodal", "best crossmodal layer beats best visual layer")
    lead = table.loc[lead_check]
    assert lead["value"] > 0 and lead["model"].startswith("model-emotion_"), lead.to_dict()
    others = table.drop(index=[lead_check])
    failed = others[~others["holds"].astype(bool)]
    assert failed.empty, failed.to_string()
    # the fast setting's two participants: the stimuli are the random effect
    name = "task-emotion_space-MNI152NLin2009cAsym_roi-control_desc-evaluation_stats.json"
    side = json.loads((deriv / name).read_text())
    assert side["Bootstrap"] == "stimuli" and len(side["Subjects"]) == 2
    n_layers = len(list(deriv.glob("task-emotion_model-*_layer-*_rdm.tsv")))
    control = table.loc[("control", "no layer above zero (family-wise over layers)")]
    assert control["reference"] == n_layers  # every layer of every network is tested
