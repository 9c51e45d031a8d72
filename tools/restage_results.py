"""Remake a committed results folder from its committed run records with today's `rotnet report`.

    python tools/restage_results.py paper-cpu                      # after a change to what the report writes
    python tools/restage_results.py paper-cpu --add /runs/seeds34  # first take in another runs root's records

docs/results/NAME keeps each run's record (config.json, metrics.jsonl, result.json, manifest.json;
examples.safetensors and verify.json where there is one) under runs/, never weights, and the plan's log as
reproduce.json. This copies runs/ and the log to a scratch folder, reports there and copies report.md,
results.json, results.csv and plots/ back.
tests/test_end_to_end.py fails while a committed report differs from what today's rotnet makes of its records.

--add copies in the records of another runs root's finished runs (refusing one that is already here with other
bytes; adding the files made since it landed, such as its verify.json) and merges its reproduce.json into NAME's
as `reproduce` would have written it had that plan run into the same runs root: the later plan on top, every
earlier invocation of both in `earlier` once, in the order they started. So a long run can land plan by plan:
`--add` the same runs root again after each of its plans finishes.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
import tempfile
from pathlib import Path

from rotnet.layout import EXAMPLES, RESULT, VERIFY, find_runs, merge_logs
from rotnet.record import RECORD_FILES
from rotnet.report import OUTPUTS, write_report

RESULTS = Path(__file__).resolve().parent.parent / "docs/results"
# A run's record and what the report draws from it (examples.safetensors: 16 test images and their predictions,
# 25 KB), never its weights (45 MB a ResNet18).
KEPT = (*RECORD_FILES, EXAMPLES, VERIFY)


def add_runs(folder: Path, root: Path) -> int:
    """Copy the records of root's finished runs into folder/runs; return how many were new."""
    try:  # before anything is copied: a root that is no plan's leaves folder as it was
        theirs = json.loads((root / "reproduce.json").read_text())
        if not isinstance(theirs, dict):
            raise ValueError("not a plan's record")
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or e
        sys.exit(f"restage: {root} holds no readable reproduce.json ({why}); is it a runs root of `rotnet reproduce`?")
    added = 0
    for run in find_runs(root):
        target = folder / "runs" / run.relative_to(root)
        if not (run / RESULT).is_file():
            print(f"{run}: not finished; not added")
            continue
        names = [n for n in KEPT if (run / n).is_file()]
        both = [n for n in names if (target / n).is_file()]
        if filecmp.cmpfiles(run, target, both, shallow=False)[0] != both:
            sys.exit(f"restage: {target} is already committed with other files than {run}'s; not replaced")
        added += not target.exists()
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            if name not in both:  # a new run's record, or a file made since its run landed (its verify.json)
                shutil.copy2(run / name, target / name)
    log = folder / "reproduce.json"
    log.write_text(json.dumps(merge_logs(json.loads(log.read_text()), theirs), indent=2) + "\n")
    return added


def restage(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        stage = Path(scratch)
        shutil.copytree(folder / "runs", stage, dirs_exist_ok=True)
        shutil.copy2(folder / "reproduce.json", stage)
        write_report(stage)
        for name in OUTPUTS:
            shutil.copy2(stage / name, folder / name)
        shutil.rmtree(folder / "plots", ignore_errors=True)
        shutil.copytree(stage / "plots", folder / "plots")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="a folder of docs/results with runs/ and reproduce.json")
    parser.add_argument("--add", type=Path, action="append", default=[], help="a runs root whose records join it")
    args = parser.parse_args()
    folder = RESULTS / args.name
    if not (folder / "runs").is_dir() or not (folder / "reproduce.json").is_file():
        sys.exit(f"restage: {folder} holds no runs/ and reproduce.json")
    for root in args.add:
        print(f"{root}: {add_runs(folder, root)} runs added")
    restage(folder)
    print(f"restaged {folder}")


if __name__ == "__main__":
    main()
