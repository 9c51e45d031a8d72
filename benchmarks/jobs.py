"""Wall time of `rotnet reproduce` with --jobs 1 and --jobs 2 on this machine's CPU cores.

The runs go back to back in ABBA order (jobs 1, 2, 2, 1 by default) so that a shared machine's drifting speed
weighs on both settings alike; each gets a fresh runs root, so nothing is reused. Prints every wall time, the mean
per setting, their ratio, and each reproduce's test accuracies (the same plan either way).

    python benchmarks/jobs.py --preset quick --data-root DIR [--order 1,2,2,1] [-- EXTRA REPRODUCE FLAGS]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def reproduce(jobs: int, root: Path, preset: str, data_root: str, extra: list[str], log: Path) -> float:
    """One `rotnet reproduce` in its own process; returns its wall time in seconds."""
    command = [sys.executable, "-m", "rotnet", "reproduce", "--preset", preset, "--jobs", str(jobs)]
    command += ["--device", "cpu", "--runs-root", str(root), "--data-root", data_root, "--no-download", *extra]
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        sys.exit(f"jobs.py: reproduce --jobs {jobs} failed (exit {code}); see {log}")
    return seconds


def accuracies(root: Path) -> dict[str, float]:
    results = sorted(root.rglob("result.json"))
    return {str(p.parent.relative_to(root)): json.loads(p.read_text())["test_acc"] for p in results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quick")
    p.add_argument("--data-root", required=True)
    p.add_argument("--order", default="1,2,2,1", help="comma-separated --jobs values, run in this order")
    p.add_argument("--scratch", default=None, help="folder for the runs roots and logs (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the runs roots (default: delete them, keep the logs)")
    args, extra = p.parse_known_args()
    extra = [a for a in extra if a != "--"]
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="rotnet-jobs-"))
    scratch.mkdir(parents=True, exist_ok=True)
    times: dict[int, list[float]] = {}
    for i, jobs in enumerate(int(j) for j in args.order.split(",")):
        root = scratch / f"{i}-jobs{jobs}"
        seconds = reproduce(jobs, root, args.preset, args.data_root, extra, scratch / f"{i}-jobs{jobs}.log")
        times.setdefault(jobs, []).append(seconds)
        accs = ", ".join(f"{k} {v:.2f}" for k, v in accuracies(root).items())
        print(f"run {i + 1}: --jobs {jobs}: {seconds:.0f} s ({accs})", flush=True)
        if not args.keep:
            shutil.rmtree(root)
    print(f"\n`reproduce --preset {args.preset}` wall time, CPU, order {args.order}; logs in {scratch}\n")
    print("| --jobs | runs (s) | mean (s) |\n|---|---|---|")
    for jobs, ts in sorted(times.items()):
        print(f"| {jobs} | {', '.join(f'{t:.0f}' for t in ts)} | {statistics.mean(ts):.0f} |")
    if len(times) == 2:
        (a, ta), (b, tb) = sorted(times.items())
        print(f"\nmean time with --jobs {a} / with --jobs {b}: {statistics.mean(ta) / statistics.mean(tb):.2f}")


if __name__ == "__main__":
    main()
