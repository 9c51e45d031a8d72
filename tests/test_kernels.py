"""Portable kernels (issue 25): a run whose bits do not depend on the CPU. Another CPU is emulated by limiting the
ISA that oneDNN, ATen and MKL may use, through the environment of a subprocess (they read it when torch starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rotnet.errors import RotnetError
from rotnet.kernels import PORTABLE_ENV


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return set()


def limits_below(flags: set[str]) -> dict[str, dict]:
    """Another CPU, emulated on this one: oneDNN, then ATen and MKL, limited to the ISA below the best this CPU has
    (AVX2 on an AVX-512 CPU, SSE4 on an AVX2 one); {} where neither (not an x86-64 CPU with AVX2)."""
    if "avx512f" in flags:
        onednn, aten, mkl = "AVX2", "avx2", "AVX2"
    elif "avx2" in flags:
        onednn, aten, mkl = "SSE41", "default", "SSE4_2"
    else:
        return {}
    return {
        "native": {},
        "onednn": {"ONEDNN_MAX_CPU_ISA": onednn},
        "aten+mkl": {"ATEN_CPU_CAPABILITY": aten, "MKL_ENABLE_INSTRUCTIONS": mkl},
    }


LIMITS = limits_below(cpu_flags())


def clean_env(limit: dict, portable: bool = False) -> dict:
    """This process's environment without any kernel setting, then `limit` (and the portable settings, if asked)."""
    env = {k: v for k, v in os.environ.items() if k not in (*PORTABLE_ENV, "ONEDNN_MAX_CPU_ISA")}
    return env | limit | (PORTABLE_ENV if portable else {}) | {"OMP_NUM_THREADS": "1"}


def rotnet(*args: str, limit: dict, cwd, portable: bool = False) -> subprocess.CompletedProcess:
    env = clean_env(limit, portable)
    return subprocess.run([sys.executable, "-m", "rotnet", *args], env=env, capture_output=True, text=True, cwd=cwd)


# A training step's kinds of op with torch's native kernels (convolution and batch norm: oneDNN and ATen; a linear
# head: MKL; cross-entropy: ATen's vectorized log_softmax), as a digest of its bits. Each limit must show in it: on an
# AMD EPYC (AVX-512) the convolutions alone came out the same under the ATen and MKL limits, and so would a verify
# under that limit have compared nothing.
NATIVE_BITS = """
import hashlib, torch
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 7, 2, 3), torch.nn.BatchNorm2d(64), torch.nn.Conv2d(64, 64, 3, 1, 1))
head = torch.nn.Linear(64, 1000)
y = net(torch.randn(16, 3, 32, 32))
logits = head(y.mean((2, 3)))
(y.square().mean() + torch.nn.functional.cross_entropy(logits, torch.arange(16))).backward()
out = [y.detach(), logits.detach(), net[0].weight.grad, head.weight.grad]
print(hashlib.sha256(b"".join(t.numpy().tobytes() for t in out)).hexdigest())
"""


def native_bits(limit: dict) -> str:
    done = subprocess.run([sys.executable, "-c", NATIVE_BITS], env=clean_env(limit), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not LIMITS, reason="emulates another CPU by limiting an x86-64 ISA (AVX2 or better)")
def test_portable_kernels_give_the_same_bits_under_every_isa_limit_where_native_ones_do_not(tmp_path, fake_root):
    native = {name: native_bits(limit) for name, limit in LIMITS.items()}
    assert len(set(native.values())) == len(LIMITS), native  # each limit really changes the native kernels' bits
    run = tmp_path / "runs/resnet18/rotation/seed0"
    args = ["train", "rotation", "--kernels", "portable", "--epochs", "1", "--batch-size", "32", "--device", "cpu"]
    args += ["--runs-root", str(tmp_path / "runs"), "--data-root", str(fake_root), "--no-download"]
    done = rotnet(*args, "--set", "eval_batch_size=64", limit={}, cwd=tmp_path)  # restarts itself with the settings
    assert done.returncode == 0, done.stderr
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["kernels"] == "portable"
    assert record["cpu"]["capability"] == "DEFAULT" and record["cpu"]["env"]["MKL_CBWR"] == "COMPATIBLE"
    # the portable run re-trained on two "other CPUs" (the oneDNN limit, the ATen and MKL limits): verify compares
    # every recorded number of the epoch and re-evaluates the final weights, so "verified" is "the same bits"
    for limit in ("onednn", "aten+mkl"):
        done = rotnet("verify", str(run), "--device", "cpu", "--data-root", str(fake_root), "--no-download",
                      limit=LIMITS[limit], cwd=tmp_path, portable=True)  # fmt: skip
        assert (
            done.returncode == 0
            and "verified: epoch 1 re-trained and the final weights they make identical" in done.stdout
        ), done.stdout + done.stderr


def test_the_python_api_asks_for_the_portable_settings_before_writing(tmp_path, fake_root, monkeypatch):
    import rotnet as api

    for k in PORTABLE_ENV:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RotnetError, match="ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE"):
        api.train("rotation", kernels="portable", runs_root=tmp_path / "runs", data_root=fake_root, download=False)
    assert not (tmp_path / "runs").exists()


def test_a_cli_call_inside_another_program_never_replaces_that_program(tmp_path, fake_root, monkeypatch, capsys):
    """`cli.main([... --kernels portable])` called from pytest re-executed pytest's own argv as rotnet's (the suite
    vanished with exit 2): only a process started as the rotnet command restarts itself."""
    from rotnet.cli import main

    for k in PORTABLE_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("execve called"))
    args = ["train", "rotation", "--kernels", "portable", "--runs-root", str(tmp_path / "runs")]
    assert main([*args, "--data-root", str(fake_root), "--no-download"]) == 2
    assert "kernels=portable needs settings that torch reads when it starts" in capsys.readouterr().err


def test_a_gpu_block_computes_deterministically_and_restores_what_was_set():
    """CUDA turns on deterministic algorithms, no cuDNN autotuning and cuBLAS's fixed workspace for a run (unless
    --nondeterministic), and gives back the process's settings after; the CPU's kernels are left as they are. (What
    the GPU then does is tested only where one is lent; here, what rotnet asks of torch.)"""
    import os

    import torch

    from rotnet.kernels import CUBLAS_WORKSPACE, deterministic

    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    for device, on, expect in [("cuda", True, True), ("cuda", False, False), ("cpu", True, False)]:
        with deterministic(on, torch.device(device)):
            assert torch.are_deterministic_algorithms_enabled() is expect
            assert torch.backends.cudnn.benchmark is (before[1] if not expect else False)
        assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == CUBLAS_WORKSPACE


def test_an_op_without_a_deterministic_kernel_is_named_in_one_line(monkeypatch):
    import torch

    from rotnet.errors import RotnetError
    from rotnet.kernels import deterministic

    with pytest.raises(RotnetError, match="no deterministic implementation.*--nondeterministic"):
        with deterministic(True, torch.device("cuda")):
            raise RuntimeError("foo_cuda has no deterministic implementation\nmore lines")


def test_another_cpu_is_emulated_on_any_x86_64_cpu_with_avx2():
    assert limits_below({"avx2", "avx512f"})["onednn"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert limits_below({"avx2"})["aten+mkl"] == {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}
    assert limits_below({"sse4_2"}) == {}
