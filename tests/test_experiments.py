"""The report's experiments as data (rotnet.experiments): one run folder per dataset pair, the plan's dependency
order, and the reference report's numbers."""

from pathlib import Path

from rotnet.experiments import EXPERIMENTS, plan, reference_results
from rotnet.layout import run_dir
from rotnet.protocol import resolve


def test_a_config_names_one_run_per_dataset_pair():
    rot = resolve("rotation", overrides={"dataset": "stl10", "pretrain_dataset": "stl10-unlabeled"})
    assert (rot.dataset, rot.pretrain_dataset) == ("stl10-unlabeled", "")
    full = resolve("full-from-rotation", overrides={"dataset": "stl10", "pretrain_dataset": "stl10-unlabeled"})
    scratch = resolve("full-from-random", overrides={"dataset": "stl10", "pretrain_dataset": "stl10-unlabeled"})
    assert scratch.pretrain_dataset == "" and full.pretrain_dataset == "stl10-unlabeled"
    assert run_dir(Path("R"), rot) == Path("R/stl10-unlabeled/resnet18/rotation/seed0")
    assert run_dir(Path("R"), full) == Path("R/stl10_from_stl10-unlabeled/resnet18/full-from-rotation/seed0")
    assert run_dir(Path("R"), resolve("rotation")) == Path("R/resnet18/rotation/seed0")  # CIFAR-10: as before


def test_plan_is_in_dependency_order():
    runs = plan(["resnet18", "resnet50"], [0, 1], [])
    assert runs[:5] == [("resnet18", 0, e) for e in EXPERIMENTS]
    assert ("resnet50", 1, "rotation") in runs and ("resnet50", 1, "layer4-from-random") not in runs
    for arch, seed, e in runs:
        if EXPERIMENTS[e].init == "rotation":
            assert runs.index((arch, seed, "rotation")) < runs.index((arch, seed, e))
    assert plan(["resnet18"], [0], ["full-from-rotation"]) == [
        ("resnet18", 0, "rotation"),
        ("resnet18", 0, "full-from-rotation"),
    ]


def test_the_reference_numbers_are_the_reports():
    rows = {(r["experiment"], r["arch"]): r["test_acc"] for r in reference_results()}
    assert rows[("rotation", "resnet18")] == 78.3 and rows[("full-from-random", "resnet18")] == 82.79
    assert rows[("full-from-rotation", "resnet50")] == 83.01 and len(rows) == 9


def test_each_claim_of_the_reference_is_in_its_words():
    """A row's claim ("worse than resnet18") is what the report's sentence on that experiment says, in its words."""
    rows = reference_results()
    claimed = [r for r in rows if r["claim"]]
    assert {(r["experiment"], r["arch"]) for r in claimed} == {
        (e, a) for e in ("rotation", "full-from-rotation") for a in ("resnet34", "resnet50")
    }
    for r in claimed:
        said = " ".join(x["wording"] for x in rows if x["experiment"] == r["experiment"])
        assert r["claim"].replace("resnet", "RESNET") in said, r
