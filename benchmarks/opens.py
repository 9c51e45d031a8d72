"""How many times does one command open each record file and the source weights? (issue 33) Counted with strace
(every openat of the process and its children), for three commands on a small class-balanced subset:

    train      `rotnet train full-from-rotation` beside a finished rotation run
    reproduce  `rotnet reproduce --experiments full-from-rotation --jobs 1` with that rotation run finished
    resume     `rotnet train rotation` again after a stop at the end of epoch 1 (of 2)

    python benchmarks/opens.py --data-root DATA --work /tmp/opens-bench [--commit HEAD]

It prints, per command, the opens of the rotation run's config.json, manifest.json and model.safetensors (the
source weights), and of the trained run's config.json and manifest.json. With --commit, the rotnet of that commit
(a worktree under --work, its src on PYTHONPATH) is measured instead of this checkout.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from smoke import checkout

COMMON = ["--preset", "smoke", "--set", "train_per_class=20", "--device", "cpu", "--no-download"]
# with -y, strace names the folder of a descriptor-relative open (rotnet.files opens one folder at a time, dir_fd)
OPENAT = re.compile(r'openat\((?:AT_FDCWD(?:<[^>]*>)?|\d+<([^>]*)>), "([^"]+)"')


def rotnet(env: dict, root: Path, args, *rest: str) -> list[str]:
    return [sys.executable, "-m", "rotnet", *rest, "--runs-root", str(root), "--data-root", str(args.data_root)]


def traced(command: list[str], env: dict, log: Path) -> Counter:
    """Run command under strace; the number of opens of each path."""
    done = subprocess.run(["strace", "-f", "-qq", "-y", "-e", "trace=openat", "-o", str(log), *command], env=env,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    lines = [m for line in log.read_text().splitlines() if (m := OPENAT.search(line)) and "ENOENT" not in line]
    return Counter(os.path.join(m[1], m[2]) if m[1] else m[2] for m in lines)


def stopped_rotation(command: list[str], env: dict, folder: Path) -> None:
    """A rotation run stopped (SIGINT) once its first epoch's checkpoint is written."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not list((folder / "checkpoints").glob("e*-s*.safetensors")):
        if proc.poll() is not None:
            raise SystemExit("the rotation run ended before its first checkpoint")
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--commit", default="", help="measure this commit's rotnet (default: this checkout)")
    args = p.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    label = "this checkout"
    if args.commit:
        label, env = checkout(args.commit, work)
        env = dict(env, OMP_NUM_THREADS="1")
    root = work / f"runs-{label.replace(' ', '-')}"
    shutil.rmtree(root, ignore_errors=True)
    train = [*rotnet(env, root, args, "train"), *COMMON]
    rotation = root / "resnet18/rotation@20pc/seed0"  # a subset run's folder names its size
    subprocess.run([*train[:4], "rotation", *train[4:], "--epochs", "1"], env=env, check=True, capture_output=True)
    rows = {}
    counts = traced([*train[:4], "full-from-rotation", *train[4:], "--epochs", "1"], env, work / "train.strace")
    rows["train"] = (counts, root / "resnet18/full-from-rotation@20pc/seed0")
    shutil.rmtree(root / "resnet18/full-from-rotation@20pc")
    repro = [*rotnet(env, root, args, "reproduce"), *COMMON, "--experiments", "full-from-rotation", "--jobs", "1"]
    counts = traced([*repro, "--set", "epochs=1"], env, work / "reproduce.strace")
    rows["reproduce"] = (counts, root / "resnet18/full-from-rotation@20pc/seed0")
    other = work / f"resume-{label.replace(' ', '-')}"
    shutil.rmtree(other, ignore_errors=True)
    # the preset's 200 images per class: an epoch long enough (16 steps) to stop the run in its second
    slow = [x for x in COMMON if x not in ("--set", "train_per_class=20")]
    resume = [*rotnet(env, other, args, "train"), "rotation", *slow, "--epochs", "2", "--checkpoint-minutes", "0"]
    folder = other / "resnet18/rotation@200pc/seed0"
    stopped_rotation(resume, env, folder)
    rows["resume"] = (traced(resume, env, work / "resume.strace"), folder)
    print(f"opens per command ({label}):")
    for name, (counts, run) in rows.items():
        src = {f: counts[str(rotation / f)] for f in ("config.json", "manifest.json", "model.safetensors")}
        own = {f: counts[str(run / f)] for f in ("config.json", "manifest.json")}
        print(
            f"  {name:10s} run config.json {own['config.json']:3d}  manifest.json {own['manifest.json']:3d}   "
            f"rotation run config.json {src['config.json']:3d}  manifest.json {src['manifest.json']:3d}  "
            f"weights {src['model.safetensors']:3d}"
        )


if __name__ == "__main__":
    main()
