"""What a GPU user meets first, checked on a GPU: speed, the main job's time, strict verify, bit-exact resume.

Four steps, each a `rotnet` command in its own process (as a user runs them), on a CIFAR-10 of random pixels in
the official layout and at its full size (50,000 + 10,000 images: the speed is that of the real data; the
accuracies mean nothing):
1. `rotnet bench --archs resnet18,resnet34,resnet50`: images/s, model only vs rotnet vs the plain pipeline;
2. `rotnet reproduce --preset quick`: the five experiments' wall time on the full data (6 + 4 x 4 epochs), from
   which each run's seconds per epoch and the paper protocol's time (45 + 4 x 20 epochs) follow;
3. `rotnet verify` of the quick rotation run on the same GPU: deterministic kernels, so a strict comparison;
4. a rotation run stopped by Ctrl-C (SIGINT) mid-epoch right after a step checkpoint, resumed, then
   `rotnet verify --all`: every epoch re-trained from scratch must give the resumed run's bits.

    python benchmarks/gpu.py --work /tmp/gpu-check --out gpu-check.json [--device cuda]

It prints one line per step and writes the figures as JSON. On a CPU it runs too (tiny data: --images 100).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rotnet.readers import FOLDER, TEST_FILES, TRAIN_FILES
from rotnet.readers import META_FILE as META

FILES = TRAIN_FILES + TEST_FILES
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fake_cifar10(root: Path, per_file: int) -> Path:
    """Random pixels in the official `cifar-10-batches-py` layout (protocol-2 pickles of dicts)."""
    folder = root / FOLDER
    if (folder / META).is_file():
        return root
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in FILES:
        labels = [int(v) for v in rng.integers(0, 10, per_file)]
        data = rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": []}, f, protocol=2)
    with open(folder / META, "wb") as f:
        pickle.dump({"label_names": CLASSES, "num_cases_per_batch": per_file, "num_vis": 3072}, f, protocol=2)
    return root


def rotnet(*args: str, log: Path) -> tuple[int, float]:
    """`rotnet ARGS` in its own process; its exit code and wall seconds (output appended to log)."""
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n$ rotnet {' '.join(args)}\n")
        out.flush()
        code = subprocess.run([sys.executable, "-m", "rotnet", *args], stdout=out, stderr=subprocess.STDOUT).returncode
    return code, time.perf_counter() - start


def stopped_mid_epoch(args: list[str], run: Path, log: Path) -> dict:
    """`rotnet ARGS` stopped by SIGINT as soon as its first checkpoint is on disk (mid-epoch), then run again to
    resume: the first exit code, the checkpoint it stopped after, the resumed run's exit code."""
    with open(log, "a") as out:
        out.write(f"\n$ rotnet {' '.join(args)}   (SIGINT after its first checkpoint)\n")
        out.flush()
        proc = subprocess.Popen([sys.executable, "-m", "rotnet", *args], stdout=out, stderr=subprocess.STDOUT)
        first = None
        while proc.poll() is None and first is None:
            found = sorted((run / "checkpoints").glob("e*-s*.safetensors"))
            first = found[0].name if found else None
            time.sleep(0.02)
        if first is not None:
            proc.send_signal(signal.SIGINT)
        stopped = proc.wait()
    resumed, seconds = rotnet(*args, log=log)
    said = [line.split(": ", 1)[-1] for line in log.read_text().splitlines() if ": resuming at " in line]
    return {
        "stopped_exit": stopped,
        "first_checkpoint": first,
        "resumed_exit": resumed,
        "resumed_s": round(seconds, 1),
        "resumed_at": said[-1] if said else None,
    }


def epochs_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def quick_and_verify(work: Path, common: list[str], log: Path, figures: dict) -> None:
    quick = work / "quick"
    code, secs = rotnet("reproduce", "--preset", "quick", "--runs-root", str(quick), *common, log=log)
    runs = {}
    for config in sorted(quick.glob("resnet18/*/seed0/config.json")):
        rows = epochs_of(config.parent)
        runs[config.parent.parent.name] = {
            "epochs": len(rows),
            "seconds_per_epoch": [round(r["seconds"], 2) for r in rows],
            "images_per_s": [round(r["images_per_s"]) for r in rows],
            "test_acc": rows[-1].get("test_acc") if rows else None,
        }
    figures["quick"] = {"exit": code, "seconds": round(secs, 1), "runs": runs}
    print(f"reproduce --preset quick: exit {code}, {secs:.0f} s; " + ", ".join(f"{k} {len(v['seconds_per_epoch'])} ep"
          for k, v in runs.items()), flush=True)  # fmt: skip

    rotation = quick / "resnet18" / "rotation" / "seed0"
    code, secs = rotnet("verify", str(rotation), *common, log=log)
    figures["verify_quick_rotation"] = {"exit": code, "seconds": round(secs, 1)}
    print(f"verify quick rotation: exit {code} (0: verified), {secs:.0f} s", flush=True)


def resume_and_verify(work: Path, common: list[str], log: Path, figures: dict, checkpoint_every: str) -> None:
    resume_root = work / "resume"
    train = ["train", "rotation", "--preset", "quick", "--epochs", "2", "--lr-step-epochs", "1", "--checkpoint-every",
             checkpoint_every, "--runs-root", str(resume_root), *common]  # fmt: skip
    run = resume_root / "resnet18" / "rotation" / "seed0"
    figures["resume"] = stopped_mid_epoch(train, run, log)
    code, secs = rotnet("verify", str(run), "--all", *common, log=log)
    figures["resume"]["verify_all_exit"] = code
    print(f"stopped mid-epoch and resumed: {figures['resume']}; verify --all: exit {code} (0: verified)", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="a new or empty folder: data, runs, log")
    p.add_argument("--out", type=Path, required=True, help="a new file for the figures as JSON")
    p.add_argument("--device", default="cuda")
    p.add_argument("--images", type=int, default=10_000, help="images per batch file (the real data: 10,000)")
    p.add_argument("--checkpoint-every", default="150", help="steps; the resume check stops after the first")
    p.add_argument("--checks", default="bench,quick,resume", help="which steps: bench (1), quick (2, 3), resume (4)")
    a = p.parse_args()
    work, log = a.work, a.work / "gpu-check.log"
    if a.out.exists() or (work.exists() and any(work.iterdir())):  # old runs would be reused: their times are not ours
        sys.exit(f"gpu.py: {a.out if a.out.exists() else work} exists; name a new --out and an empty or new --work")
    work.mkdir(parents=True, exist_ok=True)
    data = str(fake_cifar10(work / "data", a.images))
    common = ["--data-root", data, "--no-download", "--device", a.device]
    figures: dict = {"device": a.device, "images_per_file": a.images}
    os.environ.setdefault("PYTHONUNBUFFERED", "1")

    checks = a.checks.split(",")
    if "bench" in checks:
        bench = work / "bench.json"
        code, secs = rotnet("bench", "--archs", "resnet18,resnet34,resnet50", "--data-root", data, "--device",
                            a.device, "--out", str(bench), log=log)  # fmt: skip
        figures["bench"] = {"exit": code, "seconds": round(secs, 1)}
        if bench.is_file():
            figures["bench"]["figures"] = json.loads(bench.read_text())
        print(f"bench: exit {code}, {secs:.0f} s", flush=True)

    if "quick" in checks:
        quick_and_verify(work, common, log, figures)
    if "resume" in checks:
        resume_and_verify(work, common, log, figures, a.checkpoint_every)
    a.out.write_text(json.dumps(figures, indent=1) + "\n")
    expected = {"bench": 0, "quick": 0, "verify_quick_rotation": 0}  # and the resume: stopped by SIGINT, then 0, 0
    failed = [k for k, code in expected.items() if k in figures and figures[k]["exit"] != code]
    resume = figures.get("resume")
    if resume and (resume["stopped_exit"], resume["resumed_exit"], resume["verify_all_exit"]) != (130, 0, 0):
        failed.append("resume")
    if failed:
        print(f"gpu.py: not as expected: {', '.join(failed)} (the commands' output: {log})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
