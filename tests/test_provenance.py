"""Where a result came from (rotnet.provenance): versions, the command, the commit, and on a CPU the identity of
the kernels its arithmetic went through and its thread count as a number."""

import torch
import torchvision

import rotnet
from rotnet.provenance import KERNEL_ENV, cpu_identity, git_commit, provenance


def test_a_cpu_runs_provenance_names_versions_command_and_threads():
    p = provenance(torch.device("cpu"), "rotnet train rotation")
    assert p["command"] == "rotnet train rotation" and p["rotnet_version"] == rotnet.__version__
    assert (p["torch"], p["torchvision"]) == (torch.__version__, torchvision.__version__)
    assert p["cpu_threads"] == torch.get_num_threads() and isinstance(p["cpu_threads"], int)
    assert p["cpu"] == cpu_identity()


def test_the_cpu_identity_follows_the_variables_that_limit_the_kernels(monkeypatch):
    for name in KERNEL_ENV:
        monkeypatch.delenv(name, raising=False)
    assert cpu_identity()["env"] == {}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("UNRELATED_VARIABLE", "1")
    assert cpu_identity()["env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert cpu_identity()["capability"] == torch.backends.cpu.get_cpu_capability()


def test_the_commit_is_a_hash_or_says_unknown(monkeypatch):
    commit = git_commit()
    assert commit == "unknown" or len(commit.removesuffix("+dirty")) == 40
    monkeypatch.setenv("PATH", "/nonexistent")  # no git to ask
    assert git_commit() == "unknown"
