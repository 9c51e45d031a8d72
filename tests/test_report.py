"""The report: only over rotnet runs, only its own files, and every run status rendered (unreadable ones too)."""

import json
from pathlib import Path

import pytest

from rotnet.cli import main
from rotnet.report import collect, write_report
from tests.helpers import as_made_by_0_3, fabricate, reseal


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_five):
    """A rotation run and a full-from-random one: the session's, copied."""
    import shutil

    root = tmp_path_factory.mktemp("runs")
    for experiment in ("rotation", "full-from-random"):
        shutil.copytree(tiny_five / "resnet18" / experiment, root / "resnet18" / experiment)
    return root


def test_report_refuses_a_folder_without_runs(tmp_path, capsys):
    (tmp_path / "notes.md").write_text("mine")
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no rotnet runs" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.md"]


def test_report_never_overwrites_a_file_it_did_not_write(runs, tmp_path, capsys):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(runs, root)
    (root / "report.md").write_text("my own notes")
    assert main(["report", str(root)]) == 2
    assert "did not write" in capsys.readouterr().err and (root / "report.md").read_text() == "my own notes"
    (root / "report.md").unlink()
    assert main(["report", str(root)]) == 0
    assert main(["report", str(root)]) == 0  # its own files: rewritten freely
    assert "| rotation | resnet18 |" in (root / "report.md").read_text()


@pytest.mark.parametrize(
    "name, garbage",
    [
        ("result.json", "[1, 2]"),
        ("result.json", '{"test_acc": "high"}'),
        ("metrics.jsonl", 'not json\n{"epoch": 2}\n'),
        ("metrics.jsonl", "[1]\n"),
        ("config.json", "[]"),
        ("config.json", "\x00\x01binary"),
    ],
)
def test_garbage_files_mark_the_run_unreadable_and_the_report_goes_on(runs, tmp_path, name, garbage):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(runs, root)
    (root / "resnet18/rotation/seed0" / name).write_text(garbage)
    statuses = {r["experiment"]: r["status"] for r in collect(root)}
    assert statuses == {"rotation": "unreadable", "full-from-random": "finished"}
    write_report(root)
    rows = {(r["experiment"], r["arch"]): r for r in json.loads((root / "results.json").read_text())["rows"]}
    assert rows[("rotation", "resnet18")]["status"] == "seed 0 unreadable"
    assert rows[("full-from-random", "resnet18")]["n"] == 1


def test_garbage_example_file_does_not_stop_the_report(runs, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(runs, root)
    (root / "resnet18/rotation/seed0/examples.safetensors").write_bytes(b"garbage")
    write_report(root)
    rows = {
        r["experiment"]: r for r in json.loads((root / "results.json").read_text())["rows"] if r["arch"] == "resnet18"
    }
    assert rows["rotation"]["status"].startswith("seed 0 tampered: examples.safetensors differs")
    assert rows["rotation"]["n"] == 0 and rows["full-from-random"]["n"] == 1
    assert "| full-from-random |" in (root / "report.md").read_text()


def test_a_presets_subset_runs_are_rows_naming_their_data(tiny_runs, tmp_path):
    """A reproduce whose preset sets train_per_class (the smoke preset) makes EXPERIMENT@Npc folders: they are the
    table's rows, named "cifar10, N per class", not the reference report's rows and not label-efficiency points."""

    fabricate(tiny_runs / "resnet18/rotation/seed0", tmp_path / "resnet18/rotation@2pc/seed0", train_per_class=2)
    (tmp_path / "reproduce.json").write_text(json.dumps({"runs": ["resnet18/rotation@2pc/seed0"]}))
    report = write_report(tmp_path).read_text()
    assert "| rotation | resnet18 | cifar10, 2 per class | — |" in report and "| ok |" in report
    assert "| full-from-random | resnet18 | cifar10 | 82.79 |" not in report and "Label efficiency" not in report


def test_a_run_older_than_a_setting_shows_its_default_and_the_commits_that_resumed_it(tiny_runs, tmp_path):
    """config.json of a run started before rotnet had a key lacks it; the run used the key's default, so the report
    shows that, not a blank. Resumes name their commits. (Such a run predates manifests: it reads as unsealed.)"""
    import shutil

    folder = tmp_path / "resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", folder)
    record = json.loads((as_made_by_0_3(folder) / "config.json").read_text())
    for key in ("dataset", "image_size", "normalization"):
        del record["config"][key]
    record["resumes"] = [{"git_commit": "abcdef1" + "0" * 33}, {"git_commit": "1234567" + "0" * 33}]
    (folder / "config.json").write_text(json.dumps(record))
    report = write_report(tmp_path).read_text()
    assert "| imagenet | dataset's | reference constants | fp32 |" in report
    assert "; resumed by abcdef1, 1234567) |" in report
    assert "seed 0 unsealed (made before rotnet 0.4)" in report


def test_the_speed_shown_is_the_median_epochs_so_a_paused_epoch_does_not_drag_it(tiny_runs, tmp_path):
    """An epoch that spans a pause (a stopped process, a suspended machine) counts the pause in its seconds; the
    speed and epoch time shown are the median epoch's; a record without them (older rotnet) is skipped, not fatal."""
    import shutil

    folder = tmp_path / "resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", folder)
    first = json.loads((folder / "metrics.jsonl").read_text().splitlines()[0])
    speeds = ((1, 120.0, 400.0), (2, 118.0, 410.0), (3, 6.0, 8000.0))  # epoch 3 spans a pause
    lines = [first | {"epoch": e, "images_per_s": v, "seconds": s} for e, v, s in speeds]
    lines.append({k: v for k, v in first.items() if k not in ("images_per_s", "seconds")} | {"epoch": 4})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    fabricate(folder, tmp_path / "resnet18/rotation/seed1", test_acc=50.0, epochs=4)  # consistent again
    shutil.rmtree(folder)
    write_report(tmp_path)
    (run,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert run["images_per_s"] == 118.0 and run["epoch_seconds"] == 410.0


def test_the_pretraining_gain_pairs_seeds(tiny_runs, tmp_path):
    """From-rotation finished seeds 0 and 1, from-random only seed 0 (seed 1 failed or still trains): the gain is
    seed 0's difference, said to be seed 0's only; unpaired means would mix seed 1 into one side."""

    accuracies = {("full-from-rotation", 0): 50.0, ("full-from-rotation", 1): 60.0, ("full-from-random", 0): 45.0}
    for (experiment, seed), acc in accuracies.items():
        folder = tmp_path / f"resnet18/{experiment}/seed{seed}"
        fabricate(tiny_runs / "resnet18/rotation/seed0", folder, test_acc=acc, task="classification")
    report = write_report(tmp_path).read_text()
    rows = {(r["experiment"], r["arch"]): r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    row = rows[("full-from-rotation", "resnet18")]
    assert row["gain"] == 5.0 and row["gain_seeds"] == [0]
    assert row["reference_gain"] == pytest.approx(
        84.03 - 82.79
    )  # the reference report's own difference, to compare with
    assert "| +5.00 (seed 0 only; one seed: no interval; reference report +1.24) |" in report
    assert "| full-from-rotation | resnet18 | cifar10 | 50.00 (+5.00) | 60.00 |" in report  # each seed's, in words
    assert "| full-from-random | resnet18 | cifar10 | 45.00 | — |" in report
    import csv

    table = {r["experiment"]: r for r in csv.DictReader((tmp_path / "results.csv").open()) if r["arch"] == "resnet18"}
    assert {"seed0", "seed1", "gain_seed0", "gain_ci95_low"} <= set(table["full-from-rotation"])
    cells = table["full-from-rotation"]
    assert (cells["seed0"], cells["seed1"], cells["gain_seed0"], cells["gain_seed1"]) == ("50.0", "60.0", "5.0", "")
    assert cells["ours_std"] == "7.0711"  # two seeds, rounded for people; full-from-random has one, and no std:
    assert table["full-from-random"]["ours_std"] == "" and table["full-from-random"]["ours_mean"] == "45.0"


def gain_row(diffs: list[float], reference_gain: float | None) -> dict:
    """A from-rotation row and its from-random partner, made up so that the paired differences are `diffs`."""
    from rotnet.report import with_gains

    base = {"arch": "resnet18", "data": "cifar10", "reference": None}
    rotation = {**base, "experiment": "full-from-rotation", "by_seed": {s: 80 + d for s, d in enumerate(diffs)}}
    random = {**base, "experiment": "full-from-random", "by_seed": dict.fromkeys(range(len(diffs)), 80.0)}
    if reference_gain is not None:
        rotation["reference"], random["reference"] = 80 + reference_gain, 80.0
    return with_gains([rotation, random])[0]


@pytest.mark.parametrize(
    ("diffs", "reference_gain", "words"),
    [
        ([0.1, 0.5, -0.3], 1.24, ["contains 0: these seeds cannot tell this gain from no gain", "+1.24 lies above"]),
        ([16.4, 16.6, 16.5], 17.13, ["excludes 0: rotation pretraining helps here", "+17.13 lies above"]),
        ([16.1, 16.9, 16.5], 16.4, ["excludes 0: rotation pretraining helps here", "+16.40 lies inside it."]),
        ([-2.0, -2.5, -1.5], 1.24, ["excludes 0: rotation pretraining hurts here", "+1.24 lies above"]),
        ([1.0, 1.2, 0.8], -3.0, ["helps here", "-3.00 lies below it (its single run is not what these seeds find)"]),
        ([0.4, 0.2], None, ["over 2 seeds", "contains 0"]),
        ([0.17], 1.24, ["gain +0.17 from one seed; no interval"]),
    ],
)
def test_the_gain_is_worded_by_its_numbers(diffs, reference_gain, words):
    from rotnet.report import gain_finding

    row = gain_row(diffs, reference_gain)
    text = gain_finding(row)
    assert text.startswith("resnet18 full: gain ")
    for w in words:
        assert w in text, (w, text)
    if len(diffs) > 1:
        lo, hi = row["gain_ci95"]
        assert lo < row["gain"] < hi and f"[{lo:+.2f}, {hi:+.2f}]" in text


def test_the_t_quantiles_are_the_student_t_distributions():
    """t(0.975, df) checked against the t density integrated numerically (no table copied into the test)."""
    import math

    from rotnet.stats import t975

    def cdf(t: float, df: int, steps: int = 200_000) -> float:
        c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
        h = t / steps  # the symmetric density: 0.5 + the integral from 0 to t (Simpson's rule)
        f = [c * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(steps + 1)]
        return 0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))

    for df in (1, 2, 3, 5, 10, 30, 31, 60, 200):
        assert cdf(t975(df), df) == pytest.approx(0.975, abs=2e-4), df


def test_the_wall_time_of_resumed_invocations_counts_only_those_that_recorded_it():
    """A plan killed once and running again showed "0.0 min for all 2" though neither had recorded its end."""
    from rotnet.sections import earlier_text

    killed = {"git_commit": "aaaaaaa1", "wall_seconds": None}
    text = earlier_text({"earlier": [killed], "git_commit": "bbbbbbb2"})
    assert "0.0 min" not in text and "none of the 2 recorded its end" in text
    text = earlier_text({"earlier": [killed, {"git_commit": "ccccccc3", "wall_seconds": 600}], "wall_seconds": 60})
    assert "11.0 min for the 2 of 3 that recorded their end (1 did not" in text and "commits aaaaaaa, ccccccc" in text


def test_the_reference_vs_rotnet_plot_shows_no_bar_for_a_missing_result_and_no_spread_for_one_seed(
    tmp_path, monkeypatch
):
    from rotnet import plots

    figures = []
    monkeypatch.setattr(plots, "savefig", lambda fig, path: figures.append(fig))
    row = {"arch": "resnet18", "data": "cifar10", "reference": 61.88}
    rows = [
        {**row, "experiment": "layer4-from-rotation", "ours_mean": 63.3, "ours_std": 0.0, "n": 1},
        {**row, "experiment": "full-from-rotation", "ours_mean": None, "ours_std": None, "n": 0},
    ]
    plots.plot_bars(rows, tmp_path / "bars.png")
    ax = figures[0].axes[0]
    ours = ax.containers[1]
    assert ours.errorbar is None  # one seed: no spread to draw
    assert [t.get_text() for t in ax.texts if t.get_text()] == ["61.9", "61.9", "63.3", "no result"]


def test_the_gain_and_seed_plots_show_each_seed_and_label_above_everything(tmp_path, monkeypatch):
    """Issue 21: each seed a point, the mean a bar, the reference report's bar beside it; a value label sat on the
    error bar, and the legend covered the title."""
    from rotnet import plots

    figures = []
    monkeypatch.setattr(plots, "savefig", lambda fig, path: figures.append(fig))
    row = gain_row([16.4, 16.6, 16.5], 17.13)
    plots.plot_gains([row], tmp_path / "gain.png")
    ax = figures[0].axes[0]
    points = [c for c in ax.collections if len(c.get_offsets()) == 3]
    assert sorted(y for _, y in points[0].get_offsets()) == pytest.approx(sorted(row["gain_by_seed"].values()))
    label = next(t for t in ax.texts if t.get_text() == "+16.5")
    assert label.xy[1] >= row["gain_ci95"][1]  # above the interval's top
    assert figures[0].legends and figures[0].legends[0].get_bbox_to_anchor().y0 <= 0  # under the axes


def texts_inside(fig) -> bool:
    """Every text drawn in each axes lies inside its frame."""
    renderer = fig.canvas.get_renderer()
    return all(
        t.get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y1 + 0.5
        for ax in fig.axes
        for t in ax.texts
        if t.get_text()
    )


def test_a_label_over_a_tall_interval_or_bar_stays_inside_the_plot(tmp_path, monkeypatch):
    """Two seeds (+16.42, +17.21) give a 95% interval up to +21.8: its value label crossed the plot's top edge, as
    did a label over a bar near 100%."""
    from rotnet import plots

    figures = captured_figure(monkeypatch)
    plots.plot_gains([gain_row([16.42, 17.21], 17.13), gain_row([0.61], 1.24)], tmp_path / "gain.png")
    ours = next(c for c in figures[0].axes[0].containers if getattr(c, "errorbar", None))
    caps = ours.errorbar.lines[1]  # one seed has no interval: no cap drawn at its mean
    assert [len(c.get_xdata()[c.get_ydata() == c.get_ydata()]) for c in caps] == [1, 1]
    row = {"arch": "resnet18", "data": "cifar10", "reference": 78.3, "experiment": "rotation"}
    plots.plot_bars(
        [{**row, "ours_mean": 99.5, "ours_std": 0.4, "n": 2, "by_seed": {0: 99.1, 1: 99.9}}], tmp_path / "b.png"
    )
    assert texts_inside(figures[0]) and texts_inside(figures[1])


def captured_figure(monkeypatch):
    """The figure a plot function saves, kept open for inspection."""
    from rotnet import plots

    kept = []
    monkeypatch.setattr(plots, "savefig", lambda fig, path: kept.append(fig))
    return kept


def one_epoch_runs() -> list[dict]:
    out = []
    for data in ("cifar10", "photos@200pc"):
        for i, experiment in enumerate(("rotation", "layer4-from-rotation", "layer4-from-random")):
            history = [{"epoch": 1, "lr": 0.001, "train_loss": 2.0 + i / 10, "test_acc": 25.0 + i}]
            out.append({"arch": "resnet18", "experiment": experiment, "seed": 0, "data": data, "history": history})
    return out


def test_curves_of_one_epoch_runs_read_correctly(monkeypatch):
    """Seen on the smoke report: x axis 0.96-1.04, accuracy zoomed to a point's neighbourhood, two runs in one colour
    (the rotation run and the first classification run), two legend entries "resnet18 rotation" for two datasets."""
    from rotnet import plots

    kept = captured_figure(monkeypatch)
    plots.plot_curves(one_epoch_runs(), Path("unused.png"))
    (fig,) = kept
    rot, cls, loss = fig.axes[:3]
    styles = [(line.get_color(), line.get_linestyle()) for line in loss.lines]
    assert len(styles) == 6 and len(set(styles)) == 6
    for ax in (rot, cls, loss):
        assert ax.get_xlim() == (0.5, 1.5) and list(ax.get_xticks()) == [1]
    assert rot.get_ylim() == (0, 100) and cls.get_ylim() == (0, 100)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "resnet18 rotation (cifar10)" in labels and "resnet18 rotation (photos@200pc)" in labels


def test_bars_without_seed_report_values_have_no_seed_report_legend(monkeypatch):
    from rotnet import plots

    kept = captured_figure(monkeypatch)
    row = {"reference": None, "ours_mean": 30.0, "ours_std": None, "n": 1, "arch": "resnet18", "data": "photos"}
    plots.plot_bars([row | {"experiment": "rotation"}, row | {"experiment": "full-from-random"}], Path("unused.png"))
    labels = [t.get_text() for t in kept[0].legends[0].get_texts()]
    assert labels == ["rotnet"]


def test_a_plan_of_resnet18_lists_no_deeper_rows_as_not_run(runs, tmp_path):
    """The reference's ResNet34/50 rows are rows of the report only where those archs were run or planned."""
    import shutil

    shutil.copytree(runs, tmp_path, dirs_exist_ok=True)
    rows = json.loads((tmp_path / "results.json").read_text())["rows"] if write_report(tmp_path) else []
    assert {r["arch"] for r in rows} == {"resnet18"}
    assert {r["experiment"] for r in rows} >= {"rotation", "full-from-rotation"}  # the reference's, run or not


def test_a_single_seed_on_few_test_images_carries_its_interval_and_a_smoke_table_its_caveat(tiny_runs, tmp_path):
    """A smoke table printed "pretraining gain +4.07" with nothing saying smoke numbers mean little, and one seed's
    accuracy on 16 test images came with no interval; a one-seed gain said nothing of why it has none."""
    accuracies = {"full-from-rotation": 50.0, "full-from-random": 37.5}
    for experiment, acc in accuracies.items():
        folder = tmp_path / f"resnet18/{experiment}/seed0"
        fabricate(tiny_runs / "resnet18/rotation/seed0", folder, test_acc=acc, task="classification")
        result = json.loads((folder / "result.json").read_text())
        k = round(acc * 16 / 100)  # 16 test images, as the tiny data has
        result["confusion"] = [[k, 16 - k], [0, 0]]
        result["class_names"] = ["a", "b"]
        (folder / "result.json").write_text(json.dumps(result))
        reseal(folder)
    (tmp_path / "reproduce.json").write_text(json.dumps({"preset": "smoke"}))
    report = write_report(tmp_path).read_text()
    rows = {r["experiment"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"] if r["n"]}
    lo, hi = rows["full-from-rotation"]["wilson95"]
    assert (round(lo, 1), round(hi, 1)) == (28.0, 72.0)  # 8 of 16
    assert "| 50.00 [28.0, 72.0] |" in report and "+12.50 (one seed: no interval; reference report +1.24)" in report
    assert "**Smoke preset: a check that everything runs. Its numbers mean little" in report
    from rotnet.report import summary

    assert summary(tmp_path).endswith("not a measurement of pretraining.")
