"""Embed dnnrsa's nipype interfaces in a workflow of your own.

One participant: per-condition patterns from the BOLD runs (first-level GLM), a
model RDM of your own reordered to the conditions, and a searchlight comparing the
two. Every interface reads files and writes files, so the nodes can be combined with
any other nipype node (fMRIPrep's outputs, your own masks, a DataSink).

Run it as a script::

    python nipype_workflow.py WORK_DIR RDM.tsv CONDITION [CONDITION ...] \
        --bold run1_bold.nii.gz run2_bold.nii.gz \
        --events run1_events.tsv run2_events.tsv --t-r 2.0
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nipype.pipeline import engine as pe

from dnnrsa.interfaces.dnn import UserModelRDMs
from dnnrsa.interfaces.glm import EstimatePatterns
from dnnrsa.interfaces.searchlight import SearchlightRSA


def init_searchlight_wf(
    bold_files: list[str],
    events_files: list[str],
    *,
    t_r: float,
    model_rdm: str,
    conditions: list[str],
    radius_mm: float = 6.0,
    min_voxels: int = 10,
    base_dir: str | None = None,
    name: str = "searchlight_wf",
) -> pe.Workflow:
    """Patterns -> searchlight RSA against one model RDM.

    Parameters
    ----------
    bold_files, events_files : list of str
        One BOLD series and one events.tsv (with a ``stim_file`` column) per run.
    t_r : float
        Repetition time in seconds.
    model_rdm : str
        Square TSV with the condition labels in the first column and the header.
    conditions : list of str
        The conditions, sorted (the order of the patterns' conditions).
    radius_mm, min_voxels
        Searchlight sphere radius and the fewest usable voxels of a sphere.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        Its node ``searchlight`` has the output ``maps_file``: one volume per model.
    """
    wf = pe.Workflow(name=name, base_dir=base_dir)
    patterns = pe.Node(
        EstimatePatterns(bold_files=bold_files, events_files=events_files, t_r=t_r),
        name="patterns",
    )
    model = pe.Node(
        UserModelRDMs(names=["model"], rdm_files=[model_rdm], conditions=conditions),
        name="model",
    )
    searchlight = pe.Node(
        SearchlightRSA(radius_mm=radius_mm, min_voxels=min_voxels, comparator="spearman"),
        name="searchlight",
    )
    wf.connect(
        [
            (
                patterns,
                searchlight,
                [
                    ("patterns_file", "patterns_file"),
                    ("conditions_file", "conditions_file"),
                    ("mask_file", "mask_file"),
                ],
            ),
            (model, searchlight, [("bank_file", "bank_file")]),
        ]
    )
    return wf


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("model_rdm", type=Path)
    parser.add_argument("conditions", nargs="+")
    parser.add_argument("--bold", nargs="+", required=True)
    parser.add_argument("--events", nargs="+", required=True)
    parser.add_argument("--t-r", type=float, required=True)
    parser.add_argument("--radius-mm", type=float, default=6.0)
    parser.add_argument("--min-voxels", type=int, default=10)
    args = parser.parse_args(argv)
    wf = init_searchlight_wf(
        [str(Path(b).absolute()) for b in args.bold],
        [str(Path(e).absolute()) for e in args.events],
        t_r=args.t_r,
        model_rdm=str(args.model_rdm.absolute()),
        conditions=sorted(args.conditions),
        radius_mm=args.radius_mm,
        min_voxels=args.min_voxels,
        base_dir=str(args.work_dir.absolute()),
    )
    graph = wf.run(plugin="Linear")
    node = next(n for n in graph.nodes() if n.name == "searchlight")
    maps = Path(node.result.outputs.maps_file)
    print(maps)
    return maps


if __name__ == "__main__":
    main()
