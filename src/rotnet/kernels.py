"""Which CPU kernels a run computes with. `native` (the default) lets torch, oneDNN and MKL pick the fastest kernels
for this CPU, so the last bits of a result depend on the CPU. `portable` computes with kernels whose bits do not:
oneDNN off (its JIT kernels are tuned to the CPU; oneDNN promises identical results only on the same machine), ATen
at its generic (non-AVX) capability, and MKL on its conditional-numerical-reproducibility COMPATIBLE branch, which
Intel documents as giving the same results on every Intel and compatible CPU for a fixed thread count. ATen and MKL
read their settings once, when torch starts, so a portable run needs them in the environment of its process: the
command line restarts itself with them and the Python API asks for them (`ensure`)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from rotnet.errors import RotnetError

PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "MKL_DYNAMIC": "FALSE",
    "OMP_DYNAMIC": "FALSE",
}


def own_argv() -> bool:
    """Whether this process's argv is a rotnet command line (the `rotnet` script or `python -m rotnet`), which it
    can run again; `cli.main([...])` called from another program (a test, a notebook) must not replace it."""
    first = Path(sys.argv[0] if sys.argv else "")
    return first.name == "rotnet" or (first.name == "__main__.py" and first.parent.name == "rotnet")


def active() -> bool:
    """Whether this process started with the portable settings in its environment."""
    return all(os.environ.get(k) == v for k, v in PORTABLE_ENV.items())


def env_text() -> str:
    return " ".join(f"{k}={v}" for k, v in PORTABLE_ENV.items())


def ensure(kernels: set[str] | list[str]) -> None:
    """Before anything is written: a portable run in a process that started without the portable settings restarts
    the command with them (the command line), or is refused with the way to start one (the Python API)."""
    if "portable" not in kernels or active():
        return
    if own_argv():
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-m", "rotnet", *sys.argv[1:]], os.environ | PORTABLE_ENV)
    raise RotnetError(
        f"kernels=portable needs settings that torch reads when it starts: run `{env_text()} python ...`, or use the "
        "rotnet command, which sets them itself"
    )


@contextlib.contextmanager
def computing_with(kernels: str, device):
    """The block computes with these kernels: for portable, on a CPU in a process that started with the settings,
    with oneDNN off (restored after)."""
    import torch

    if kernels != "portable":
        yield
        return
    if device.type != "cpu":
        raise RotnetError(f"kernels=portable is for CPU runs (this run is on {device}); CUDA has its own kernels")
    if not active() or torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        ensure(["portable"])
        raise RotnetError(f"torch started before the portable settings were set ({env_text()}); start it again")
    before = torch.backends.mkldnn.enabled  # not mkldnn.flags(): it also sets TF32 and warns about Intel GPUs
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


# cuBLAS's fixed workspace: its sums then repeat run to run (NVIDIA's documented setting; read when cuBLAS starts).
CUBLAS_WORKSPACE = ":4096:8"


def prepare_gpu(device) -> None:
    """Before anything runs on a GPU: cuBLAS's fixed workspace, unless the user set one (harmless if never asked
    for deterministic kernels: it only sizes a buffer)."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


@contextlib.contextmanager
def deterministic(on: bool, device):
    """The block computes deterministically on a GPU when `on`: deterministic algorithms (an op that has none
    raises, named, instead of varying), no cuDNN autotuning, cuBLAS's fixed workspace; restored after. Nothing
    changes on the CPU, whose kernels already give the same bits for a thread count."""
    import torch

    if device.type != "cuda" or not on:
        yield
        return
    prepare_gpu(device)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    before += (torch.backends.cudnn.deterministic,)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    except RuntimeError as e:
        if "deterministic" not in str(e):
            raise
        first = str(e).splitlines()[0]
        raise RotnetError(f"{first}; to run it anyway, add --nondeterministic (its bits then do not repeat)") from None
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before[2]
