"""A run's wall time with its final confusion matrix taken from the last epoch's evaluation (rotnet >= 0.4) against
the same run with the second full test pass rotnet 0.3 made after `fit`, in one process, alternating, so that a
noisy machine slows both alike.

    python benchmarks/final_eval.py --data-root DATA --work /tmp/final-eval [--preset smoke] [--experiment rotation]

Prints each run's seconds, the predict passes it made, and the ratio of the medians; exits 1 if the runs' result
files differ in anything but time (the reuse must change no number).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import rotnet.lifecycle
from rotnet.cli import main

TIMES = ("train_seconds", "last_invocation_seconds", "images_per_s")


def one(args, root: Path, second_pass: bool) -> tuple[float, int, dict]:
    real_final, real_predict, passes = rotnet.lifecycle.EpochEvaluator.final_predictions, rotnet.lifecycle.predict, []

    def predict(*a, **kw):
        passes.append(1)
        return real_predict(*a, **kw)

    rotnet.lifecycle.predict = predict
    if second_pass:  # 0.3's behaviour: predict the whole test set again after the last epoch
        rotnet.lifecycle.EpochEvaluator.final_predictions = lambda self, m: predict(
            m, self.test_images, self.cfg.task, **self.kw
        )
    try:
        argv = ["train", args.experiment, "--preset", args.preset, "--runs-root", str(root), "--device", "cpu"]
        argv += ["--data-root", str(args.data_root), "--no-download", *args.set]
        t = time.perf_counter()
        assert main(argv) == 0
        seconds = time.perf_counter() - t
    finally:
        rotnet.lifecycle.EpochEvaluator.final_predictions, rotnet.lifecycle.predict = real_final, real_predict
    (result,) = root.glob("*/*/seed0/result.json")
    return seconds, len(passes), {k: v for k, v in json.loads(result.read_text()).items() if k not in TIMES}


def run() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="a new folder for the runs")
    p.add_argument("--preset", default="smoke")
    p.add_argument("--experiment", default="rotation")
    p.add_argument("--repeats", type=int, default=2)
    args, extra = p.parse_known_args()
    args.set = extra  # any other flag goes to `rotnet train`, e.g. --set train_per_class=50
    if args.work.exists():
        sys.exit(f"{args.work} exists; name a new folder")
    times: dict[bool, list[float]] = {False: [], True: []}
    results = []
    for i in range(args.repeats):
        for second in (True, False):
            seconds, passes, result = one(args, args.work / f"{i}-{'twice' if second else 'once'}", second)
            times[second].append(seconds)
            results.append(result)
            name = "0.3 (second test pass)" if second else "0.4 (one pass)"
            print(f"{name:24}: {seconds:7.1f} s, {passes} predict passes")
    once, twice = statistics.median(times[False]), statistics.median(times[True])
    print(f"median: {twice:.1f} s -> {once:.1f} s, ratio {once / twice:.3f} ({100 * (1 - once / twice):.1f}% saved)")
    same = all(r == results[0] for r in results)
    print("results identical apart from times:", same)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(run())
