"""The report's figures (rotnet.plots): bars and curves that show every seed, no bar for a missing result, labels
inside the plot."""

from pathlib import Path

import pytest

from tests.helpers import gain_row

pytestmark = pytest.mark.plots  # this file tests them: they are drawn


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
            run = {"arch": "resnet18", "experiment": experiment, "seed": 0, "data": data, "status": "finished"}
            out.append(run | {"history": history})
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


def seeded_runs() -> list[dict]:
    """Five seeds of two ResNet18 rows and one seed of a ResNet34 row, as a five-seed paper report has them."""
    out = []
    for arch, experiment, seeds in (
        ("resnet18", "rotation", range(5)),
        ("resnet18", "full-from-random", range(5)),
        ("resnet34", "rotation", [0]),
    ):
        for seed in seeds:
            history = [
                {
                    "epoch": e,
                    "lr": 1e-3 if e <= 2 else 1e-4,
                    "train_loss": 2.0 - e / 10 + seed / 100,
                    "test_acc": 40.0 + 10 * e + seed,
                }
                for e in (1, 2, 3)
            ]
            run = {"arch": arch, "experiment": experiment, "seed": seed, "data": "cifar10", "status": "finished"}
            out.append(run | {"history": history})
    return out


def test_curves_of_many_seeds_give_each_row_one_colour_one_legend_entry_and_a_bold_mean(monkeypatch):
    """Issue 32's rehearsal: five seeds of five rows and the ResNet34/50 runs drew 29 runs in a cycling palette,
    colours reused across rows and a 29-entry legend."""
    from rotnet import plots

    kept = captured_figure(monkeypatch)
    runs = seeded_runs()
    plots.plot_curves(runs, Path("unused.png"))
    rot, cls, loss = kept[0].axes[:3]
    labels = [t.get_text() for t in kept[0].legends[0].get_texts()]
    assert labels == [
        "resnet18 rotation (5 seeds: each thin, mean bold)",
        "resnet18 full-from-random (5 seeds: each thin, mean bold)",
        "resnet34 rotation s0",
    ]
    colours = [{line.get_color() for line in ax.lines} for ax in (rot, cls)]
    assert len(colours[0]) == 2 and len(colours[1]) == 1 and not colours[0] & colours[1]
    bold = [line for line in rot.lines if line.get_marker() == "."]
    assert len(bold) == 2  # the ResNet18 mean and the one ResNet34 run
    assert list(bold[0].get_ydata()) == pytest.approx([52.0, 62.0, 72.0])  # 40 + 10 e + mean seed (2)
    # the variant: a sixth seed still training (one epoch of three) neither cuts the mean short nor moves it
    kept.clear()
    training = runs[0] | {"seed": 5, "status": "partial", "history": runs[0]["history"][:1]}
    plots.plot_curves([training, *runs], Path("unused.png"))
    rot = kept[0].axes[0]
    bold = [line for line in rot.lines if line.get_marker() == "."]
    assert list(bold[0].get_ydata()) == pytest.approx([52.0, 62.0, 72.0])
    labels = [t.get_text() for t in kept[0].legends[0].get_texts()]
    assert labels[0] == "resnet18 rotation (6 seeds: each thin, mean of the 5 finished bold)"
    kept.clear()
    plots.plot_curves([training, runs[0]], Path("unused.png"))
    assert (
        kept[0].legends[0].get_texts()[0].get_text() == "resnet18 rotation (2 seeds: each thin, the finished one bold)"
    )


def test_confusions_of_several_archs_are_a_row_each_not_one_long_strip(monkeypatch):
    from rotnet import plots

    kept = captured_figure(monkeypatch)
    rotation = {"task": "rotation", "confusion": [[1, 0, 0, 0]] * 4, "class_names": ["0", "90", "180", "270"]}
    classes = {"task": "classification", "confusion": [[1, 0], [0, 1]], "class_names": ["a", "b"]}
    runs = [
        {
            "arch": arch,
            "experiment": e,
            "seed": 0,
            "data": "cifar10",
            "status": "finished",
            "result": (rotation if e == "rotation" else classes) | {"test_acc": 50.0},
        }
        for arch, experiments in (
            (
                "resnet18",
                ["rotation", "layer4-from-rotation", "layer4-from-random", "full-from-rotation", "full-from-random"],
            ),
            ("resnet34", ["rotation", "full-from-rotation"]),
            ("resnet50", ["rotation", "full-from-rotation"]),
        )
        for e in experiments
    ]
    assert plots.plot_confusions(runs, Path("unused.png"))
    panels = [ax for ax in kept[0].axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert len(panels) == 9
    assert kept[0].get_size_inches()[0] <= 4.6 * 5 + 0.01  # as wide as ResNet18's five panels
    rows = {round(ax.get_position().y0, 3) for ax in panels}
    assert len(rows) == 3
    kept.clear()  # the variant: one arch on two datasets, a row each, and each title says which
    plots.plot_confusions([r | {"data": d} for r in runs[:2] for d in ("cifar10", "stl10")], Path("unused.png"))
    titles = sorted(ax.get_title() for ax in kept[0].axes if ax.get_visible() and ax.get_title())
    assert titles[0].startswith("resnet18 layer4-from-rotation (cifar10)") and len(titles) == 4


@pytest.mark.parametrize("plot, axis", [("plot_curves", 2), ("plot_knn", 0)])
def test_every_curve_plot_draws_a_row_per_colour_and_legend_entry(monkeypatch, plot, axis):
    """The class of the curves fix: each figure that draws a line per epoch (learning curves, kNN accuracy) groups
    seeds by table row."""
    from rotnet import plots

    kept = captured_figure(monkeypatch)
    runs = [r | {"history": [h | {"knn_acc": h["test_acc"] / 2} for h in r["history"]]} for r in seeded_runs()]
    getattr(plots, plot)(runs, Path("unused.png"))
    fig = kept[0]
    legend = fig.legends[0] if fig.legends else fig.axes[axis].get_legend()
    assert len(legend.get_texts()) == 3
    assert len({line.get_color() for line in fig.axes[axis].lines}) == 3
