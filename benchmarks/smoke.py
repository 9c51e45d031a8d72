"""The first hour's cost: `rotnet reproduce --preset smoke` at two commits, wall time and the runs root's disk.

Each commit is checked out into its own worktree under --work and run from it (its src on PYTHONPATH, this
interpreter), one after the other on the same data, each into its own runs root; then the runs roots' sizes. It
prints one line per commit and the ratios, measured in this one run.

    python benchmarks/smoke.py --data-root DATA --work /tmp/smoke-bench --commits 39b8fe0,HEAD

(39b8fe0: the commit before issue 24's changes.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def disk_mb(folder: Path) -> float:
    total = sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return total / 1e6


def checkout(commit: str, work: Path) -> tuple[str, dict]:
    """The commit (short hash) in its own worktree under work, and the environment that runs rotnet from it."""
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", commit], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    tree = work / f"src-{commit}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(tree), commit], check=True)
    return commit, os.environ | {"PYTHONPATH": str(tree / "src")}


def run(commit: str, args) -> tuple[float, float]:
    commit, env = checkout(commit, args.work)
    root = args.work / f"runs-{commit}"
    shutil.rmtree(root, ignore_errors=True)
    command = [sys.executable, "-m", "rotnet", "reproduce", "--preset", "smoke", "--runs-root", str(root)]
    command += ["--data-root", str(args.data_root), "--no-download", "--device", "cpu", *args.extra]
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=args.work)
    wall = time.monotonic() - started
    if done.returncode:
        raise SystemExit(f"{commit} failed:\n{done.stderr[-2000:]}")
    mb = disk_mb(root)
    print(f"{commit:10s} wall {wall:7.1f} s   runs root {mb:7.1f} MB", flush=True)
    return wall, mb


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="worktrees and runs roots go here")
    p.add_argument("--commits", default="39b8fe0,HEAD", help="two commits, before,after")
    p.add_argument("extra", nargs="*", help="more reproduce flags, after --")
    args = p.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    before, after = args.commits.split(",")
    (w0, d0), (w1, d1) = run(before, args), run(after, args)
    print(f"after/before: wall {w1 / w0:.3f}, disk {d1 / d0:.3f}")


if __name__ == "__main__":
    main()
