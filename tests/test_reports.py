"""Tests of the HTML reports, on a derivatives folder computed in a fixture.

The fixture writes what the participant and group levels write, with real
computations on seeded data: 72 stimuli (6 actors x 6 emotions x 2 sentences),
29 layer RDMs from random features with planted emotion and identity structure,
the DNN analysis tables computed from those RDMs, subject searchlight maps on an
8 mm MNI grid with a planted blob per network part, and group maps from a
one-sample sign-flip permutation test of those subject maps.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from dnnrsa.rdm import compare_rdms, compute_rdm, read_rdm_tsv, write_rdm_tsv
from dnnrsa.reports import build_group_report, build_subject_report, condition_order

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")

TASK = "emo"
SPACE = "MNI152NLin2009cAsym"
SUBJECTS = [f"{i:02d}" for i in range(1, 7)]
EMOTIONS = ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
LAYERS = [
    *[
        ("visual", n)
        for n in (
            "conv1_1",
            "conv1_2",
            "pool1",
            "conv2_1",
            "conv2_2",
            "pool2",
            "conv3_1",
            "conv3_2",
            "conv3_3",
            "pool3",
            "conv4_1",
            "excitatory",
            "inhibitory",
            "shunting",
            "pool4",
        )
    ],
    *[
        ("auditory", n)
        for n in ("conv1_1", "conv1_2", "pool1", "excitatory", "inhibitory", "shunting", "pool2")
    ],
    *[
        ("crossmodal", n)
        for n in ("visual_dense", "auditory_dense", "stack", "conv", "pool", "dense", "output")
    ],
]
# Peak of each part's planted searchlight effect (mm, MNI): occipital, auditory, STS.
BLOB_MM = {
    "visual": (24.0, -88.0, 0.0),
    "auditory": (-50.0, -22.0, 8.0),
    "crossmodal": (56.0, -40.0, 8.0),
}
# The layer of each part with the strongest planted effect.
BEST = {"visual": "visualpool4", "auditory": "auditorypool2", "crossmodal": "crossmodaldense"}
GROUP_CONFIG_TOML = """# dnnrsa group run configuration
analysis_level = "group"
n_permutations = 64
"""
CONFIG_TOML = """# dnnrsa run configuration
[analysis]
metric = "correlation"
comparator = "spearman"
radius_mm = 6.0
n_permutations = 64
seed = 20261126
"""
GROUP_SECTIONS = {
    "overview": "Overview",
    "groupmaps": "Group maps",
    "clusters": "Cluster tables",
    "winner": "Winning layer",
}
SUBJECT_SECTIONS = {"overview": "Overview", "searchlight": "Searchlight maps"}
MODEL_SECTIONS = {
    "stimuli": "Stimuli",
    "rdms": "Layer RDMs",
    "mds": "MDS of stimuli",
    "categoryindex": "Category index",
    "layersimilarity": "Layer-by-layer similarity",
    "armrelevance": "Arm relevance",
    "config": "Run configuration",
}


# --------------------------------------------------------------------------- derivatives
def _label(part: str, name: str) -> str:
    return (part + name).replace("_", "")


def _stimuli(rng):
    import pandas as pd

    rows = [
        {
            "stim_file": f"actor{a:02d}_{emo}_s{s}.mp4",
            "emotion": emo,
            "identity": f"actor{a:02d}",
            "gender": "male" if a % 2 else "female",
            "sentence": f"s{s}",
        }
        for a in range(1, 7)
        for emo in EMOTIONS
        for s in (1, 2)
    ]
    # A shuffled order: the RDM condition order is the table's, not sorted by any label.
    return pd.DataFrame(rows).iloc[rng.permutation(len(rows))].reset_index(drop=True)


def _strengths(part: str, depth: float, regime: str) -> tuple[float, float]:
    """Planted (emotion, identity) signal of a layer at relative depth 0..1 in its part."""
    emotion = {
        "visual": 0.3 + 0.6 * depth,
        "auditory": 0.6 + 0.6 * depth,
        "crossmodal": 1.2 + 0.8 * depth,
    }[part]
    identity = {"visual": 1.2 - 0.4 * depth, "auditory": 0.5, "crossmodal": 0.6 - 0.4 * depth}[part]
    return (emotion, identity) if regime == "emotion" else (identity, emotion)


def _category_index(rdm, codes, n_perm, rng):
    iu, ju = np.triu_indices(len(codes), 1)
    perms = np.vstack([codes] + [rng.permutation(codes) for _ in range(n_perm)])
    same = perms[:, iu] == perms[:, ju]
    within = (same @ rdm) / same.sum(1)
    between = ((~same) @ rdm) / (~same).sum(1)
    ci = (between - within) / (rdm.max() - rdm.min())
    return ci[0], (1 + np.sum(ci[1:] >= ci[0])) / (1 + n_perm)


def _nearest_centroid_accuracy(features, labels):
    """Leave-one-out nearest class mean accuracy."""
    cats = sorted(set(labels))
    codes = np.array([cats.index(x) for x in labels])
    correct = 0
    for i in range(len(codes)):
        keep = np.arange(len(codes)) != i
        means = np.vstack([features[keep & (codes == c)].mean(0) for c in range(len(cats))])
        correct += int(np.argmin(((means - features[i]) ** 2).sum(1)) == codes[i])
    return correct / len(codes)


def _r2(y, x):
    design = np.column_stack([np.ones(len(y)), x])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    return 1 - resid @ resid / np.sum((y - y.mean()) ** 2)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2))


def _write_model(root: Path, model: str, stimuli, rng) -> dict[str, np.ndarray]:
    """Layer features and RDMs of one training regime; analysis tables from the RDMs."""
    import pandas as pd

    emo_codes = stimuli["emotion"].map({e: i for i, e in enumerate(EMOTIONS)}).to_numpy()
    id_codes = stimuli["identity"].str[-2:].astype(int).to_numpy() - 1
    n_features = 48
    proto_emo = rng.standard_normal((6, n_features))
    proto_id = rng.standard_normal((6, n_features))
    features, rdms = {}, []
    counts = {p: sum(1 for q, _ in LAYERS if q == p) for p in BLOB_MM}
    seen = dict.fromkeys(BLOB_MM, 0)
    for index, (part, name) in enumerate(LAYERS):
        depth = seen[part] / (counts[part] - 1)
        seen[part] += 1
        a_emo, a_id = _strengths(part, depth, model)
        feats = (
            rng.standard_normal((72, n_features))
            + a_emo * proto_emo[emo_codes]
            + a_id * proto_id[id_codes]
        )
        label = _label(part, name)
        features[label] = feats
        rdm = compute_rdm(feats, "correlation")
        rdms.append(rdm)
        stem = root / f"task-{TASK}_model-{model}_layer-{label}_rdm"
        write_rdm_tsv(stem.with_suffix(".tsv"), rdm, list(stimuli["stim_file"]))
        _write_json(
            stem.with_suffix(".json"),
            {
                "LayerName": f"{part}.{name}",
                "Part": part,
                "LayerIndex": index,
                "Conditions": list(stimuli["stim_file"]),
                "Metric": "correlation",
            },
        )
    rdms = np.vstack(rdms)
    labels = [_label(p, n) for p, n in LAYERS]
    parts = [p for p, _ in LAYERS]

    rows = []
    for i, layer in enumerate(labels):
        for label_set in ("emotion", "identity", "gender", "sentence"):
            codes = np.unique(stimuli[label_set].to_numpy(), return_inverse=True)[1]
            ci, p = _category_index(rdms[i], codes, 99, rng)
            rows.append(
                {
                    "layer": layer,
                    "part": parts[i],
                    "label_set": label_set,
                    "index": ci,
                    "p_value": p,
                }
            )
    pd.DataFrame(rows).to_csv(
        root / f"task-{TASK}_model-{model}_desc-categoryindex_stats.tsv", sep="\t", index=False
    )

    similarity = np.asarray(compare_rdms(rdms, rdms, "spearman"))
    pd.DataFrame(similarity, index=labels, columns=labels).rename_axis("layer").to_csv(
        root / f"task-{TASK}_model-{model}_desc-layersimilarity_matrix.tsv", sep="\t"
    )

    # Arm outputs seen through extra noise, so that accuracy is not at ceiling.
    visual = features["visualpool4"] + rng.normal(0.0, 4.0, (72, n_features))
    auditory = features["auditorypool2"] + rng.normal(0.0, 4.0, (72, n_features))
    target = list(stimuli[model])
    both = np.hstack([visual, auditory])
    base = _nearest_centroid_accuracy(both, target)
    lesion = []
    for arm, feats in (
        ("none", both),
        ("visual", np.hstack([0 * visual, auditory])),
        ("auditory", np.hstack([visual, 0 * auditory])),
    ):
        acc = _nearest_centroid_accuracy(feats, target)
        lesion.append({"arm": arm, "accuracy": acc, "accuracy_drop": base - acc})
    pd.DataFrame(lesion).to_csv(
        root / f"task-{TASK}_model-{model}_desc-armlesion_stats.tsv", sep="\t", index=False
    )

    rdm_v, rdm_a = rdms[labels.index("visualpool4")], rdms[labels.index("auditorypool2")]
    var_rows = []
    for i, layer in enumerate(labels):
        if parts[i] != "crossmodal":
            continue
        full = _r2(rdms[i], np.column_stack([rdm_v, rdm_a]))
        r2v, r2a = _r2(rdms[i], rdm_v), _r2(rdms[i], rdm_a)
        var_rows.append(
            {
                "layer": layer,
                "unique_visual": full - r2a,
                "unique_auditory": full - r2v,
                "shared": r2v + r2a - full,
            }
        )
    pd.DataFrame(var_rows).to_csv(
        root / f"task-{TASK}_model-{model}_desc-varpart_stats.tsv", sep="\t", index=False
    )
    return dict(zip(labels, rdms, strict=True))


def _mask_8mm():
    from nilearn import datasets, image

    mask = datasets.load_mni152_brain_mask(resolution=2)
    return image.resample_img(
        mask,
        target_affine=np.diag([8.0, 8.0, 8.0]),
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )


def _blob(mask_img, centre_mm, sigma_mm=10.0):
    shape = mask_img.shape
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    xyz = ijk @ mask_img.affine[:3, :3].T + mask_img.affine[:3, 3]
    d2 = np.sum((xyz - np.asarray(centre_mm)) ** 2, -1)
    return np.exp(-d2 / (2 * sigma_mm**2))


def _write_maps(root: Path, rng) -> None:
    """Subject maps with planted blobs; group t/z/FWE-p maps, clusters and winner map."""
    import nibabel as nib
    import pandas as pd
    from scipy import ndimage, stats

    mask_img = _mask_8mm()
    mask = mask_img.get_fdata() > 0
    affine = mask_img.affine
    blobs = {p: _blob(mask_img, c) for p, c in BLOB_MM.items()}
    layers = [(p, n, _label(p, n)) for p, n in LAYERS] + [("model", "emotion", "emotionmodel")]
    depth = {}
    for part in BLOB_MM:
        names = [lab for p, _, lab in layers if p == part]
        best = names.index(BEST[part])
        # The best layer stands out; the others fall off with distance from it.
        depth.update(
            {
                lab: 1.0 if i == best else 0.3 * (1 - abs(i - best) / len(names))
                for i, lab in enumerate(names)
            }
        )
    depth["emotionmodel"] = 0.7
    scores = {}
    for subject in SUBJECTS:
        func = root / f"sub-{subject}" / "func"
        func.mkdir(parents=True)
        for part, name, label in layers:
            blob = blobs["crossmodal" if part == "model" else part]
            strength = 0.05 + 0.25 * depth[label]
            data = rng.normal(0.0, 0.04, mask.shape) + strength * blob
            data[~mask] = 0.0
            scores.setdefault(label, []).append(data)
            model = "emotionmodel" if part == "model" else "emotion"
            entity = "" if part == "model" else f"_layer-{label}"
            stem = func / (
                f"sub-{subject}_task-{TASK}_space-{SPACE}_model-{model}{entity}"
                "_stat-spearman_statmap"
            )
            nib.save(nib.Nifti1Image(data.astype(np.float32), affine), f"{stem}.nii.gz")
            _write_json(
                Path(f"{stem}.json"),
                {
                    "LayerName": f"{part}.{name}",
                    "Part": part,
                    "Comparator": "spearman",
                    "Metric": "correlation",
                    "RadiusMm": 6.0,
                },
            )
    # Group: Fisher z, one-sample t, exhaustive sign flips (2^6) with the max statistic.
    n = len(SUBJECTS)
    flips = np.array([[1 if (k >> b) & 1 == 0 else -1 for b in range(n)] for k in range(2**n)])
    winner_z = []
    for part, name, label in layers:
        fz = np.arctanh(np.stack(scores[label])[:, mask])
        t = fz.mean(0) / (fz.std(0, ddof=1) / np.sqrt(n))
        null_max = []
        for sign in flips:
            x = fz * sign[:, None]
            null_max.append(np.max(x.mean(0) / (x.std(0, ddof=1) / np.sqrt(n))))
        null_max = np.asarray(null_max)
        p_fwe = (null_max[None, :] >= t[:, None]).mean(1)
        z = stats.norm.isf(stats.t.sf(t, n - 1))
        model = "emotionmodel" if part == "model" else "emotion"
        stem = f"task-{TASK}_space-{SPACE}_model-{model}" + (
            "" if part == "model" else f"_layer-{label}"
        )
        vols = {}
        for stat, values, outside in (("t", t, 0.0), ("z", z, 0.0), ("p", p_fwe, 1.0)):
            vol = np.full(mask.shape, outside, dtype=np.float32)
            vol[mask] = values
            vols[stat] = vol
            nib.save(nib.Nifti1Image(vol, affine), root / f"{stem}_stat-{stat}_statmap.nii.gz")
            _write_json(
                root / f"{stem}_stat-{stat}_statmap.json",
                {"LayerName": f"{part}.{name}", "Part": part, "Statistic": stat},
            )
        significant = (vols["p"] < 0.05) & mask
        clusters, n_clusters = ndimage.label(significant)
        rows = []
        for c in range(1, n_clusters + 1):
            inside = clusters == c
            peak = np.unravel_index(np.argmax(np.where(inside, vols["z"], -np.inf)), mask.shape)
            x, y, zc = (affine @ np.r_[peak, 1.0])[:3]
            rows.append(
                {
                    "cluster_id": c,
                    "peak_x": x,
                    "peak_y": y,
                    "peak_z": zc,
                    "size_voxels": int(inside.sum()),
                    "peak_stat": vols["z"][peak],
                    "label": "right hemisphere" if x > 0 else "left hemisphere",
                }
            )
        pd.DataFrame(
            rows,
            columns=[
                "cluster_id",
                "peak_x",
                "peak_y",
                "peak_z",
                "size_voxels",
                "peak_stat",
                "label",
            ],
        ).to_csv(root / f"{stem}_clusters.tsv", sep="\t", index=False)
        if part != "model":
            winner_z.append(np.where(significant, vols["z"], -np.inf))
    winner_z = np.stack(winner_z)
    # 0-based index into "Layers"; -1 where no layer is significant.
    winner = np.where(np.isfinite(winner_z.max(0)), winner_z.argmax(0), -1)
    stem = f"task-{TASK}_space-{SPACE}_model-emotion_desc-winner_statmap"
    nib.save(nib.Nifti1Image(winner.astype(np.int16), affine), root / f"{stem}.nii.gz")
    _write_json(root / f"{stem}.json", {"Layers": [lab for p, _, lab in layers if p != "model"]})


def build_derivatives(root: Path, seed: int = 20261126) -> Path:
    """Write a complete derivatives folder under ``root`` (see the module docstring)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    _write_json(
        root / "dataset_description.json",
        {
            "Name": "dnnrsa test derivatives",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "dnnrsa", "Version": "test"}],
        },
    )
    (root / "dnnrsa_config.toml").write_text(CONFIG_TOML)
    (root / "dnnrsa_group_config.toml").write_text(GROUP_CONFIG_TOML)
    stimuli = _stimuli(rng)
    stimuli.to_csv(root / f"task-{TASK}_stimuli.tsv", sep="\t", index=False)
    _write_model(root, "emotion", stimuli, rng)
    _write_model(root, "identity", stimuli, rng)
    # Same emotion 0, different 1.
    codes = pd.factorize(stimuli["emotion"])[0]
    iu, ju = np.triu_indices(72, 1)
    # A user-supplied model RDM (a model without layers: no layer entity).
    stem = root / f"task-{TASK}_model-emotionmodel_rdm"
    write_rdm_tsv(
        stem.with_suffix(".tsv"), (codes[iu] != codes[ju]).astype(float), list(stimuli["stim_file"])
    )
    _write_json(
        stem.with_suffix(".json"),
        {"LayerName": "emotion", "Part": "model", "LayerIndex": 0, "Metric": "categorical"},
    )
    _write_maps(root, rng)
    return root


class _Page(HTMLParser):
    """Sections (id -> h2 text), images (src, alt, data-file, section) and <pre> text."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.pre, self.notes = {}, [], [], {}
        self._section = None
        self._capture = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs.get("id")
        elif tag == "h2":
            self._capture = ("h2", [])
        elif tag == "pre":
            self._capture = ("pre", [])
        elif tag == "p" and attrs.get("class") == "note":
            self._capture = ("note", [])
        elif tag == "img":
            self.images.append({**attrs, "section": self._section})

    def handle_data(self, data):
        if self._capture:
            self._capture[1].append(data)

    def handle_endtag(self, tag):
        if self._capture and tag in ("h2", "pre", "p"):
            kind, text = self._capture
            text = "".join(text)
            if kind == "h2":
                self.sections[self._section] = text
            elif kind == "pre":
                self.pre.append(text)
            else:
                self.notes.setdefault(self._section, []).append(text)
            self._capture = None


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = build_derivatives(tmp_path_factory.mktemp("derivatives") / "dnnrsa")
    start = time.perf_counter()
    subject = build_subject_report(root, "sub-01", task=TASK, space=SPACE)
    t_subject = time.perf_counter() - start
    start = time.perf_counter()
    group = build_group_report(root, task=TASK, space=SPACE)
    t_group = time.perf_counter() - start
    print(
        f"\nreport build time (29 layers x 2 models, 72 stimuli): subject {t_subject:.1f} s "
        f"(first, draws the shared figures), group {t_group:.1f} s"
    )
    return root, subject, group


# --------------------------------------------------------------------------- ordering
def test_condition_order_known_answer():
    labels = {
        "emotion": ["sad", "happy", "sad", "happy", "angry", "sad"],
        "identity": ["a2", "a1", "a1", "a2", "a1", "a2"],
    }
    # Categories in order of first appearance: sad, happy, angry; ties by identity (a2, a1).
    assert condition_order(labels, "emotion").tolist() == [0, 2, 5, 1, 3, 4]
    assert condition_order(labels, ["emotion", "identity"]).tolist() == [0, 5, 2, 3, 1, 4]
    assert condition_order(labels, ["identity", "emotion"]).tolist() == [0, 5, 3, 2, 1, 4]


def test_condition_order_rejects_unknown_label_set():
    with pytest.raises(ValueError, match="'colour'"):
        condition_order({"emotion": ["a", "b"]}, "colour")


def test_rdm_order_follows_stimulus_table_and_groups_emotions(reports):
    from dnnrsa.reports.discovery import aligned_labels as _aligned_labels
    from dnnrsa.reports.discovery import read_stimuli as _read_stimuli

    root, _, _ = reports
    stimuli = _read_stimuli(root, TASK)
    vec, conditions = read_rdm_tsv(
        root / f"task-{TASK}_model-emotion_layer-crossmodaldense_rdm.tsv"
    )
    assert conditions == list(stimuli["stim_file"])
    # The stored order is shuffled, so ordering is not a no-op.
    assert list(stimuli["emotion"]) != sorted(stimuli["emotion"], key=EMOTIONS.index)
    labels = _aligned_labels(stimuli, conditions)
    order = condition_order(labels, ["emotion", "identity"])
    emotions = labels["emotion"].to_numpy()[order]
    blocks = [emotions[i * 12 : (i + 1) * 12] for i in range(6)]
    assert all(len(set(b)) == 1 for b in blocks)
    assert [b[0] for b in blocks] == list(dict.fromkeys(stimuli["emotion"]))
    # The planted emotion structure shows as low-dissimilarity diagonal blocks.
    from scipy.spatial.distance import squareform

    square = squareform(vec)[np.ix_(order, order)]
    same = np.kron(np.eye(6), np.ones((12, 12))).astype(bool) & ~np.eye(72, dtype=bool)
    assert square[same].mean() < 0.7 * square[~same & ~np.eye(72, dtype=bool)].mean()


def test_labels_follow_rdm_conditions_not_table_rows(reports):
    from dnnrsa.reports.discovery import aligned_labels as _aligned_labels
    from dnnrsa.reports.discovery import read_stimuli as _read_stimuli

    root, _, _ = reports
    stimuli = _read_stimuli(root, TASK)
    reversed_conditions = [Path(f).stem for f in stimuli["stim_file"]][::-1]
    labels = _aligned_labels(stimuli, reversed_conditions)
    assert list(labels["emotion"]) == list(stimuli["emotion"])[::-1]


def test_labels_of_conditions_from_trial_type_follow_the_rdm_order():
    """Conditions from trial_type (a localiser: one stimulus per category): the RDM rows are
    the conditions in the order the RDM was computed, which is not the order of the stimuli
    table sorted by stim_file; every label must follow the RDM."""
    import pandas as pd

    from dnnrsa.reports.discovery import aligned_labels as _aligned_labels

    stimuli = pd.DataFrame(
        {
            "stim_file": ["a.png", "b.png", "c.png"],
            "trial_type": ["scramble", "face", "scene"],
            "condition": ["scramble", "face", "scene"],
            "kind": ["control", "object", "object"],
        }
    )
    conditions = ["face", "scene", "scramble"]  # the RDM's order
    labels = _aligned_labels(stimuli, conditions)
    assert list(labels["condition"]) == conditions
    assert list(labels["kind"]) == ["object", "object", "control"]


# --------------------------------------------------------------------------- HTML content
@pytest.mark.parametrize("which", ["subject", "group"])
def test_every_section_present_with_figures(reports, which):
    root, subject, group = reports
    path = subject if which == "subject" else group
    expected = {**(SUBJECT_SECTIONS if which == "subject" else GROUP_SECTIONS), **MODEL_SECTIONS}
    page = _parse(path)
    assert page.sections == expected
    with_images = {img["section"] for img in page.images}
    needs_images = set(expected) - {"overview", "stimuli", "config", "clusters"}
    assert needs_images <= with_images
    # Every section had its inputs: no "omitted" note anywhere.
    assert not any("omitted" in n for notes in page.notes.values() for n in notes), page.notes


@pytest.mark.parametrize("which", ["subject", "group"])
def test_images_are_embedded_pngs_matching_saved_files(reports, which):
    from PIL import Image

    root, subject, group = reports
    page = _parse(subject if which == "subject" else group)
    assert len(page.images) >= 12
    for img in page.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        data = base64.b64decode(img["src"][len(prefix) :], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = Image.open(io.BytesIO(data)).size
        assert width >= 300 and height >= 150
        saved = root / img["data-file"]
        assert saved.parent == root / "figures"
        assert saved.read_bytes() == data
        assert img["alt"]


def test_report_has_no_external_resources(reports):
    _, subject, group = reports
    for path in (subject, group):
        text = path.read_text()
        for bad in ("http://", "https://", "<script", '<link rel="stylesheet"', "@import", "url("):
            assert bad not in text, (path.name, bad)


def test_selected_layers_are_the_planted_best(reports):
    root, _, _ = reports
    figures = {p.name for p in (root / "figures").iterdir()}
    for label in BEST.values():
        assert (
            f"sub-01_task-{TASK}_space-{SPACE}_model-emotion_layer-{label}"
            f"_stat-spearman_desc-searchlight_figure.png"
        ) in figures
        assert (
            f"task-{TASK}_space-{SPACE}_model-emotion_layer-{label}_stat-z_desc-groupmap_figure.png"
        ) in figures
    drawn = [f for f in figures if f.startswith("sub-01") and f.endswith("searchlight_figure.png")]
    assert len(drawn) == 4  # best of 3 parts + the user model's map; not all 29 layers
    for name in (
        "desc-rdmsbyemotion",
        "desc-rdmsbyidentity",
        "desc-mds",
        "desc-categoryindex",
        "desc-layersimilarity",
        "desc-armrelevance",
    ):
        for model in ("emotion", "identity"):
            assert f"task-{TASK}_model-{model}_{name}_figure.png" in figures
    assert f"task-{TASK}_space-{SPACE}_model-emotion_desc-winner_figure.png" in figures


def test_requested_layers_are_drawn_too(reports):
    root, _, _ = reports
    path = build_subject_report(
        root, "02", task=TASK, space=SPACE, model="emotion", layers=["visual.conv1_1"]
    )
    page = _parse(path)
    drawn = sorted(
        img["data-file"]
        for img in page.images
        if img["data-file"].endswith("searchlight_figure.png")
    )
    expected = [
        f"figures/sub-02_task-{TASK}_space-{SPACE}_model-emotion_layer-{label}"
        "_stat-spearman_desc-searchlight_figure.png"
        for label in ("auditorypool2", "crossmodaldense", "visualconv11", "visualpool4")
    ]
    assert drawn == expected  # model= leaves out the user model's map
    assert "identity" not in {img["data-file"].split("_model-")[-1][:8] for img in page.images}


def test_configuration_and_cluster_tables_shown(reports):
    import pandas as pd

    root, subject, group = reports
    for path in (subject, group):
        assert CONFIG_TOML in _parse(path).pre
    assert GROUP_CONFIG_TOML in _parse(group).pre
    assert "dnnrsa_group_config.toml" not in subject.read_text()
    text = group.read_text()
    table = pd.read_csv(
        root / f"task-{TASK}_space-{SPACE}_model-emotion_layer-crossmodaldense_clusters.tsv",
        sep="\t",
    )
    assert len(table) >= 1
    top = table.iloc[0]
    assert f"<td>{int(top.peak_x)}</td><td>{int(top.peak_y)}</td>" in text
    assert f"crossmodal.dense ({len(table)} clusters)" in text
    # The planted crossmodal effect sits in the right hemisphere near its centre.
    best = table.sort_values("peak_stat").iloc[-1]
    assert np.hypot(best.peak_x - 56.0, best.peak_y + 40.0) <= 16.0


def test_missing_inputs_give_notes_not_errors(tmp_path):
    import pandas as pd

    root = tmp_path / "out"
    (root / "sub-01" / "func").mkdir(parents=True)
    stimuli = pd.DataFrame(
        {"stim_file": [f"s{i}.mp4" for i in range(6)], "emotion": ["<b>x</b>", "y"] * 3}
    )
    stimuli.to_csv(root / "task-t_stimuli.tsv", sep="\t", index=False)
    rng = np.random.default_rng(0)
    write_rdm_tsv(
        root / "task-t_model-net_layer-a_rdm.tsv",
        compute_rdm(rng.standard_normal((6, 10))),
        list(stimuli["stim_file"]),
    )
    _write_json(
        root / "task-t_model-net_layer-a_rdm.json",
        {"LayerName": "net.a", "Part": "visual", "LayerIndex": 0},
    )
    for build in (
        lambda: build_subject_report(root, "01", task="t", space="x"),
        lambda: build_group_report(root, task="t", space="x"),
    ):
        page = _parse(build())
        notes = {sid: " ".join(n) for sid, n in page.notes.items()}
        for sid in ("categoryindex", "layersimilarity", "armrelevance", "config"):
            assert "omitted" in notes[sid]
        assert {img["section"] for img in page.images} == {"rdms", "mds"}
    text = (root / "group.html").read_text()
    assert "omitted" in " ".join(_parse(root / "group.html").notes["groupmaps"])
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text


def test_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="output_dir"):
        build_group_report(tmp_path / "nope", task="t", space="x")
    with pytest.raises(ValueError, match="task must be"):
        build_group_report(tmp_path, task="a_b", space="x")
    with pytest.raises(FileNotFoundError, match="sub-02"):
        build_subject_report(tmp_path, "02", task="t", space="x")


# --------------------------------------------------------------------------- browser
class _DevTools:
    """Minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, url: str):
        import websocket

        self.ws = websocket.create_connection(url, timeout=120, suppress_origin=True)
        self.events: list[dict] = []
        self._id = 0

    def call(self, method: str, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout_s: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout_s
        for k, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(k)
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("method") == method:
                return message
            self.events.append(message)
        raise TimeoutError(method)

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(str(params.get("args")))
            elif method == "Runtime.exceptionThrown":
                found.append(str(params.get("exceptionDetails")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(str(params["entry"]))
        return found


_PAGE_STATE_JS = """
(async () => {
  await Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)));
  return JSON.stringify({
    images: Array.from(document.images).map(i => ({
      complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,
      shown: i.getBoundingClientRect().width,
      section: i.closest('section') ? i.closest('section').id : null})),
    sections: Array.from(document.querySelectorAll('section')).map(s => ({
      id: s.id, heading: s.querySelector('h2').textContent,
      height: s.getBoundingClientRect().height})),
    width: document.documentElement.scrollWidth});
})()
"""


def _open_chromium(profile: Path):
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian chromium is not installed (/usr/bin/chromium); "
            "scripts/install_system_deps.sh installs it"
        )
    pytest.importorskip("websocket", reason="websocket-client is needed to drive chromium")
    proc = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            "--window-size=1280,4000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("chromium did not start its DevTools endpoint")
        time.sleep(0.2)
    port = int(port_file.read_text().split()[0])
    return proc, port


def _page_socket(port: int) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.load(r)
            return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        except (OSError, StopIteration):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_reports_render_in_headless_chromium(reports):
    root, subject, group = reports
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    proc, port = _open_chromium(profile)
    try:
        tools = _DevTools(_page_socket(port))
        tools.call("Page.enable")
        tools.call("Runtime.enable")
        tools.call("Log.enable")
        tools.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=4000,
            deviceScaleFactor=1,
            mobile=False,
        )
        for which, path in (("subject", subject), ("group", group)):
            tools.events.clear()
            tools.call("Page.navigate", url=path.resolve().as_uri())
            tools.wait_for("Page.loadEventFired")
            result = tools.call(
                "Runtime.evaluate", expression=_PAGE_STATE_JS, awaitPromise=True, returnByValue=True
            )
            state = json.loads(result["result"]["value"])
            expected = {
                **(SUBJECT_SECTIONS if which == "subject" else GROUP_SECTIONS),
                **MODEL_SECTIONS,
            }
            assert {s["id"]: s["heading"] for s in state["sections"]} == expected
            assert all(s["height"] > 30 for s in state["sections"]), state["sections"]
            assert len(state["images"]) == len(_parse(path).images)
            broken = [i for i in state["images"] if not i["complete"] or i["width"] == 0]
            assert not broken, broken
            assert all(i["shown"] > 100 for i in state["images"])
            assert state["width"] <= 1280  # no horizontal overflow
            assert not tools.errors(), tools.errors()
            metrics = tools.call("Page.getLayoutMetrics")
            height = int(min(metrics["cssContentSize"]["height"], 16000))
            tools.call(
                "Emulation.setDeviceMetricsOverride",
                width=1280,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            ARTIFACTS.mkdir(exist_ok=True)
            name = "report_screenshot.png" if which == "group" else "report_screenshot_subject.png"
            target = ARTIFACTS / name
            target.write_bytes(base64.b64decode(shot["data"]))
            print(f"\nscreenshot of the {which} report: {target}")
            tools.call(
                "Emulation.setDeviceMetricsOverride",
                width=1280,
                height=4000,
                deviceScaleFactor=1,
                mobile=False,
            )
        tools.ws.close()
    except binascii.Error as exc:  # pragma: no cover - a corrupt screenshot
        pytest.fail(f"screenshot is not base64: {exc}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
    assert os.path.getsize(ARTIFACTS / "report_screenshot.png") > 10_000


def test_subject_reports_built_side_by_side_equal_those_built_one_by_one(tmp_path):
    """The participant level builds the first report here and the others in worker
    processes; the pages and figures are the same as when built one after the other."""
    from types import SimpleNamespace

    from dnnrsa.bids_app.participant import build_subject_reports

    subjects = {s: SimpleNamespace(task=TASK, space=SPACE) for s in SUBJECTS[:3]}
    pages = {}
    for nprocs in (1, 2):
        root = build_derivatives(tmp_path / f"nprocs{nprocs}" / "dnnrsa")
        config = SimpleNamespace(fwe_alpha=0.05, nprocs=nprocs, output_dir=root)
        build_subject_reports(config, subjects)
        pages[nprocs] = {  # the folder and the footer's time of day aside
            path.relative_to(root).as_posix(): re.sub(
                rb" on \d{4}-\d\d-\d\d \d\d:\d\d ",
                b" on DATE ",
                path.read_bytes().replace(str(root).encode(), b"ROOT"),
            )
            for path in sorted(root.rglob("*"))
            if path.suffix in (".html", ".png")
        }
    assert sum(name.endswith(".html") for name in pages[1]) == 3
    assert sorted(pages[2]) == sorted(pages[1])
    assert [name for name in pages[1] if pages[1][name] != pages[2][name]] == []


@pytest.mark.parametrize("template_space", [True, False])
def test_an_empty_map_is_drawn_without_a_warning(template_space):
    """A map with nothing to show (all NaN, all zero, or nothing beyond the threshold) is
    a result, drawn as an empty brain: no library warning reaches the console (nor for a
    map with a voxel beyond the threshold)."""
    import warnings

    import nibabel as nib

    from dnnrsa.reports.brain_figures import brain_map_figure

    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    below = np.zeros((9, 9, 9), np.float32)
    below[2, 3, 4] = 0.5
    maps = [np.full((9, 9, 9), np.nan, np.float32), np.zeros((9, 9, 9), np.float32), below]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for data in maps:
            fig = brain_map_figure(
                nib.Nifti1Image(data, affine),
                title="m",
                threshold=1.0,
                template_space=template_space,
            )
            assert fig.axes
        above = below * 4
        fig = brain_map_figure(
            nib.Nifti1Image(above, affine), title="m", threshold=1.0, template_space=template_space
        )
    assert "m" in fig.texts[0].get_text()
