"""Where a result came from: versions, commit, device, command line."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch
import torchvision

import rotnet
from rotnet.runtime import threads_text


def git_commit() -> str:
    """The commit of the rotnet source tree, with '+dirty' if it has uncommitted changes; 'unknown' if none."""
    here = Path(rotnet.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({threads_text(torch.get_num_threads())})"


def provenance(device: torch.device, command: str = "") -> dict:
    """Versions, commit and device; `command` is how the user asked for the run (default: this process's argv)."""
    return {
        "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "rotnet_version": rotnet.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
        "device_name": device_name(device),
    }
