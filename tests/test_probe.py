"""`rotnet probe` (rotnet.probe): per-stage probes and kNN sealed into the run, kept apart per dataset, tables with
intervals."""

import json

import numpy as np
import pytest
import torch

from rotnet.cli import main
from rotnet.evaluate import STAGES
from tests.helpers import TINY_PRESET, no_hang, write_fake_cifar100


@pytest.mark.plots
def test_probe_label_efficiency_and_knn_end_to_end(tmp_path, fake_root):
    root = tmp_path / "runs"
    common = ["--runs-root", str(root), "--data-root", str(fake_root), "--no-download"]
    assert (
        main(
            [
                "label-efficiency",
                "--per-class",
                "2,4",
                "--preset",
                TINY_PRESET,
                "--min-steps",
                "1",  # 2 and 1 epochs at 2 and 4 per class (4 steps were 7 and 4 epochs)
                "--set",
                "knn_every=1",
                *common,
            ]
        )
        == 0
    )
    rotation = root / "resnet18/rotation/seed0"
    history = [json.loads(line) for line in (rotation / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= h["knn_acc"] <= 100 for h in history)
    for arm in ("full-from-rotation", "full-from-random"):
        for n in (2, 4):
            cfg = json.loads((root / f"resnet18/{arm}@{n}pc/seed0/config.json").read_text())["config"]
            assert cfg["train_per_class"] == n
    assert main(["probe", str(rotation), "--epochs", "2", "--data-root", str(fake_root), "--no-download"]) == 0
    probe = json.loads((rotation / "probe/probe-linear-pool1-e2.json").read_text())
    assert set(probe["accuracy"]) == {"pretrained", "random"} and set(probe["accuracy"]["random"]) == set(STAGES)
    assert sorted(p.name for p in (rotation / "probe").iterdir()) == ["probe-linear-pool1-e2.json"]  # no features kept
    assert main(["report", str(root)]) == 0
    report = (root / "report.md").read_text()
    for section in ("## kNN monitor", "## Per-layer probes", "## Label efficiency", "full-from-rotation@2pc"):
        assert section in report
    for png in ("knn", "probe", "label_efficiency"):
        assert (root / "plots" / f"{png}.png").is_file()


def test_probe_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["probe", str(tmp_path)]) == 2
    assert "is not a rotnet run folder" in capsys.readouterr().err


def test_probes_on_other_data_keep_their_own_files(tiny_runs, tmp_path, fake_root):
    """A probe on CIFAR-100 once replaced the run's CIFAR-10 probe (same file name, no record of the data)."""
    import shutil

    run = tmp_path / "resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    c100 = write_fake_cifar100(tmp_path / "c100")
    common = ["probe", str(run), "--epochs", "1", "--no-download"]
    assert main([*common, "--data-root", str(fake_root)]) == 0
    assert main([*common, "--data-root", str(c100), "--dataset", "cifar100"]) == 0
    own = json.loads((run / "probe/probe-linear-pool1-e1.json").read_text())
    other = json.loads((run / "probe/probe-linear-pool1-e1-cifar100-32px.json").read_text())
    assert own["data"] == "cifar10 32px" and other["data"] == "cifar100 32px"
    assert main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "epochs, on cifar10 32px" in report and "epochs, on cifar100 32px" in report


@pytest.mark.parametrize(
    "second, name",
    [
        (["--epochs", "2"], "probe-linear-pool1-e2.json"),
        (["--data-root", "COPY"], "probe-linear-pool1-e1-cifar10-32px-files-"),  # another copy of the run's CIFAR-10
        (["--head", "mlp"], "probe-mlp-pool1-e1.json"),
        (["--pool", "2"], "probe-linear-pool2-e1.json"),
        (["--dataset", "cifar100", "--data-root", "C100"], "probe-linear-pool1-e1-cifar100-32px.json"),
    ],
)
def test_a_probe_made_another_way_keeps_the_earlier_ones_file(tiny_runs, tmp_path, fake_root, second, name):
    """A probe replaces only one made the same way: with other --epochs, or on another copy of the run's dataset
    (its results said "cifar10 32px", the run's own data), it had replaced the earlier probe's file."""
    import shutil

    from tests.conftest import write_fake_cifar

    run = tmp_path / "resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    common = ["probe", str(run), "--epochs", "1", "--data-root", str(fake_root), "--no-download"]
    assert main(common) == 0
    first = (run / "probe/probe-linear-pool1-e1.json").read_bytes()
    places = {
        "COPY": lambda: write_fake_cifar(tmp_path / "copy", seed=1),
        "C100": lambda: write_fake_cifar100(tmp_path / "c"),
    }
    second = [str(places[a]()) if a in places else a for a in second]
    assert main([*common, *second]) == 0  # a flag given twice: argparse takes the last
    made = sorted(p.name for p in (run / "probe").iterdir())
    assert len(made) == 2 and (run / "probe/probe-linear-pool1-e1.json").read_bytes() == first, made
    other = next(p for p in made if p != "probe-linear-pool1-e1.json")
    assert other.startswith(name)
    said = json.loads((run / "probe" / other).read_text())["data"]
    assert ("other files than the run's" in said) == ("files-" in name), said
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").read_text().count("head, pool") == 2  # both shown


def test_probe_results_are_sealed_into_the_run_and_the_report_shows_only_those(tiny_runs, tmp_path, fake_root):
    """A probe seals its results into the run's manifest, and the report shows only sealed ones: an edited accuracy,
    or a probe file put into a run by hand, is named, not shown."""
    import shutil

    from rotnet.record import inspect

    run = tmp_path / "resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    assert main(["probe", str(run), "--epochs", "1", "--data-root", str(fake_root), "--no-download"]) == 0
    listed = json.loads((run / "manifest.json").read_text())["files"]
    assert "probe/probe-linear-pool1-e1.json" in listed and inspect(run).status == "sealed"
    planted = json.loads((run / "probe/probe-linear-pool1-e1.json").read_text()) | {"head": "mlp"}
    (run / "probe/probe-mlp-pool1-e1.json").write_text(json.dumps(planted))  # by hand: no seal
    assert main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "linear head, pool 1" in report and "mlp head" not in report
    assert "1 probe file(s) that their run's manifest.json does not vouch for are not shown" in report
    edited = json.loads((run / "probe/probe-linear-pool1-e1.json").read_text())
    edited["accuracy"]["pretrained"]["layer4"] = 99.0
    (run / "probe/probe-linear-pool1-e1.json").write_text(json.dumps(edited))
    assert inspect(run).status == "tampered"  # a listed file that changed: the whole record says so
    assert main(["report", str(tmp_path)]) == 0
    assert "99.00" not in (tmp_path / "report.md").read_text()


def test_probe_says_what_it_does_keeps_features_only_when_asked_and_flags_useless_pretraining(
    tiny_runs, tmp_path, fake_root, capsys, monkeypatch
):
    """The probe says what it does while it works, keeps features only in --feature-cache, and says when the
    pretrained features are worse than random at every stage."""
    import shutil

    import rotnet.probe

    run = tmp_path / "runs/resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    extracted, real = [], rotnet.probe.extract
    monkeypatch.setattr(rotnet.probe, "extract", lambda *a, **kw: extracted.append(1) or real(*a, **kw))
    common = ["probe", str(run), "--epochs", "1", "--data-root", str(fake_root), "--no-download"]
    cache = tmp_path / "features"
    assert main([*common, "--feature-cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("probe: 80 train and 16 test images of cifar10 32px; features of 5 stages")
    assert len(extracted) == 4 and len(list(cache.iterdir())) == 2  # train and test, pretrained and random
    assert main([*common, "--feature-cache", str(cache), "--head", "mlp"]) == 0
    assert len(extracted) == 4  # the second probe read them from the cache
    assert sorted(p.name for p in (run / "probe").iterdir()) == [
        "probe-linear-pool1-e1.json",
        "probe-mlp-pool1-e1.json",
    ]

    # Pretrained heads that score below the random-init ones at every stage: a warning says so, naming no stage.
    scores = iter([10.0] * len(STAGES) + [20.0] * len(STAGES))
    monkeypatch.setattr(rotnet.probe, "fit_head", lambda *a, **kw: next(scores))
    capsys.readouterr()
    assert main(common) == 0
    err = capsys.readouterr().err
    assert "pretrained features are not better than random init at every stage" in err
    scores = iter([30.0, 10.0, 30.0, 30.0, 30.0] + [20.0] * len(STAGES))
    assert main(common) == 0
    assert "not better than random init at layer1:" in capsys.readouterr().err


def damage_feature_entry(path, how):
    from safetensors.torch import load_file, save_file

    from rotnet.checkpoint import load_tensors

    data = path.read_bytes()
    if how == "garbage":
        path.write_bytes(b"garbage")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "edited":  # one feature value changed, the header (and its checksum) kept
        path.write_bytes(data[:-4] + bytes(b ^ 0xFF for b in data[-4:]))
    else:  # "unsealed": the same tensors and key written by something else, without rotnet's checksum
        _, meta = load_tensors(path)
        save_file(load_file(path), path, metadata={"meta": json.dumps(meta)})


@pytest.mark.parametrize("how", ["garbage", "truncated", "edited", "unsealed"])
def test_a_damaged_feature_cache_entry_is_extracted_again(tiny_runs, tmp_path, fake_root, capsys, monkeypatch, how):
    """A damaged entry in --feature-cache stopped the probe ("... is not a readable safetensors file"), and one
    written without rotnet's checksum was taken as features: each is extracted again and replaced, as a damaged
    image-cache entry is prepared again."""
    import shutil

    import rotnet.probe
    from rotnet.checkpoint import load_tensors

    run = tmp_path / "runs/resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    extracted, real = [], rotnet.probe.extract
    monkeypatch.setattr(rotnet.probe, "extract", lambda *a, **kw: extracted.append(1) or real(*a, **kw))
    cache = tmp_path / "features"
    common = ["probe", str(run), "--epochs", "1", "--data-root", str(fake_root), "--no-download"]
    assert main([*common, "--feature-cache", str(cache)]) == 0
    entries = sorted(cache.iterdir())
    damage_feature_entry(entries[0], how)
    capsys.readouterr()
    assert main([*common, "--feature-cache", str(cache), "--head", "mlp"]) == 0
    out = capsys.readouterr().out
    assert out.count("extracting its features again") == 1 and str(entries[0]) in out, out
    assert len(extracted) == 4 + 2  # that entry's train and test features, once more
    assert sorted(cache.iterdir()) == entries and all(load_tensors(e, checksummed=True) for e in entries)


def test_a_probe_table_gives_each_accuracy_its_interval_and_names_the_stages_it_cannot_separate():
    from rotnet.probe import table

    stages = ["conv1", "layer4"]
    results = {"head": "linear", "pool": 1, "arch": "resnet18", "experiment": "rotation", "data": "cifar10 32px"}
    results |= {"stages": stages, "test_images": 200}
    results["accuracy"] = {"pretrained": {"conv1": 30.0, "layer4": 60.0}, "random": {"conv1": 28.5, "layer4": 40.0}}
    text = table(results)
    assert "test accuracy (%) on 200 images, 95% Wilson interval in brackets" in text
    assert "| conv1 | 30.00 [24.1, 36.7] | 28.50 [22.7, 35.1] |" in text
    assert text.endswith("Within the test set's sampling error of each other (intervals overlap): conv1.")


@pytest.mark.parametrize("kind", ["a FIFO", "a link to a device", "a folder", "a link to a file"])
def test_a_probe_file_that_is_no_regular_file_is_named_not_waited_on(tiny_runs, tmp_path, kind):
    """The report hashes each probe file to match it with the manifest: one that is a FIFO, a device or a folder
    (planted by hand) is counted among those not shown, never opened to wait or read without end."""
    import os
    import shutil

    run = tmp_path / "resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    planted = run / "probe/probe-linear-pool1.json"
    planted.parent.mkdir()
    (tmp_path / "real.json").write_text("{}")
    make = {
        "a FIFO": lambda: os.mkfifo(planted),
        "a link to a device": lambda: planted.symlink_to("/dev/zero"),
        "a folder": lambda: planted.mkdir(),
        "a link to a file": lambda: planted.symlink_to(tmp_path / "real.json"),
    }
    make[kind]()
    with no_hang(60):
        assert main(["report", str(tmp_path)]) == 0
    assert (
        "1 probe file(s) that their run's manifest.json does not vouch for are not shown"
        in (tmp_path / "report.md").read_text()
    )


@pytest.mark.parametrize("n", [2, 255, 256, 257, 513])
def test_the_mlp_head_trains_whatever_the_training_features_count(n):
    """The MLP head's batch norm raised on a last batch of one feature (257 images in batches of 256); a lone last
    sample now joins the batch before it, and every sample is still seen once an epoch."""
    import torch

    from rotnet.probe import batches, fit_head

    order = torch.randperm(n)
    parts = batches(order, 256)
    assert torch.equal(torch.cat(parts), order) and min(map(len, parts)) >= 2
    x, y = torch.randn(n, 16), torch.arange(n) % 2
    assert 0 <= fit_head(x, y, x[:8], y[:8], kind="mlp", epochs=1, seed=0) <= 100


def test_a_cache_path_that_is_a_file_is_named_in_one_line(tiny_runs, tmp_path, fake_root, capsys):
    """`probe --feature-cache FILE` said only "File exists: FILE", and a `--cache-dir` that cannot be written told the
    user who had passed one to "pass --cache-dir"."""
    from tests.helpers import write_folder

    file = tmp_path / "notes.txt"
    file.write_text("mine")
    run = str(tiny_runs / "resnet18/rotation/seed0")
    data = ["--data-root", str(fake_root), "--no-download"]
    assert main(["probe", run, "--feature-cache", str(file), *data]) == 2
    said = f"rotnet: error: --feature-cache {file} is not a folder; name a folder to keep features in"
    assert capsys.readouterr().err.strip().splitlines()[-1] == said
    photos = tmp_path / "photos"
    write_folder(photos, np.random.default_rng(0).integers(0, 256, (8, 3, 16, 16), dtype=np.uint8))
    args = ["train", "rotation", "--dataset", str(photos), "--cache-dir", str(file), "--runs-root", str(tmp_path / "r")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"rotnet: error: cannot write the prepared-images cache {file}")
    assert err.endswith("; pass another --cache-dir") and file.read_text() == "mine"


# ResNet18's stages on 32 px images (ImageNet stem): channels and the side of each square map.
MAPS_32PX = {"conv1": (64, 16), "layer1": (64, 8), "layer2": (128, 4), "layer3": (256, 2), "layer4": (512, 1)}


def feature_bytes(pool: int, images: int = 80 + 16) -> int:
    """float32 features of every stage, pooled to a pool x pool grid or the stage's whole map where smaller."""
    return 4 * images * sum(c * min(pool, side) ** 2 for c, side in MAPS_32PX.values())


@pytest.mark.parametrize(("pool", "free"), [(2, 2), (3, 3), (3, 2), (4, 3), (10, 4), (2, 1), (1, 0.5)])
def test_features_that_cannot_fit_in_memory_are_refused_before_extraction(
    tiny_runs, tmp_path, fake_root, capsys, monkeypatch, pool, free
):
    """`--pool 10` on CIFAR-10 kept some 23 GB of float32 features: it was killed for memory after minutes of
    extraction. The features' size is known from one image; more than the host has free is refused in one line,
    naming the largest --pool that fits. `free`: the bytes free, as those --pool `free` needs (0.5: half of 1's)."""
    import shutil

    import rotnet.probe

    run = shutil.copytree(tiny_runs / "resnet18/rotation/seed0", tmp_path / "resnet18/rotation/seed0")
    available = int(feature_bytes(int(free)) if free >= 1 else feature_bytes(1) * free)
    monkeypatch.setattr(rotnet.probe, "host_memory_available", lambda: available, raising=False)
    args = ["probe", str(run), "--pool", str(pool), "--epochs", "1", "--data-root", str(fake_root), "--no-download"]
    fits = feature_bytes(pool) <= available
    assert main(args) == (0 if fits else 2)
    if not fits:
        err = [line for line in capsys.readouterr().err.splitlines() if "warning: CIFAR-10" not in line]
        assert len(err) == 1 and f"--pool {pool} keeps" in err[0], err
        largest = max((p for p in range(1, pool) if feature_bytes(p) <= available), default=0)
        assert (f"--pool {largest} or less fits" if largest else "even --pool 1") in err[0], err
        assert not (run / "probe").exists()


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("pool", [1, 2, 3, 5, 16, 100])
def test_each_stage_is_pooled_to_the_grid_or_its_whole_map_never_copied(size, pool):
    """Adaptive pooling to a grid larger than a stage's map copies its values: `--pool 100` on 32 px images probed
    10,000 copies of each layer4 feature, and `--pool 2` four. Each stage keeps min(pool, its side) per side."""
    from rotnet.evaluate import extract
    from rotnet.models import build_model

    model = build_model("resnet18", 10, "imagenet")
    images = torch.randint(0, 256, (3, 3, size, size), dtype=torch.uint8)
    feats = extract(model, images, pool=pool, batch_size=3)
    for stage, (channels, side_at_32) in MAPS_32PX.items():
        side = side_at_32 * size // 32
        assert feats[stage].shape == (3, channels * min(pool, side) ** 2), stage
    whole = extract(model, images, pool=size, batch_size=3)  # every map kept whole: each cell once
    for stage, (_, side_at_32) in MAPS_32PX.items():
        if pool >= side_at_32 * size // 32:
            torch.testing.assert_close(feats[stage], whole[stage])


def test_a_probe_records_each_stages_grid_and_says_which_it_keeps_whole(tiny_runs, tmp_path, fake_root, capsys):
    import shutil

    run = shutil.copytree(tiny_runs / "resnet18/rotation/seed0", tmp_path / "resnet18/rotation/seed0")
    args = ["probe", str(run), "--pool", "4", "--epochs", "1", "--data-root", str(fake_root), "--no-download"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "pooled 4x4 (a smaller map is kept whole: layer3 2x2, layer4 1x1)" in out
    saved = json.loads((run / "probe/probe-linear-pool4-e1.json").read_text())
    assert saved["grids"] == {"conv1": "4x4", "layer1": "4x4", "layer2": "4x4", "layer3": "2x2", "layer4": "1x1"}
