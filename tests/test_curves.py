"""The learning curves' findings: the gain paired by seed at every epoch, and deeper models at matching epochs."""

import json
import shutil
import statistics

import pytest

from rotnet.curves import deeper_comparisons, deeper_finding, deeper_section, gain_by_epoch, gain_epoch_finding
from rotnet.markdown import spans
from rotnet.report import write_report
from tests.helpers import reseal


def test_the_gain_at_each_epoch_pairs_the_seeds_that_evaluated_it():
    """Seed 2 lacks a from-random run and seed 1 skipped epoch 2's evaluation: each epoch counts the seeds both
    sides have there, and one seed gives no interval."""
    rotation = {0: {1: 60.0, 2: 70.0}, 1: {1: 64.0}, 2: {1: 99.0, 2: 99.0}}
    random = {0: {1: 50.0, 2: 66.0}, 1: {1: 50.0, 2: 50.0}}
    first, second = gain_by_epoch(rotation, random)
    assert (first["epoch"], first["n"], first["by_seed"], first["mean"]) == (1, 2, {0: 10.0, 1: 14.0}, 12.0)
    lo, hi = first["ci95"]
    assert hi - 12.0 == pytest.approx(12.0 - lo) == pytest.approx(12.706 * 2**0.5 * 2 / 2**0.5)  # t(0.975, 1)
    assert (second["epoch"], second["n"], second["by_seed"], second["ci95"]) == (2, 1, {0: 4.0}, None)


def curve_row(gains_by_epoch: list[list[float]], reference: float | None = 1.24) -> dict:
    """A from-rotation row whose seeds' gains at epochs 1, 2, ... are the given lists (one list per epoch)."""
    rotation = {s: {e + 1: 80 + g[s] for e, g in enumerate(gains_by_epoch)} for s in range(len(gains_by_epoch[0]))}
    random = {s: {e + 1: 80.0 for e in range(len(gains_by_epoch))} for s in rotation}
    row = {"arch": "resnet18", "experiment": "full-from-rotation", "reference_gain": reference}
    return row | {"reference_epochs": len(gains_by_epoch), "gain_by_epoch": gain_by_epoch(rotation, random)}


@pytest.mark.parametrize(
    ("gains", "words"),
    [
        ([[9, 10, 11], [5, 6, 7], [0.1, 0.5, -0.3]], ["lies above 0 at epochs 1-2", "contains 0 at epoch 3",
                                                     "+1.24, at epoch 3) lies above the interval",
                                                     "depends on the epoch it is read at"]),
        ([[16, 17, 16.5], [16.4, 16.6, 16.5]], ["lies above 0 at epochs 1-2;", "the same at every epoch"]),
        ([[-2, -3, -2.5], [0.1, -0.1, 0.0], [3, 4, 3.5]], ["lies above 0 at epoch 3", "contains 0 at epoch 2",
                                                           "lies below 0 at epoch 1", "depends on the epoch"]),
        ([[0.5, 1.0, 1.5], [1.0, 1.2, 1.4]], ["+1.24, at epoch 2) lies inside the interval"]),
        ([[3.0], [2.0]], ["one seed per epoch; no interval at any epoch"]),
    ],
)  # fmt: skip
def test_the_gain_over_epochs_is_worded_by_its_numbers(gains, words):
    text = gain_epoch_finding(curve_row(gains))
    assert text.startswith("resnet18 full: ")
    for w in words:
        assert w in text, (w, text)


def test_spans_name_runs_of_epochs():
    assert spans([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10" and spans([5]) == "5" and spans([]) == ""


def lengthen(folder, epochs: int, arch: str, shift: float) -> None:
    """A run record given `epochs` epochs under the paper schedule (lr 1e-3, x0.1 every 10 epochs), its test accuracy
    shifted by `shift` at every epoch and rising by 0.1 an epoch, its arch renamed; result.json follows config.json's
    arch, experiment and seed; resealed."""
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    lines = [lines[0] | {"epoch": e, "lr": 1e-3 * 0.1 ** ((e - 1) // 10), "test_acc": 50 + shift + e / 10}
             for e in range(1, epochs + 1)]  # fmt: skip
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    record = json.loads((folder / "config.json").read_text())
    record["config"] |= {"arch": arch, "epochs": epochs}
    (folder / "config.json").write_text(json.dumps(record))
    result = json.loads((folder / "result.json").read_text())
    result |= {k: record["config"][k] for k in ("arch", "experiment", "seed", "task")}
    result |= {"epochs": epochs, "test_acc": lines[-1]["test_acc"]}
    result.pop("confusion")
    (folder / "result.json").write_text(json.dumps(result))
    reseal(folder)


def test_deeper_models_are_compared_at_each_schedule_length_and_the_tiny_lr_epochs_measured(tiny_runs, tmp_path):
    """ResNet18 rotation for 45 epochs on two seeds, ResNet34 for 70 on one (the reference's Extra rows): each at
    epoch 45 and at its last, the change over epochs 41-70 (lr <= 1e-7), and the claim judged by the numbers."""
    for arch, epochs, shift, seeds in (("resnet18", 45, 0.0, (0, 1)), ("resnet34", 70, -3.0, (0,))):
        for seed in seeds:
            folder = tmp_path / f"{arch}/rotation/seed{seed}"
            shutil.copytree(tiny_runs / "resnet18/rotation/seed0", folder)
            record = json.loads((folder / "config.json").read_text())
            record["config"]["seed"] = seed
            (folder / "config.json").write_text(json.dumps(record))
            lengthen(folder, epochs, arch, shift + seed)
    report = write_report(tmp_path).read_text()
    section = report[report.index("## Deeper models") :]
    # resnet18: seeds at 54.5 and 55.5 at epoch 45; resnet34: 47 + 4.5 = 51.5 at 45, 54.0 at 70.
    assert "| resnet18 | 78.30 (45) | 55.00 | — | 55.00 (45, n=2) | +0.50 (epochs 41-45) |" in section
    assert "| resnet34 | 79.70 (70) | 51.50 | 54.00 | 54.00 (70, n=1) | +3.00 (epochs 41-70) |" in section
    # the difference's interval: resnet18's spread stands in for resnet34's one seed, 12.706 x 0.71 x sqrt(1 + 1/2)
    assert (
        "rotation: resnet34 54.00 at its last epoch (70) against resnet18's 55.00 ± 0.71 (n=2, 45 epochs): -1.00, "
        "95% interval [-12.00, +10.00] (resnet34 stands on one seed: resnet18's seed spread stands in for its own); "
        "at 45 epochs, 51.50 (-3.50); its epochs 41-70 at lr <= 1e-7 changed it by +3.00 (resnet18's epochs 41-45: "
        "+0.50). The reference report says resnet34 is worse than resnet18 (its numbers, 79.70 "
        "vs 78.30, say the opposite); these runs cannot tell (the interval contains 0)."
    ) in section
    deeper = json.loads((tmp_path / "results.json").read_text())["deeper"]
    assert [(c["arch"], c["base_arch"], c["interval"], c["verdict"]) for c in deeper] == [
        ("resnet34", "resnet18", "one seed", "not told apart")
    ]
    tiny = [(c["tiny_lr"]["from_epoch"], c["base_tiny_lr"]["from_epoch"]) for c in deeper]
    assert tiny == [(41, 41)] and [(c["tiny_lr"]["change"], c["base_tiny_lr"]["change"]) for c in deeper] == [
        (pytest.approx(3.0), pytest.approx(0.5))
    ]


def test_one_arch_has_no_deeper_section():
    row = {"experiment": "rotation", "data": "cifar10", "n": 1, "arch": "resnet18"}
    assert deeper_section([row], [], []) == [] and deeper_comparisons([row], []) == []


def arch_row(arch: str, values: list[float], epochs: int, reference: float | None, data: str = "cifar10") -> dict:
    """A rotation row of the report and its finished runs, each run's test accuracy its final value at every epoch."""
    runs = [
        {"status": "finished", "experiment": "rotation", "arch": arch, "data_label": data,
         "history": [{"epoch": e, "test_acc": v} for e in range(1, epochs + 1)]}
        for v in values
    ]  # fmt: skip
    row = {"experiment": "rotation", "arch": arch, "data": data, "n": len(values), "epochs": str(epochs)}
    row |= {"by_seed": dict(enumerate(values)), "ours_mean": statistics.fmean(values), "reference": reference}
    row |= {"ours_std": statistics.stdev(values) if len(values) > 1 else None, "reference_epochs": 45}
    return {"row": row, "runs": runs}


FIVE = [76.3, 76.4, 76.5, 76.6, 76.7]  # ResNet18 over five seeds: mean 76.5, std 0.158


@pytest.mark.parametrize(
    ("base", "deep", "verdict", "words"),
    [  # the reference says ResNet34 (79.70 vs 78.30) and ResNet50 (75.30) are "worse than resnet18"
        (("resnet18", FIVE), ("resnet34", [78.0]), "contradicted",
         ["+1.50, 95% interval [+1.02, +1.98] (resnet34 stands on one seed", "say the opposite",
          "these runs contradict it"]),
        (("resnet18", FIVE), ("resnet50", [75.0]), "supported", ["(its numbers, 75.30 vs 78.30, say so)",
                                                                 "these runs support it"]),
        (("resnet18", FIVE), ("resnet34", [76.6]), "not told apart", ["these runs cannot tell"]),
        (("resnet18", [76.4]), ("resnet50", [75.0]), "same direction", ["(one seed each: no interval)",
                                                                        "these runs point its way, with no interval"]),
        (("resnet18", [76.4]), ("resnet34", [77.0]), "other direction", ["point the other way"]),
        (("resnet18", [76.4, 76.6]), ("resnet34", [78.0, 78.2, 77.9]), "contradicted",
         ["+1.53, 95% interval [+1.04, +2.02]; at 45"]),  # Welch: df 2.43, scipy gives [+1.05, +2.02]
        # no claim about ResNet50 against ResNet34, whatever the numbers
        (("resnet34", FIVE), ("resnet50", [75.0]), "", [". The reference report's numbers: 75.30 vs 79.70."]),
    ],
)  # fmt: skip
def test_a_deeper_arch_is_judged_against_the_shallowest_with_an_interval(base, deep, verdict, words):
    """The reference's claim is its words, said beside what its own numbers say and judged by this report's: the
    difference's 95% interval over seeds (one seed on a side borrows the other's spread; none on both: no interval)."""
    reference = {"resnet18": 78.30, "resnet34": 79.70, "resnet50": 75.30}
    a, b = (arch_row(arch, values, 45 if arch == "resnet18" else 70, reference[arch]) for arch, values in (base, deep))
    (c,) = deeper_comparisons([a["row"], b["row"]], a["runs"] + b["runs"])
    assert c["verdict"] == verdict and (c["arch"], c["base_arch"]) == (deep[0], base[0])
    text = deeper_finding(c)
    for w in words:
        assert w in text, (w, text)


def test_a_deeper_arch_on_other_data_is_compared_without_the_references_claim():
    a, b = (arch_row(arch, v, 45, None, data="cifar100") for arch, v in (("resnet18", FIVE), ("resnet34", [70.0])))
    (c,) = deeper_comparisons([a["row"], b["row"]], a["runs"] + b["runs"])
    assert (c["reference_claim"], c["verdict"], c["data"]) == ("", "", "cifar100")
    assert "reference" not in deeper_finding(c)


@pytest.mark.parametrize(("epochs", "said"), [(1, "1 epoch"), (2, "2 epochs"), (20, "20 epochs")])
def test_a_deeper_finding_counts_the_shallowests_epochs_in_words(epochs, said):
    a, b = (arch_row(arch, v, epochs, None) for arch, v in (("resnet18", FIVE), ("resnet34", [70.0])))
    (c,) = deeper_comparisons([a["row"], b["row"]], a["runs"] + b["runs"])
    text = deeper_finding(c)
    assert f"(n=5, {said}):" in text and f"; at {said}, " in text, text  # "1 epochs" before


@pytest.mark.plots
def test_the_report_keeps_the_gain_at_every_epoch_and_plots_it(tiny_runs, tmp_path):
    """Two seeds of each transfer side: results.json's row has an entry per epoch (epoch, mean, interval, n, each
    seed's), report.md its table and finding, plots/ its figure."""
    for experiment, shift in (("full-from-rotation", 2.0), ("full-from-random", 0.0)):
        for seed in (0, 1):
            folder = tmp_path / f"resnet18/{experiment}/seed{seed}"
            shutil.copytree(tiny_runs / "resnet18/rotation/seed0", folder)
            record = json.loads((folder / "config.json").read_text())
            record["config"] |= {"seed": seed, "experiment": experiment, "task": "classification"}
            (folder / "config.json").write_text(json.dumps(record))
            lengthen(folder, 12, "resnet18", shift + seed * shift / 2)
    write_report(tmp_path)
    rows = {r["experiment"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"] if r["n"]}
    curve = rows["full-from-rotation"]["gain_by_epoch"]
    assert [e["epoch"] for e in curve] == list(range(1, 13)) and all(e["n"] == 2 for e in curve)
    assert curve[0]["mean"] == pytest.approx(2.5) and curve[0]["by_seed"] == {"0": 2.0, "1": pytest.approx(3.0)}
    assert curve[0]["ci95"][0] < 2.5 < curve[0]["ci95"][1]
    assert "gain_by_epoch" not in rows["full-from-random"]
    report = (tmp_path / "report.md").read_text()
    assert "## Pretraining gain at every epoch" in report and "| 11 | 1e-04 | +2.50 [" in report
    assert "resnet18 full: the gain's 95% interval (n=2) contains 0 at epochs 1-12" in report
    assert (tmp_path / "plots/gain_by_epoch.png").stat().st_size > 10_000
