"""Check `--logger wandb` against the real wandb package, offline: a tiny `train rotation` is killed (SIGKILL) inside
its step 10 (checkpoints after steps 3 and 7) and resumed in a new process; prints each life's W&B run id and the
training steps its offline file holds. The tests use a stand-in module (wandb is no test dependency); this is the
check that W&B itself does what the stand-in assumes.

    pip install wandb
    python tools/wandb_resume.py ROOT DATA_ROOT     # ROOT: a new folder; DATA_ROOT: CIFAR-10 (any size)

Expected: both lives under one id; the first holds the steps it had sent before the kill (W&B's own process may be
killed with it before it writes any), the second the steps from its checkpoint on (8, 9, ...): W&B keeps the first
point at a step when the offline files are synced (`wandb sync`).
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

ARGS = "train rotation --epochs 3 --batch-size 20 --set eval_batch_size=64 --checkpoint-every 3 --no-download"


def life(root: str, data: str, dies: bool) -> int:
    """One process of the run; `dies`: SIGKILL itself inside its 10th step."""
    import rotnet.loop
    from rotnet.cli import main

    rotnet.loop.SYNC_EVERY = 1  # the loop reads its flags (and logs) every step
    if dies:
        real, calls = rotnet.loop.train_step, []

        def dying(*args, **kwargs):
            calls.append(1)
            if len(calls) == 10:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        rotnet.loop.train_step = dying
    return main([*ARGS.split(), "--runs-root", root, "--data-root", data, "--device", "cpu", "--logger", "wandb"])


def records(path: Path):
    """The protobuf records of a .wandb file: a 7-byte header, then LevelDB-log chunks (crc32, length, type) in
    32 KiB blocks; a record may span chunks (first, middle, last)."""
    raw, block, pos, buf = path.read_bytes(), 32768, 7, b""
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, size, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if kind == 0:
            break
        buf += raw[pos + 7 : pos + 7 + size]
        pos += 7 + size
        if kind in (1, 4):  # full, last
            yield buf
            buf = b""


def lives(run: Path) -> list[tuple[str, list[int]]]:
    """Each offline W&B run under RUN/wandb, in order: its id and the training steps of its history records."""
    from wandb.proto import wandb_internal_pb2 as pb

    out = []
    for folder in sorted(run.glob("wandb/offline-run-*")):
        steps = []
        for file in folder.glob("run-*.wandb"):
            for data in records(file):
                record = pb.Record()
                record.ParseFromString(data)
                if record.WhichOneof("record_type") == "history":
                    steps.append(record.history.step.num)
        out.append((folder.name.rsplit("-", 1)[1], steps))
    return out


if __name__ == "__main__":
    if len(sys.argv) == 4:
        sys.exit(life(sys.argv[1], sys.argv[2], sys.argv[3] == "dies"))
    root, data = sys.argv[1:3]
    env = os.environ | {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    for name in ("dies", "resumes"):
        done = subprocess.run([sys.executable, __file__, root, data, name], env=env, capture_output=True, text=True)
        print(f"{name}: exit {done.returncode}")
        if name == "resumes" and done.returncode:
            sys.exit(done.stderr)
    for i, (run_id, steps) in enumerate(lives(Path(root) / "resnet18/rotation/seed0"), 1):
        print(f"life {i}: W&B run {run_id}, steps {steps}")
