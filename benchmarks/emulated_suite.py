"""Does the test suite pass on other CPUs? (issue 37) Runs it under each CPU that benchmarks/portable.py emulates (an
ISA limit the kernel libraries read at start), with pytest's default workers and with `-n 0`, one after the other,
and prints one summary line per run, with the tests that failed (each run's whole output goes to --logs). A test
whose outcome depends on how a CPU rounds fails under one of them.

    python benchmarks/emulated_suite.py                       # every emulated CPU, both worker settings
    python benchmarks/emulated_suite.py --cpus onednn-avx2 --workers default -- tests/test_verify.py
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from portable import EMULATED

WORKERS = {"default": [], "n0": ["-n", "0"]}


def run(cpu: str, workers: str, tests: list[str], logs: Path) -> int:
    env = os.environ | EMULATED[cpu]
    with tempfile.TemporaryDirectory(prefix=f"suite-{cpu}-{workers}-") as temp:
        command = [sys.executable, "-m", "pytest", *tests, "-rfE", "-p", "no:cacheprovider", f"--basetemp={temp}"]
        started = time.monotonic()
        done = subprocess.run([*command, *WORKERS[workers]], env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{cpu}-{workers}.log").write_text(done.stdout + done.stderr)
    counts = [line for line in done.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    summary = counts[-1].strip("= ") if counts else f"(no summary: exit {done.returncode}; see the log)"
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    limits = " ".join(f"{k}={v}" for k, v in EMULATED[cpu].items()) or "no limit"
    print(f"{cpu:18s} {workers:8s} wall {wall:6.0f} s  {summary}  ({limits})", *failed, sep="\n    ", flush=True)
    return done.returncode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpus", default=",".join(EMULATED), help="comma-separated, from: " + ", ".join(EMULATED))
    p.add_argument("--workers", default=",".join(WORKERS), help="comma-separated, from: " + ", ".join(WORKERS))
    p.add_argument("--logs", type=Path, default=Path("emulated-suite-logs"), help="each run's output goes here")
    p.add_argument("tests", nargs="*", default=["tests"], help="what pytest runs (default: tests)")
    args = p.parse_args()
    logs = args.logs.resolve()
    os.chdir(Path(__file__).resolve().parents[1])
    codes = [run(c, w, args.tests, logs) for c in args.cpus.split(",") for w in args.workers.split(",")]
    raise SystemExit(max(codes))


if __name__ == "__main__":
    main()
