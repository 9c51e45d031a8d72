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
