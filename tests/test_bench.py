"""`rotnet bench` (rotnet.bench): throughput measured on the model and batch a run would use."""

from __future__ import annotations

import json


def test_bench_smoke(tmp_path, fake_root, capsys):
    from rotnet.cli import main

    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cpu", "--steps", "1", "--warmup", "0", "--batch-size", "8", "--out", str(out)]
    assert main([*args, "--data-root", str(fake_root)]) == 0
    result = json.loads(out.read_text())
    assert set(result["tasks"]) == {"rotation", "layer4"} and result["batch_size"] == 8
    for r in result["tasks"].values():  # every figure measured, every ratio the ratio of the figures it names
        assert all(r[k] > 0 for k in ("a_model_only", "b_rotnet", "c_plain_workers0", "c_plain_workers2", "eval"))
        assert r["b/a"] == r["b_rotnet"] / r["a_model_only"] and r["b/c0"] == r["b_rotnet"] / r["c_plain_workers0"]
    printed = capsys.readouterr().out
    assert f"| rotation | {result['tasks']['rotation']['a_model_only']:.0f} |" in printed
    # A second bench never replaces the first's figures, and says so before it measures anything.
    capsys.readouterr()
    assert main([*args, "--data-root", str(fake_root)]) == 2
    assert "bench.json exists" in capsys.readouterr().err and json.loads(out.read_text()) == result
    assert main([*args[:-1], str(tmp_path / "missing" / "b.json"), "--data-root", str(fake_root)]) == 2
    assert "folder not found" in capsys.readouterr().err
