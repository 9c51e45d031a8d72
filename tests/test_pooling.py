"""Which runs a report row pools (rotnet.pooling): the seeds of one protocol on one data, never a mean over runs
that differ in what they measure."""

import json
import shutil

import pytest

from rotnet.cli import main
from rotnet.config import RunConfig, with_defaults
from rotnet.pooling import pool
from tests.helpers import RUN, cli

FILES = {"data_batch_1": "31019476:2775bf31", "test_batch": "31009582:d063ba45"}


def run(seed: int, status: str = "finished", files: dict = FILES, **changes) -> dict:
    cfg = with_defaults(RunConfig(experiment="rotation", seed=seed).to_dict() | changes)
    dataset = {"name": "cifar10", "files": files, "train": 50000, "root": f"/data/{seed}"}
    key = {"data": "", "arch": "resnet18", "experiment": "rotation", "per_class": 0}
    return key | {
        "seed": seed,
        "status": status,
        "cfg": cfg,
        "config": {"config": cfg, "dataset": dataset},
        "error": "",
    }


@pytest.mark.parametrize(
    "odd, why",
    [
        ({"lr": 0.01}, "lr: 0.001 -> 0.01"),
        ({"epochs": 3}, "epochs: 45 -> 3"),
        ({"schedule": "cosine"}, "schedule: 'step' -> 'cosine'"),
        ({"precision": "bf16"}, "precision: 'fp32' -> 'bf16'"),
        ({"normalization": "dataset"}, "normalization: 'auto' -> 'dataset'"),
        ({"files": FILES | {"test_batch": "31009582:00000000"}}, "data files/test_batch: 31009582:d063ba45 -> "),
    ],
)
def test_a_seed_of_another_protocol_or_data_is_named_not_pooled(odd, why):
    files = odd.pop("files", FILES)
    out = pool([run(0), run(1), run(2, files=files, **odd)])
    assert [r["status"] for r in out] == ["finished", "finished", "not pooled"]
    assert out[2]["error"].startswith("another protocol than seed 0 (") and why in out[2]["error"]


@pytest.mark.parametrize(
    "same",
    [
        {"eval_every": 5},  # when it evaluates, not what it trains
        {"eval_batch_size": 64},
        {"knn_every": 1},
        {"init_path": "/elsewhere/model.safetensors"},
        {"files": FILES, "root": "/data/moved"},  # the same files at another place
    ],
)
def test_seeds_that_differ_only_in_what_does_not_change_the_weights_are_pooled(same):
    files = same.pop("files", FILES)
    same.pop("root", None)
    out = pool([run(0), run(1, files=files, **same)])
    assert [r["status"] for r in out] == ["finished", "finished"]


def test_the_most_common_protocol_is_the_rows_and_ties_go_to_the_lowest_seed():
    out = pool([run(0, lr=0.01), run(1), run(2), run(3, status="partial", lr=0.5)])
    assert [r["status"] for r in out] == ["not pooled", "finished", "finished", "partial"]
    assert "than seed 1 (lr: 0.001 -> 0.01)" in out[0]["error"]
    tie = pool([run(1), run(0, lr=0.01)])
    assert [r["status"] for r in tie] == ["not pooled", "finished"]  # seed 0's protocol is the row's


def test_the_report_pools_no_seeds_of_another_protocol(tiny_runs, tmp_path, fake_root):
    """Seed 1 trained with another lr into the same runs root: the row stays seed 0's, and says why seed 1 is apart
    (before, it read "28.12 ± 4.42 (n=2), ok", a spread of two protocols shown as a spread of seeds)."""
    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    assert cli("train", "rotation", "--seed", "1", "--lr", "0.05", root=tmp_path, data=fake_root) == 0
    assert main(["report", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    row = next(r for r in rows if r["experiment"] == "rotation")
    seed0 = json.loads((tmp_path / RUN / "result.json").read_text())["test_acc"]
    assert row["n"] == 1 and row["by_seed"] == {"0": seed0}
    assert row["status"] == "seed 1 not pooled: another protocol than seed 0 (lr: 0.001 -> 0.05)"


def transfer(seed: int, source_seed: int | None = None, sha: str = "", how: str = "rotation run", **source) -> dict:
    """A finished full-from-rotation run of `seed` that started from weights recording a rotation run of
    `source_seed` with `source` changed (None: weights recording no run), as its config.json says."""
    r = run(seed, experiment="full-from-rotation", init="rotation")
    made = None if source_seed is None else RunConfig(experiment="rotation", seed=source_seed).to_dict() | source
    started = {"init_from": how, "init_weights": f"/w/{seed}", "init_sha256": sha or f"{seed:064d}"}
    return r | {"config": r["config"] | started | {"init_source_config": made}}


# How seed 1's from-rotation run started, beside seed 0's (its own seed's rotation run, the default lookup) -> what
# the row says of seed 1 ('' pooled). A row's seeds are independent pretrainings of one rotation protocol: seed 1
# started from seed 0's weights, or from weights of a longer rotation run, was averaged in as one more such seed.
STARTS = [
    ("its own seed's rotation run", dict(source_seed=1), ""),
    ("--init naming its own seed's rotation run (here or elsewhere)", dict(source_seed=1, how="--init"), ""),
    ("a record older than init_source_config", dict(source_seed=None), ""),
    ("--init naming seed 0's rotation run", dict(source_seed=0, sha=f"{0:064d}", how="--init"),
     "rotation weights: its seed's rotation run -> --init /w/1 (seed 0's rotation run)"),
    ("--init naming weights that record no run", dict(source_seed=None, how="--init"),
     "rotation weights: its seed's rotation run -> --init /w/1 (weights of no recorded run)"),
    ("--init naming its seed's rotation run of 90 epochs", dict(source_seed=1, how="--init", epochs=90),
     "its rotation run's epochs: 45 -> 90"),
    ("its rotation run of another lr (an older plan's)", dict(source_seed=1, lr=0.01),
     "its rotation run's lr: 0.001 -> 0.01"),
]  # fmt: skip


@pytest.mark.parametrize("how, start, why", STARTS, ids=[s[0] for s in STARTS])
def test_a_from_rotation_seed_pools_only_beside_seeds_that_started_alike(how, start, why):
    out = pool([transfer(0, source_seed=0), transfer(1, **start)])
    assert out[0]["status"] == "finished"
    assert (out[1]["status"], out[1]["error"]) == (
        ("finished", "") if not why else ("not pooled", f"another protocol than seed 0 ({why})")
    )


@pytest.mark.parametrize(
    "theirs, why",
    [
        (FILES, ""),
        (None, ""),  # a record that says nothing of its rotation run's data: not judged
        (
            FILES | {"data_batch_1": "31019476:00000000"},
            "its rotation run's data files/data_batch_1: 31019476:2775bf31 -> ",
        ),
    ],
)
def test_two_seeds_own_rotation_runs_pool_only_on_the_same_files(theirs, why):
    """Seed 1's rotation run pretrained on other files than seed 0's (an image folder that changed between them,
    `--pretrain-dataset`): its transfer row counted both, fine-tuned on the same data, as one pipeline."""
    data = lambda files: {"source_data": {"name": "folder", "files": files}} if files else {}  # noqa: E731
    out = pool([transfer(0, source_seed=0) | data(FILES), transfer(1, source_seed=1) | data(theirs)])
    assert (out[1]["status"], out[1]["error"].removeprefix("another protocol than seed 0 (")[: len(why)]) == (
        ("not pooled", why) if why else ("finished", "")
    )


def test_seeds_that_all_started_from_one_set_of_weights_pool_together():
    """Three fine-tuning seeds from one --init file are one protocol (the weights fixed); the row is theirs."""
    same = dict(source_seed=None, how="--init", sha="f" * 64)
    out = pool([transfer(0, **same), transfer(1, **same), transfer(2, **same), transfer(3, source_seed=3)])
    assert [r["status"] for r in out] == ["finished", "finished", "finished", "not pooled"]
    other = pool([transfer(0, **same), transfer(1, **same | {"sha": "e" * 64})])  # two files: two protocols
    assert [r["status"] for r in other] == ["finished", "not pooled"]
    assert "rotation weights: --init /w/0 (weights of no recorded run) -> --init /w/1 (" in other[1]["error"]


def test_the_report_counts_no_seed_started_from_another_seeds_rotation_weights(tiny_five, tmp_path, fake_root):
    """Seed 1's whole network trained from seed 0's rotation run (`--init`), beside seed 0's: the row read
    "n=2, ok" and paired seed 1's gain as if seed 1 had its own pretraining."""
    shutil.copytree(tiny_five, tmp_path, dirs_exist_ok=True)
    source = tmp_path / "resnet18/rotation/seed0"
    for experiment in ("full-from-rotation", "full-from-random"):
        extra = ("--init", str(source)) if experiment == "full-from-rotation" else ()
        assert cli("train", experiment, "--seed", "1", *extra, root=tmp_path, data=fake_root) == 0
    assert main(["report", str(tmp_path)]) == 0
    rows = {r["experiment"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    row = rows["full-from-rotation"]
    assert row["n"] == 1 and list(row["by_seed"]) == ["0"]
    assert row["status"] == (
        "seed 1 not pooled: another protocol than seed 0 (rotation weights: its seed's rotation run -> --init "
        f"{source / 'model.safetensors'} (seed 0's rotation run))"
    )
    assert rows["full-from-random"]["n"] == 2  # its seeds start from nothing: both count


@pytest.mark.parametrize(
    "odd, paired",
    [
        ({}, True),
        ({"pretrain_dataset": ""}, True),  # the pretraining data is what the pair compares
        ({"lr": 0.01}, False),
        ({"epochs": 7}, False),
        ({"trainable": "layer4"}, False),
    ],
)
def test_a_gain_pairs_rows_of_one_protocol_besides_the_pretraining(odd, paired):
    from rotnet.pooling import unpaired

    rotation = run(0, experiment="full-from-rotation", init="rotation", pretrain_dataset="photos")
    random = run(0, **({"experiment": "full-from-random", "init": "random"} | odd))
    assert (unpaired(rotation, random) == "") == paired
    assert unpaired(None, random) == unpaired(rotation, None) == ""


def test_the_report_gives_no_gain_between_rows_of_other_protocols(tiny_five, tmp_path, fake_root):
    """A from-random run retrained with another lr: the from-rotation row's gain would measure the lr too, so the
    row gives none and says why (before, "+x" as a pretraining gain)."""
    shutil.copytree(tiny_five, tmp_path, dirs_exist_ok=True)
    shutil.rmtree(tmp_path / "resnet18/full-from-random/seed0")
    assert cli("train", "full-from-random", "--lr", "0.05", root=tmp_path, data=fake_root) == 0
    assert main(["report", str(tmp_path)]) == 0
    rows = {r["experiment"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    assert (
        rows["full-from-rotation"]["gain"] is None and rows["full-from-rotation"]["gain_apart"] == "lr: 0.05 -> 0.001"
    )
    assert rows["layer4-from-rotation"]["gain"] is not None  # the other pair is one protocol
    text = (tmp_path / "report.md").read_text()
    assert "— (not paired: from-random has another protocol: lr: 0.05 -> 0.001)" in text
