"""`rotnet bench` (rotnet.bench): throughput measured on the model and batch a run would use."""

from __future__ import annotations

import json


def test_bench_smoke(tmp_path, fake_root, capsys):
    from rotnet.cli import main

    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cpu", "--steps", "1", "--warmup", "0", "--batch-size", "8", "--out", str(out)]
    assert main([*args, "--data-root", str(fake_root), "--archs", "resnet18,resnet34"]) == 0
    result = json.loads(out.read_text())
    assert set(result["tasks"]) == {"rotation", "layer4"} and result["batch_size"] == 8
    # each arch's rotation step, measured in the same run, and its ratio to the first's
    first, deeper = result["archs"]
    assert (first["arch"], deeper["arch"], first["b_vs_first"]) == ("resnet18", "resnet34", 1.0)
    assert deeper["b_vs_first"] == deeper["b_rotnet"] / first["b_rotnet"] and deeper["a_model_only"] > 0
    for r in result["tasks"].values():  # every figure measured, every ratio the ratio of the figures it names
        assert all(r[k] > 0 for k in ("a_model_only", "b_rotnet", "c_plain_workers0", "c_plain_workers2", "eval"))
        assert r["b/a"] == r["b_rotnet"] / r["a_model_only"] and r["b/c0"] == r["b_rotnet"] / r["c_plain_workers0"]
    printed = capsys.readouterr().out
    assert f"| rotation | {result['tasks']['rotation']['a_model_only']:.0f} |" in printed
    assert (
        f"| resnet34 | {deeper['a_model_only']:.0f} | {deeper['b_rotnet']:.0f} | {deeper['b_vs_first']:.2f}x |"
        in printed
    )
    # A second bench never replaces the first's figures, and says so before it measures anything.
    capsys.readouterr()
    assert main([*args, "--data-root", str(fake_root)]) == 2
    assert "bench.json exists" in capsys.readouterr().err and json.loads(out.read_text()) == result
    assert main([*args[:-1], str(tmp_path / "missing" / "b.json"), "--data-root", str(fake_root)]) == 2
    assert "folder not found" in capsys.readouterr().err
    for archs, said in (
        ("resnet19", "unknown arch 'resnet19'"),
        (",", "the list of archs is empty"),
        ("resnet18,", "has an empty item"),
    ):
        assert main([*args[:-1], str(tmp_path / "c.json"), "--archs", archs]) == 2
        assert said in capsys.readouterr().err and not (tmp_path / "c.json").exists()


def test_the_deeper_models_speeds_in_the_docs_are_the_committed_benchs():
    """docs/performance.md's ResNet18/34/50 figures are bench-archs-cpu.json's (b) rotnet img/s and ratios."""
    import re
    from pathlib import Path

    docs = Path(__file__).parent.parent / "docs"
    archs = json.loads((docs / "results/bench-archs-cpu.json").read_text())["archs"]
    said = re.search(r"ResNet18 (\d+)\s+img/s, ResNet34 (\d+) \(([\d.]+)x\), ResNet50 (\d+) \(([\d.]+)x\)",
                     (docs / "performance.md").read_text().split("### Deeper models")[1])  # fmt: skip
    r18, r34, r50 = archs
    assert said and said.groups() == (
        f"{r18['b_rotnet']:.0f}",
        f"{r34['b_rotnet']:.0f}",
        f"{r34['b_vs_first']:.2f}",
        f"{r50['b_rotnet']:.0f}",
        f"{r50['b_vs_first']:.2f}",
    )


def test_the_gpu_figures_in_the_docs_are_the_committed_gpu_check():
    """docs/performance.md's H200 table, arch speeds, quick time and main-job estimate, and the README's, are
    gpu-h200.json's (benchmarks/gpu.py's output), computed here as the docs say they were."""
    import re
    from pathlib import Path

    top = Path(__file__).parent.parent
    check = json.loads((top / "docs/results/gpu-h200.json").read_text())["at_2d7a636"]
    perf, readme = (top / "docs/performance.md").read_text(), (top / "README.md").read_text()
    section = perf[perf.index("### On a GPU") :]
    for task, row in check["bench"]["figures"]["tasks"].items():
        cells = [f"{row[k]:.0f}" for k in ("a_model_only", "b_rotnet", "c_plain_workers0", "c_plain_workers2")]
        cells += [f"{row[k]:.2f}" for k in ("b/a", "b/c0", "b/c2")] + [f"{row['eval']:.0f}"]
        assert f"| {task} | {' | '.join(cells)} |" in section, task
    r18, r34, r50 = check["bench"]["figures"]["archs"]
    assert (f"ResNet18 {r18['b_rotnet']:.0f} img/s, ResNet34 {r34['b_rotnet']:.0f} ({r34['b_vs_first']:.2f}x), "
            f"ResNet50 {r50['b_rotnet']:.0f} ({r50['b_vs_first']:.2f}x)") in section  # fmt: skip

    runs, wall = check["quick"]["runs"], check["quick"]["seconds"]

    def per_epoch(*names):
        seconds = [s for n in names for s in runs[n]["seconds_per_epoch"]]
        return sum(seconds) / len(seconds)

    rotation, full = per_epoch("rotation"), per_epoch("full-from-rotation", "full-from-random")
    layer4 = per_epoch("layer4-from-rotation", "layer4-from-random")
    starting = wall - sum(sum(r["seconds_per_epoch"]) for r in runs.values())
    main_job = 45 * rotation + 40 * full + 40 * layer4 + starting
    said = re.sub(r"\s+", " ", section)
    assert (f"took {wall:.0f} s. Its epochs took {rotation:.1f} s (rotation), {full:.1f} s (whole network) and "
            f"{layer4:.1f} s (layer4)") in said  # fmt: skip
    assert f"about {main_job / 60:.0f} minutes, with the quick run's {starting:.0f} s" in said
    assert f"quick {wall:.0f} s, the main job about {main_job / 60:.0f} minutes" in re.sub(r"\s+", " ", readme)
    assert check["verify_quick_rotation"]["exit"] == 0
    fixed = json.loads((top / "docs/results/gpu-h200.json").read_text())["resume_at_d764f4a"]
    assert fixed["resumed_exit"] == 0 and fixed["verify_all_exit"] == 0 and check["resume"]["resumed_exit"] == 1
    again = json.loads((top / "docs/results/gpu-h200.json").read_text())["at_8d93cb6"]
    assert again["verify_quick_rotation"]["exit"] == 0 and again["resume"]["verify_all_exit"] == 0
    counts = re.search(r"(\d+) failed, (\d+) passed, (\d+) skipped", again["suite"]["outcome"]).groups()
    assert (f"quick preset took {again['quick']['seconds']:.0f} s" in said
            and "{1} passed, {2} skipped, {0} failed".format(*counts) in said)  # fmt: skip


def test_every_timed_step_holds_the_images_it_is_counted_for(tmp_path, fake_root, monkeypatch, capsys):
    """images/s counts batch x steps. On data that the steps outrun (80 images, 4 steps of 32), rotnet's pipeline
    (b) trained short and empty batches, counted full, and the plain one (c) ended in StopIteration; a batch of one
    image was batch norm's traceback. Now every step of (a), (b) and (c) holds the batch, and a batch outside 2 to
    the images is one line."""
    from rotnet import bench
    from rotnet.cli import main

    held = []

    def recording(forward, opt, inputs, targets, *a, **k):
        held.append(len(inputs))
        return train_step(forward, opt, inputs, targets, *a, **k)

    train_step = bench.train_step
    monkeypatch.setattr(bench, "train_step", recording)
    args = ["bench", "--device", "cpu", "--steps", "3", "--warmup", "1", "--data-root", str(fake_root)]
    assert main([*args, "--batch-size", "32", "--out", str(tmp_path / "b.json")]) == 0
    assert held and set(held) == {32}, held
    for batch in ("1", "81"):
        assert main([*args, "--batch-size", batch, "--out", str(tmp_path / f"{batch}.json")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == f"rotnet: error: --batch-size must be from 2 to the 80 training images; got {batch}"
