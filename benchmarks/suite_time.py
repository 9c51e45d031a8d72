"""The test suite's wall time at two commits, one after the other in this one run (issue 22: a third less).

Each commit's own tests run from its own worktree under --work (its src on PYTHONPATH, this interpreter), with the
README's test command and a temporary folder of their own; it prints one line per commit and the ratio.

    python benchmarks/suite_time.py --work /tmp/suite-bench --commits c4e6f0b,HEAD

(c4e6f0b: the last commit before the suite's shared fixtures.) Each commit's pytest settings apply, so a commit
whose pyproject runs pytest-xdist workers needs it installed here (`pip install -e '.[dev]'`).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from smoke import checkout


def run(commit: str, work: Path, extra: list[str]) -> float:
    commit, env = checkout(commit, work)
    tree, temp = work / f"src-{commit}", work / f"tmp-{commit}"
    shutil.rmtree(temp, ignore_errors=True)
    command = [sys.executable, "-m", "pytest", "tests", "-rfE", "-p", "no:cacheprovider", f"--basetemp={temp}"]
    command += extra
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tree)
    wall = time.monotonic() - started
    output = (done.stdout + done.stderr).splitlines()
    counts = [line for line in output if re.search(r"\d+ (passed|failed)", line)]
    summary = counts[-1].strip("= ") if counts else "(no pytest summary line)"
    if done.returncode:  # still timed, but said: a failing suite is not a faster one
        failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        print(f"{commit}: the suite failed (exit {done.returncode}):", *failed, sep="\n  ", flush=True)
    shutil.rmtree(temp, ignore_errors=True)
    print(f"{commit:10s} wall {wall:7.1f} s   {re.sub(r' in .*', '', summary)}", flush=True)
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="worktrees and temporary folders go here")
    p.add_argument("--commits", default="c4e6f0b,HEAD", help="two commits, before,after")
    p.add_argument("extra", nargs="*", help="more pytest arguments, after --")
    args = p.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    before, after = args.commits.split(",")
    w0, w1 = run(before, work, args.extra), run(after, work, args.extra)
    print(f"after/before: wall {w1 / w0:.3f}")


if __name__ == "__main__":
    main()
