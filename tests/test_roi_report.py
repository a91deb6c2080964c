"""The regions-of-interest section of the group report, on a group ROI run of the app and
on a hand-written derivatives folder with the layers of a network."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dnnrsa.rdm import read_rdm_tsv, write_rdm_tsv
from dnnrsa.reports import build_group_report

STEM = "task-cat_space-native_roi-centre"


class _RoiPage(HTMLParser):
    """Section ids and headings, images by section, and the cells of the ROI tables."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.tables, self.h3 = {}, [], [], []
        self._section = self._capture = None
        self._row = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs.get("id")
        elif tag in ("h2", "h3", "th", "td"):
            self._capture = []
        elif tag == "img":
            self.images.append({**attrs, "section": self._section})
        elif tag == "table" and self._section == "roi":
            self.tables.append([])
        elif tag == "tr" and self._section == "roi":
            self._row = []

    def handle_data(self, data):
        if self._capture is not None:
            self._capture.append(data)

    def handle_endtag(self, tag):
        if tag in ("h2", "h3", "th", "td") and self._capture is not None:
            text = "".join(self._capture)
            self._capture = None
            if tag == "h2":
                self.sections[self._section] = text
            elif tag == "h3" and self._section == "roi":
                self.h3.append(text)
            elif self._row is not None:
                self._row.append(text)
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None


def _parse(path: Path) -> _RoiPage:
    page = _RoiPage()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def roi_out(roi_group_run, tmp_path_factory):
    """A copy of the shared group ROI run (conftest.roi_group_run: 6 participants, 200
    samples), where the tests build their reports."""
    _small, rc, shared = roi_group_run
    assert rc == 0
    out = tmp_path_factory.mktemp("roireport") / "out"
    shutil.copytree(shared, out, symlinks=True)
    assert (out / f"{STEM}_desc-evaluation_stats.tsv").is_file()
    return out


def _cell(value) -> str:
    """A number as the report's tables show it."""
    from dnnrsa.reports.render import _format_cell

    return _format_cell(value)[0]


def test_group_page_has_the_roi_section_with_its_figures_and_table(roi_out):
    page = _parse(build_group_report(roi_out, task="cat", space="native"))
    assert page.sections["roi"] == "Regions of interest"
    ids = list(page.sections)
    assert ids.index("winner") < ids.index("roi") < ids.index("stimuli")
    assert page.h3 == ["region centre"]
    files = {img["data-file"] for img in page.images if img["section"] == "roi"}
    assert files == {
        f"figures/{STEM}_desc-evaluation_figure.png",
        f"figures/{STEM}_desc-rdms_figure.png",
    }
    assert all((roi_out / f).is_file() for f in files)
    # the evaluation table: the TSV's rows, best first, every value as in the file
    table = pd.read_csv(roi_out / f"{STEM}_desc-evaluation_stats.tsv", sep="\t")
    expected = table.sort_values("mean", ascending=False)
    header, *rows = page.tables[0]
    assert header == list(table.columns)
    assert len(rows) == len(table) == 2
    for row, (_, want) in zip(rows, expected.iterrows(), strict=True):
        assert row == [want["model"], *(_cell(want[c]) for c in table.columns[1:])]
    assert rows[0][0] == "model-category"  # the planted geometry is the best model
    # the weighted models follow
    weighted = pd.read_csv(roi_out / f"{STEM}_desc-weighted_stats.tsv", sep="\t")
    assert page.tables[1][0] == list(weighted.columns)
    assert page.tables[1][1][0] == weighted.loc[0, "model"]
    assert _cell(weighted.loc[0, "cv_mean"]) in page.tables[1][1]


def test_roi_rdm_is_the_mean_of_the_participants(roi_out):
    from dnnrsa.reports.discovery import open_context
    from dnnrsa.reports.render import FigureStore
    from dnnrsa.reports.roi_sections import roi_mean_rdm, roi_names

    ctx = open_context(roi_out, "cat", "native", None, None, FigureStore(roi_out, False))
    assert roi_names(ctx) == ["centre"]
    vector, conditions, files = roi_mean_rdm(ctx, "centre")
    subjects = sorted(roi_out.glob("sub-*/func/*_roi-centre_rdm.tsv"))
    assert files == subjects and len(files) == 6
    rdms = [read_rdm_tsv(f) for f in subjects]
    assert all(labels == conditions for _, labels in rdms)
    np.testing.assert_allclose(vector, np.mean([v for v, _ in rdms], axis=0), atol=1e-15)


def test_no_roi_section_without_roi_tables(roi_out, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(roi_out, copy, ignore=shutil.ignore_patterns("*_roi-*_stats.*", "figures"))
    page = _parse(build_group_report(copy, task="cat", space="native"))
    assert "roi" not in page.sections
    assert not (copy / "figures" / f"{STEM}_desc-evaluation_figure.png").exists()


# --------------------------------------------------------------------------- a network's layers
def _write(path: Path, vector, labels, meta) -> None:
    write_rdm_tsv(path, vector, labels)
    path.with_suffix(".json").write_text(json.dumps(meta))


def _network_folder(root: Path) -> tuple[Path, list[str]]:
    """Six layers of network ``net`` (two per part), one user model, five participants'
    RDMs of region ``sts``, and the evaluation tables computed by dnnrsa.inference."""
    from dnnrsa.inference import evaluate_models

    rng = np.random.default_rng(3)
    conditions = [f"c{i:02d}.mp4" for i in range(10)]
    n_pairs = 45
    truth = rng.random(n_pairs)
    layers = [("visual", "v1"), ("visual", "v2"), ("auditory", "a1")]
    layers += [("auditory", "a2"), ("crossmodal", "x1"), ("crossmodal", "x2")]
    root.mkdir(parents=True)
    names, models = [], []
    # crossmodal layers written first: the plot must still group visual first
    for index, (part, label) in reversed(list(enumerate(layers))):
        vec = truth * (index + 1) / 6 + rng.random(n_pairs)
        meta = {"LayerName": f"net.{label}", "Part": part, "LayerIndex": index}
        _write(root / f"task-t_model-net_layer-{label}_rdm.tsv", vec, conditions, meta)
        names.append(f"model-net_layer-{label}")
        models.append(vec)
    own = rng.random(n_pairs)
    meta = {"LayerName": "own", "Part": "model", "LayerIndex": 0}
    _write(root / "task-t_model-own_rdm.tsv", own, conditions, meta)
    names, models = ["model-own", *names], [own, *models]
    subjects = []
    for s in range(1, 6):
        func = root / f"sub-{s:02d}" / "func"
        func.mkdir(parents=True)
        vec = truth + 0.5 * rng.random(n_pairs)
        write_rdm_tsv(func / f"sub-{s:02d}_task-t_space-x_roi-sts_rdm.tsv", vec, conditions)
        subjects.append(vec)
    ev = evaluate_models(
        np.stack(models), np.stack(subjects), "pearson", n_boot=100, seed=0, model_names=names
    )
    stem = root / "task-t_space-x_roi-sts_desc-"
    side = {"Comparator": "pearson", "Bootstrap": "subjects", "NumberOfBootstrapSamples": 100}
    side["Subjects"] = [f"{s:02d}" for s in range(1, 6)]
    noise = pd.DataFrame(
        {"bound": ["lower", "upper"], "point": ev.noise_ceiling_point, "mean": ev.noise_ceiling}
    )
    for desc, table in (
        ("evaluation", ev.table()),
        ("noiseceiling", noise),
        ("pairwise", ev.pairwise_table()),
    ):
        table.to_csv(f"{stem}{desc}_stats.tsv", sep="\t", index=False, na_rep="n/a")
        Path(f"{stem}{desc}_stats.json").write_text(json.dumps(side))
    return root, names


def test_layers_are_grouped_by_the_part_of_their_sidecar(tmp_path):
    from dnnrsa.reports.discovery import open_context
    from dnnrsa.reports.render import FigureStore
    from dnnrsa.reports.roi_sections import _entry, display_order

    root, names = _network_folder(tmp_path / "out")
    ctx = open_context(root, "t", "x", None, None, FigureStore(root, False))
    entries = [_entry(ctx, n, k) for k, n in enumerate(names)]
    ordered = [entries[k] for k in display_order(entries)]
    assert [e.part for e in ordered] == ["visual"] * 2 + ["auditory"] * 2 + ["crossmodal"] * 2 + [
        "model"
    ]
    assert [e.label for e in ordered] == [
        "net.v1",
        "net.v2",
        "net.a1",
        "net.a2",
        "net.x1",
        "net.x2",
        "own",
    ]
    assert all(e.rdm_path is not None and e.rdm_path.is_file() for e in ordered)
    page = _parse(build_group_report(root, task="t", space="x"))
    assert page.sections["roi"] == "Regions of interest"
    assert len([i for i in page.images if i["section"] == "roi"]) == 2
    table = pd.read_csv(root / "task-t_space-x_roi-sts_desc-evaluation_stats.tsv", sep="\t")
    best = table.loc[table["mean"].idxmax(), "model"]
    assert page.tables[0][1][0] == best
    assert len(page.tables[0]) == 1 + len(names)


def test_beats_matrix_reads_the_sign_of_the_difference():
    from dnnrsa.reports.roi_figures import bar_positions, beats_matrix

    names = ["a", "b", "c"]
    beats = beats_matrix(
        names,
        ["a", "a", "b", "b"],
        ["b", "c", "c", "zz"],
        np.array([0.3, -0.2, -0.1, 1.0]),
        np.array([0.01, 0.04, 0.2, 0.0]),
        0.05,
    )
    expected = np.zeros((3, 3), bool)
    expected[0, 1] = True  # a beats b
    expected[2, 0] = True  # c beats a (negative difference)
    np.testing.assert_array_equal(beats, expected)
    np.testing.assert_allclose(bar_positions(["v", "v", "a", "m"]), [0, 1, 2.8, 4.6])


def test_hundreds_of_pairs_are_drawn(tmp_path):
    """29 layers and a user model: 435 pairs, one marker column per model."""
    from dnnrsa.reports.figures import figure_to_png
    from dnnrsa.reports.roi_figures import beats_matrix, roi_bar_figure

    rng = np.random.default_rng(0)
    parts = ["visual"] * 15 + ["auditory"] * 7 + ["crossmodal"] * 7 + ["model"]
    names = [f"layer{i}" for i in range(len(parts))]
    mean = rng.uniform(0, 0.4, len(parts))
    i, j = np.triu_indices(len(parts), 1)
    diff = mean[i] - mean[j]
    beats = beats_matrix(
        names,
        np.array(names)[i],
        np.array(names)[j],
        diff,
        np.where(abs(diff) > 0.1, 1e-3, 0.5),
        0.05,
    )
    assert len(i) == 435 and beats.sum() == (abs(diff) > 0.1).sum()
    fig = roi_bar_figure(
        names, parts, mean, [mean - 0.05, mean + 0.05], mean > 0.05, beats, (0.3, 0.45)
    )
    png = figure_to_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
