"""How a process runs, as opposed to what it trains: the device, torchrun's world, CPU threads and host memory."""

from __future__ import annotations

import contextlib
import os
import re

import torch

from rotnet.distributed import World, init_from_env
from rotnet.errors import RotnetError, unknown
from rotnet.kernels import prepare_gpu


def resolve_device(name: str) -> torch.device:
    """The one reader of a device's name (--device, the API's device=): auto, cpu, cuda or cuda:N."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(name, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", name):  # torch took "cuda:x" as a traceback
        raise unknown("device", name, ("auto", "cpu", "cuda", "cuda:N"))
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RotnetError(
            f"--device {name} asked for, but torch sees no CUDA device; use --device cpu (or auto: cuda when present)"
        )
    if name.startswith("cuda:") and int(name[5:]) >= (count := torch.cuda.device_count()):
        raise RotnetError(
            f"--device {name} asked for, but torch sees {count} CUDA device(s): cuda:0 to cuda:{count - 1}"
        )
    device = torch.device(name)
    prepare_gpu(device)  # before cuBLAS starts
    return device


def threads_text(n: int) -> str:
    """A CPU thread count as provenance records it and messages say it: "1 thread", "2 threads"."""
    return f"{n} thread{'s' * (n != 1)}"


def recorded_threads(record: dict | None) -> int | None:
    """The CPU thread count a run started on (its config.json's `cpu_threads`; a record before 0.7 has it only in
    its `device_name` text, "x86_64 (2 threads)"); None if not recorded."""
    record = record if isinstance(record, dict) else {}
    count = record.get("cpu_threads")
    if isinstance(count, int) and not isinstance(count, bool) and count > 0:
        return count
    found = re.search(r"\((\d+) threads?\)$", str(record.get("device_name", "")))
    return int(found.group(1)) if found else None


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Run the block on n CPU threads (None: as they are), then restore the count. CPU sums depend on it, so a
    resumed or re-checked run uses the count it started with."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def setup_device(name: str) -> tuple[torch.device, World]:
    """The device for this process and its place among torchrun's ranks (a world of one without torchrun)."""
    world = init_from_env(name)
    device = resolve_device(name)
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    return device, world


def host_memory_available() -> int:
    """Bytes of host memory a process can take now without swapping (Linux's MemAvailable: free memory and the page
    cache it can drop; elsewhere the free pages), or a huge number when the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 1 << 62
