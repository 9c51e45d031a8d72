"""Can a CPU run be re-checked bit for bit on another x86-64 CPU, and at what cost? (issue 25)

Trains one short rotation run (smoke preset, on a small labeled folder of CIFAR-10 images, so that each run also
evaluates quickly) per (kernel setting, emulated CPU) pair, each in its own process on one thread, and compares
their metrics.jsonl (all fields but the timings). Another CPU is emulated by limiting the ISA that a kernel library
may use on this one, through the variables those libraries read at start:

    native             nothing limited
    onednn-avx512core  ONEDNN_MAX_CPU_ISA=AVX512_CORE
    onednn-avx2        ONEDNN_MAX_CPU_ISA=AVX2
    aten-avx2          ATEN_CPU_CAPABILITY=avx2
    mkl-avx2           MKL_ENABLE_INSTRUCTIONS=AVX2

A kernel setting is portable when every emulated CPU gives the same bits. It prints one line per run, then per
setting: distinct answers over the emulated CPUs and its training speed against the default's, measured in this one
run (the runs interleave, so a noisy machine slows them alike).

    python benchmarks/portable.py --data-root DATA --work /tmp/portable-bench
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

EMULATED = {
    "native": {},
    "onednn-avx512core": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "mkl-avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}

# Each setting: variables it pins (they win over an emulated limit on the same variable, as they would on a real
# CPU) and whether oneDNN convolutions are turned off.
SETTINGS = {
    "default": ({}, False),
    "mkldnn-off": ({}, True),
    "aten-default": ({"ATEN_CPU_CAPABILITY": "default"}, False),
    "mkl-compatible": ({"MKL_CBWR": "COMPATIBLE"}, False),
    "onednn-sse41+aten+mkl": (
        {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"},
        False,
    ),
    "mkldnn-off+aten+mkl": ({"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}, True),
}
KERNEL_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")
TIMINGS = ("seconds", "images_per_s", "eval_images_per_s")
CHILD = "import sys, torch; torch.backends.mkldnn.enabled = sys.argv.pop(1) != 'off'; from rotnet.cli import main; "
CHILD += "raise SystemExit(main(sys.argv[1:]))"


def small_cifar(args, work: Path) -> Path:
    """A labeled image folder of the first --train-per-class training images of each class and a tenth as many test
    images (PNG files read back exactly): every run evaluates quickly, on real images."""
    import warnings

    from PIL import Image

    from rotnet.readers import load_cifar10

    folder = work / f"cifar10-{args.train_per_class}pc"
    if folder.is_dir():
        return folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_cifar10(args.data_root, download=False)
    for split, images, labels, per_class in (
        ("train", data.train_images, data.train_labels, args.train_per_class),
        ("test", data.test_images, data.test_labels, max(1, args.train_per_class // 10)),
    ):
        counts = [0] * len(data.class_names)
        for i, (x, y) in enumerate(zip(images, labels.tolist(), strict=True)):
            if counts[y] < per_class:
                counts[y] += 1
                (folder / split / data.class_names[y]).mkdir(parents=True, exist_ok=True)
                name = folder / split / data.class_names[y] / f"{i:05d}.png"
                Image.fromarray(x.numpy().transpose(1, 2, 0)).save(name)
    return folder


def run_one(setting: str, cpu: str, args, work: Path, folder: Path) -> tuple[str, float]:
    pins, mkldnn_off = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_VARS}
    env.update(EMULATED[cpu], **pins, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = work / f"{setting}__{cpu}"
    shutil.rmtree(root, ignore_errors=True)
    command = [sys.executable, "-c", CHILD, "off" if mkldnn_off else "on", "train", "rotation", "--preset", "smoke"]
    command += ["--epochs", str(args.epochs), "--device", "cpu", "--dataset", str(folder), "--normalization", "seed"]
    command += ["--runs-root", str(root), "--set", "eval_every=1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{setting} on {cpu} failed:\n{done.stderr[-2000:]}")
    lines = [json.loads(x) for x in next(root.rglob("metrics.jsonl")).read_text().splitlines()]
    kept = [{k: v for k, v in line.items() if k not in TIMINGS} for line in lines]
    digest = hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]
    speed = statistics.fmean(line["images_per_s"] for line in lines)
    print(f"{setting:24s} {cpu:18s} {digest}  {speed:6.1f} img/s  last: {kept[-1]}", flush=True)
    return digest, speed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="a scratch folder for the runs (emptied per run)")
    p.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated, from: " + ", ".join(SETTINGS))
    p.add_argument("--cpus", default=",".join(EMULATED), help="comma-separated, from: " + ", ".join(EMULATED))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-per-class", type=int, default=100, help="of training images (a tenth as many to test)")
    args = p.parse_args()
    settings, cpus = args.settings.split(","), args.cpus.split(",")
    folder = small_cifar(args, args.work)
    results = {(s, c): run_one(s, c, args, args.work, folder) for c in cpus for s in settings}
    base = statistics.fmean(results["default", c][1] for c in cpus) if "default" in settings else None
    print("\nsetting                  answers over the emulated CPUs   speed vs default")
    for s in settings:
        answers = len({results[s, c][0] for c in cpus})
        speed = statistics.fmean(results[s, c][1] for c in cpus)
        ratio = f"{speed / base:.2f}x" if base else "-"
        print(f"{s:24s} {answers} of {len(cpus):<29d} {ratio}")


if __name__ == "__main__":
    main()
