"""Do the demo's checks hold across generator seeds? Run the demo for several seeds and
print every printed check per seed: its value, its (adjusted) p value, whether it holds
and its margin.

    python benchmarks/demo_seeds.py --setting fast --seeds 0 1 2 3 4 --work-dir /tmp/seeds
    python benchmarks/demo_seeds.py --setting full --seeds 0 1 --work-dir /tmp/seeds

Each seed runs ``dnnrsa-demo <work-dir>/<setting>_<seed> --setting S --seed N`` (a
folder that already holds a finished run of that seed is read, not run again; pass
``--rerun`` to run it anyway). The margin says how far a check is from failing, in the
unit its rule is stated in:

* "beats" checks of the ROI evaluation (difference > 0 and FDR-adjusted p <= alpha):
  ``alpha - p_adjusted``;
* the noise-ceiling check (mean at least the lower bound, or adjusted p > alpha):
  ``value - bound`` when the mean reaches the bound, else ``p_adjusted - alpha``;
* the negative control (no layer above zero, Holm-adjusted p > alpha):
  ``p_adjusted - alpha``;
* the study's findings (verdict "holds": Holm-adjusted p <= alpha in the stated
  direction): ``alpha - p_holm``; a finding the setting cannot decide (finding 5 with
  the fast setting's two participants) is shown as undecided.

A negative margin is a check that fails. The Markdown table printed at the end is the
one in docs/demo_dataset.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ALPHA = 0.05
TASK = "emotion"


def _finished(folder: Path) -> bool:
    deriv = folder / "derivatives" / "dnnrsa"
    return (deriv / "demo_roi_acceptance.tsv").is_file() and (
        deriv / f"task-{TASK}_desc-findings_stats.tsv"
    ).is_file()


def run_seed(setting: str, seed: int, work_dir: Path, rerun: bool) -> tuple[Path, float | None]:
    """Run (or reuse) the demo of one seed; return its folder and the seconds it took."""
    folder = work_dir / f"{setting}_{seed}"
    if _finished(folder) and not rerun:
        return folder, None
    demo = Path(sys.executable).with_name("dnnrsa-demo")
    log = work_dir / f"{setting}_{seed}.log"
    start = time.perf_counter()
    with open(log, "w") as fh:
        subprocess.run(
            [str(demo), str(folder), "--setting", setting, "--seed", str(seed)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return folder, time.perf_counter() - start


def _roi_margin(row) -> float:
    if row["check"].startswith("no layer above zero"):
        return row["p_adjusted"] - ALPHA
    if "noise ceiling" in row["check"]:
        if row["value"] >= row["reference"]:
            return row["value"] - row["reference"]
        return row["p_adjusted"] - ALPHA
    return ALPHA - row["p_adjusted"] if row["value"] > 0 else -row["p_adjusted"]


def checks_of(folder: Path, seed: int) -> pd.DataFrame:
    """Every check the demo prints for one finished run, with its margin."""
    deriv = folder / "derivatives" / "dnnrsa"
    roi = pd.read_csv(deriv / "demo_roi_acceptance.tsv", sep="\t")
    rows = [
        {
            "check": f"ROI {r['roi']}: {r['check']}",
            "value": r["value"],
            "p": r["p_adjusted"],
            "holds": bool(r["holds"]),
            "margin": _roi_margin(r),
        }
        for _, r in roi.iterrows()
    ]
    findings = pd.read_csv(deriv / f"task-{TASK}_desc-findings_stats.tsv", sep="\t")
    rows += [
        {
            "check": f"finding {r['finding']}",
            "value": r["value"],
            "p": r["p_holm"],
            "holds": {"holds": True, "does not hold": False}.get(r["verdict"]),
            "margin": ALPHA - float(r["p_holm"]) if r["verdict"] != "undecided" else float("nan"),
        }
        for _, r in findings.iterrows()
    ]
    table = pd.DataFrame(rows)
    table.insert(0, "seed", seed)
    return table


def markdown(table: pd.DataFrame, setting: str) -> str:
    """One row per check, one column per seed: ``value (p; margin)``, failures marked."""
    lines = []
    seeds = sorted(table["seed"].unique())
    lines.append(f"| {setting} setting: check | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    lines.append("| --- |" + " --- |" * len(seeds))
    for check in table["check"].drop_duplicates():
        cells = []
        for s in seeds:
            row = table[(table["check"] == check) & (table["seed"] == s)]
            if row.empty:
                cells.append("n/a")
                continue
            r = row.iloc[0]
            if r["holds"] is None:
                cells.append("undecided")
                continue
            mark = "" if r["holds"] else " **fails**"
            cells.append(f"{r['value']:.3g} (p {r['p']:.2g}; margin {r['margin']:+.3g}){mark}")
        lines.append(f"| {check} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=("fast", "full"), default="fast")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--rerun", action="store_true", help="run seeds already run again")
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    tables = []
    for seed in args.seeds:
        folder, seconds = run_seed(args.setting, seed, args.work_dir, args.rerun)
        took = "read from an earlier run" if seconds is None else f"{seconds:.0f} s"
        print(f"seed {seed}: {folder} ({took})", flush=True)
        tables.append(checks_of(folder, seed))
    table = pd.concat(tables, ignore_index=True)
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print()
    decided = table[table["holds"].notna()].astype({"holds": bool})
    summary = decided.groupby("check", sort=False).agg(
        holds=("holds", "sum"), seeds=("holds", "size"), smallest_margin=("margin", "min")
    )
    print(summary.to_string(float_format=lambda v: f"{v:+.3g}"))
    print()
    print(markdown(table, args.setting))
    failing = int((~decided["holds"]).sum())
    print(f"\n{failing} check(s) fail on at least one seed" if failing else "\nevery check holds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
