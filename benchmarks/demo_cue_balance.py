"""How the demo's cue balance shapes the emotion network: train it on a variant of the
generator and print how well its best layer of each part separates the emotions, and
what each arm's lesion costs.

The demo's closest check (the best cross-modal layer beats the best visual layer in the
planted STS/TPJ region, whose geometry is the emotion categories) depends on how much
better the emotion network's cross-modal layers separate the emotions than its visual
arm does, and finding 3 on how much more the visual arm matters. Both follow from the
balance of the two cues, set by the generator's constants: the facial intensity of a
rendition (``dnnrsa.demo.talking_faces.FACE_INTENSITY``), the size of the facial actions
(``EXPRESSION_GAIN``) and the voice's emotional intensity
(``dnnrsa.demo.voices.VOCAL_INTENSITY``). This script tries a variant without touching
the code: it sets those constants in this process, writes the demo's clips (one
participant's BIDS data, which the clips do not depend on), trains the emotion network
as the demo does (one torch thread, the setting's epochs and learning rate) and scores
its layers on the 72 fMRI stimuli against the planted category RDM (same emotion or
not):

* ``spearman``: Spearman correlation of the layer's distances with the category RDM
  (ties in the category RDM averaged);
* ``rank_r``: correlation of the ranks of the layer's distances with the category (0 or
  1). A region's measured RDM holds the categories plus noise, without ties, so this is
  the figure whose differences between layers the region's checks see;
* ``auc``: area under the ROC curve of the distances, pairs of different emotions
  against pairs of the same emotion.

It also prints the network's accuracy with each arm lesioned
(:func:`dnnrsa.lesions.arm_lesion_outcomes`).

    python benchmarks/demo_cue_balance.py --work-dir /tmp/cues
    python benchmarks/demo_cue_balance.py --work-dir /tmp/cues --face-intensity 0.2 1.1

A folder that already holds the variant's data and network is reused.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

import numpy as np


def _variant(args) -> tuple[str, dict]:
    """Set the generator's constants of this variant; return its name and values."""
    from dnnrsa.demo import talking_faces, voices

    values = {
        "face_intensity": tuple(args.face_intensity or talking_faces.FACE_INTENSITY),
        "expression_gain": float(args.expression_gain or talking_faces.EXPRESSION_GAIN),
        "vocal_intensity": tuple(args.vocal_intensity or voices.VOCAL_INTENSITY),
    }
    talking_faces.FACE_INTENSITY = values["face_intensity"]
    talking_faces.EXPRESSION_GAIN = values["expression_gain"]
    voices.VOCAL_INTENSITY = values["vocal_intensity"]
    name = "face{}-{}_gain{}_voice{}-{}".format(
        *values["face_intensity"], values["expression_gain"], *values["vocal_intensity"]
    )
    return f"{args.setting}_seed{args.seed}_{name}", values


def _layer_scores(features, category: np.ndarray) -> dict[str, dict]:
    """Per layer: its part and its three scores against the category RDM vector."""
    from scipy.spatial.distance import pdist
    from scipy.stats import pearsonr, rankdata, spearmanr
    from sklearn.metrics import roc_auc_score

    different = category > category.min()
    scores = {}
    for name, act in features.activations.items():
        d = pdist(act.reshape(act.shape[0], -1), "correlation")
        scores[name] = {
            "part": features.parts[name],
            "spearman": float(spearmanr(d, category)[0]),
            "rank_r": float(pearsonr(rankdata(d), different)[0]),
            "auc": float(roc_auc_score(different, d)),
        }
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--setting", choices=("fast", "full"), default="full")
    parser.add_argument("--face-intensity", type=float, nargs=2, metavar=("LOW", "HIGH"))
    parser.add_argument("--expression-gain", type=float)
    parser.add_argument("--vocal-intensity", type=float, nargs=2, metavar=("LOW", "HIGH"))
    args = parser.parse_args(argv)

    import pandas as pd

    from dnnrsa.bids_app.demo import DEMO_REGIMES, DEMO_SETTINGS
    from dnnrsa.demo import make_demo_dataset
    from dnnrsa.features import extract_features
    from dnnrsa.lesions import arm_lesion_outcomes, lesion_summary
    from dnnrsa.rdm import read_rdm_tsv, vector_to_squareform
    from dnnrsa.train import train_model

    name, values = _variant(args)
    folder = args.work_dir / name
    opts = DEMO_SETTINGS[args.setting]
    start = time.perf_counter()
    # the clip workers must see the constants set here: they do when forked
    n_jobs = 2 if multiprocessing.get_start_method() == "fork" else 1
    paths = make_demo_dataset(
        folder / "data",
        seed=args.seed,
        setting=args.setting,
        n_subjects=1,
        n_training_takes=opts["n_training_takes"],
        snr=opts["snr"],
        n_jobs=n_jobs,
    )
    generated = time.perf_counter()
    checkpoint = folder / "emotion.pt"
    if not checkpoint.is_file():
        train_model(
            paths.training_dir,
            paths.training_labels,
            "emotion",
            checkpoint,
            validation_column=DEMO_REGIMES["emotion"],
            epochs=opts["epochs"],
            learning_rate=opts["learning_rate"],
            seed=args.seed,
            device="cpu",
            progress=False,
        )
    trained = time.perf_counter()
    table = pd.read_csv(paths.groundtruth_dir / f"task-{paths.task}_stimuli.tsv", sep="\t")
    files = [str(paths.stimuli_dir / f) for f in table["file"]]
    features = extract_features(files, checkpoint=checkpoint, crop_boxes="auto", device="cpu")
    vector, labels = read_rdm_tsv(paths.region_rdms["crossmodal"])
    order = [labels.index(f) for f in table["file"]]
    square = np.asarray(vector_to_squareform(vector))[np.ix_(order, order)]
    category = square[np.triu_indices(len(files), 1)]
    scores = _layer_scores(features, category)
    stimuli = table.rename(columns={"file": "stim_file"}).set_index("stim_file")
    lesions = lesion_summary(
        arm_lesion_outcomes(checkpoint, files, list(table["file"]), stimuli, crop_boxes="auto")
    ).set_index("arm")["accuracy"]
    best = {}
    for part in ("visual", "auditory", "crossmodal"):
        layers = {k: v for k, v in scores.items() if v["part"] == part}
        best[part] = max(layers, key=lambda k: layers[k]["rank_r"])
    print(f"variant {name}: {json.dumps(values)}")
    print(f"{'part':<11} {'best layer':<28} {'rank_r':>7} {'spearman':>9} {'auc':>6}")
    for part, layer in best.items():
        s = scores[layer]
        print(f"{part:<11} {layer:<28} {s['rank_r']:7.3f} {s['spearman']:9.3f} {s['auc']:6.3f}")
    lead = scores[best["crossmodal"]]["rank_r"] - scores[best["visual"]]["rank_r"]
    print(
        f"cross-modal lead over visual (rank_r): {lead:+.3f}; accuracy intact "
        f"{lesions['none']:.3f}, visual arm lesioned {lesions['visual']:.3f}, auditory arm "
        f"lesioned {lesions['auditory']:.3f} (visual minus auditory drop "
        f"{lesions['auditory'] - lesions['visual']:+.3f})"
    )
    print(
        f"times: generate {generated - start:.0f} s, train {trained - generated:.0f} s, "
        f"score {time.perf_counter() - trained:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
