"""Do two commits train the same bits? A quick-preset rotation epoch and a layer4-from-rotation epoch (on a
class-balanced subset, to be quick) at each commit, their metrics.jsonl compared field by field (timings aside).

    python benchmarks/stream_identity.py --data-root DATA --work /tmp/stream-identity --commits 1ef4576~1,HEAD

(1ef4576~1: the commit before issue 22's redesign of a run's life.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from smoke import checkout

TIMINGS = ("seconds", "images_per_s", "eval_images_per_s")


def metrics(commit: str, args) -> dict[str, list[dict]]:
    commit, env = checkout(commit, args.work)
    root = args.work / f"runs-{commit}"
    shutil.rmtree(root, ignore_errors=True)
    out = {}
    for experiment in ("rotation", "layer4-from-rotation"):
        command = [sys.executable, "-m", "rotnet", "train", experiment, "--preset", "quick", "--epochs", "1"]
        command += ["--train-per-class", str(args.train_per_class), "--runs-root", str(root), "--device", "cpu"]
        command += ["--data-root", str(args.data_root), "--no-download"]
        done = subprocess.run(command, env=env | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{commit} {experiment} failed:\n{done.stderr[-2000:]}")
        (metrics_file,) = root.glob(f"resnet18/{experiment}*/seed0/metrics.jsonl")
        lines = [json.loads(x) for x in metrics_file.read_text().splitlines()]
        out[experiment] = [{k: v for k, v in line.items() if k not in TIMINGS} for line in lines]
        print(f"{commit:10s} {experiment:22s} {out[experiment][-1]}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="worktrees and runs roots go here")
    p.add_argument("--commits", default="1ef4576~1,HEAD", help="two commits, before,after")
    p.add_argument("--train-per-class", type=int, default=50)
    args = p.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    before, after = (metrics(c, args) for c in args.commits.split(","))
    for experiment in before:
        # A field only one commit writes (weights_sha256 from 0.5) is named, and the others compared.
        new = sorted({k for line in after[experiment] for k in line} - {k for line in before[experiment] for k in line})
        gone = sorted(
            {k for line in before[experiment] for k in line} - {k for line in after[experiment] for k in line}
        )
        drop = set(new) | set(gone)
        same = [{k: v for k, v in x.items() if k not in drop} for x in before[experiment]] == [
            {k: v for k, v in x.items() if k not in drop} for x in after[experiment]
        ]
        extra = "".join(
            f"; only after: {', '.join(new)}" * bool(new) + f"; only before: {', '.join(gone)}" * bool(gone)
        )
        print(f"{experiment}: {'bit-identical' if same else 'DIFFERENT'} metrics.jsonl (timings aside{extra})")


if __name__ == "__main__":
    main()
