"""Where a result came from: versions, commit, device, command line."""

from __future__ import annotations

import os
import platform
import re
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


# What selects the CPU kernels torch runs, besides the CPU itself: ATen's vector ISA, oneDNN's ISA limit (two names),
# MKL's instruction set and its conditional-numerical-reproducibility branch.
KERNEL_ENV = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_CBWR",
    "MKL_DEBUG_CPU_TYPE",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_identity() -> dict:
    """Which CPU kernels a run's arithmetic went through: the CPU model and architecture, torch's CPU capability,
    the oneDNN and MKL versions and the variables that limit their ISA. Two processes with the same identity and
    thread count compute the same bits; with another identity the last bits may differ (README: Verify a result)."""
    config = torch.__config__.show()
    found = lambda pattern: m.group(1) if (m := re.search(pattern, config)) else "none"  # noqa: E731
    return {
        "model": cpu_model(),
        "machine": platform.machine(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "onednn": found(r"MKL-DNN (v[\d.]+)") if torch.backends.mkldnn.is_available() else "none",
        "mkl": found(r"Math Kernel Library Version ([\d.]+)"),
        "env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ},
    }


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
        **({"cpu": cpu_identity(), "cpu_threads": torch.get_num_threads()} if device.type == "cpu" else {}),
    }
