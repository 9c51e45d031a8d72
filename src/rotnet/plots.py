"""The report's figures: matplotlib only, from plain run records; each function writes one PNG."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter  # noqa: E402

from rotnet.checkpoint import load_tensors  # noqa: E402
from rotnet.errors import RotnetError  # noqa: E402
from rotnet.files import atomic_write  # noqa: E402
from rotnet.layout import EXAMPLES  # noqa: E402

plt.style.use("tableau-colorblind10")  # a palette that colour-blind readers can tell apart


def readable_log_axis(axis, values) -> None:
    """Ticks at the plotted values, written as plain numbers (not 10^x), on a log axis."""
    axis.set_major_locator(FixedLocator(sorted(set(values))))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_locator(NullLocator())


def lr_steps(history: list[dict]) -> list[float]:
    """Epoch boundaries where a step schedule changed the learning rate (where the lr fell)."""
    return [b["epoch"] - 0.5 for a, b in zip(history, history[1:], strict=False) if b["lr"] < a["lr"] * 0.5]


def savefig(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def label(r: dict, many_seeds: bool, many_data: bool = False) -> str:
    data = f" ({r['data']})" if many_data else ""
    return f"{r['arch']} {r['experiment']}{data}" + (f" s{r['seed']}" if many_seeds else "")


def run_styles(n: int) -> list[dict]:
    """n styles, no two alike: a colour each, and past the palette's length the line style changes instead."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    dashes = ["-", "--", "-.", ":"]
    return [{"color": colors[i % len(colors)], "linestyle": dashes[i // len(colors) % len(dashes)]} for i in range(n)]


def grouped(runs: list[dict], *fields: str) -> dict[tuple, list[dict]]:
    """Runs grouped by their values of fields, in the order the groups first appear."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(tuple(r.get(f) for f in fields), []).append(r)
    return groups


def rows_of(runs: list[dict]) -> list[list[dict]]:
    """Runs grouped by table row (arch, experiment, data)."""
    return list(grouped(runs, "arch", "experiment", "data").values())


def mean_curve(runs: list[dict], key: str) -> tuple[list[int], list[float]]:
    """The mean over runs of `key` at each epoch that every one of them recorded it."""
    per_run = [{h["epoch"]: h[key] for h in r["history"] if key in h} for r in runs]
    epochs = sorted(set.intersection(*(set(p) for p in per_run)))
    return epochs, [sum(p[e] for p in per_run) / len(per_run) for e in epochs]


def row_name(row: list[dict], many_seeds: bool, many_data: bool) -> str:
    """A row's legend entry: what draw_row draws for it."""
    name = label(row[0], False, many_data)
    if len(row) == 1:
        return name + (f" s{row[0]['seed']}" if many_seeds else "")
    finished = sum(r["status"] == "finished" for r in row)
    if finished in (0, len(row)):  # draw_row's mean is over all of them
        bold = "mean"
    elif finished == 1:
        bold = "the finished one"
    else:
        bold = f"mean of the {finished} finished"
    return f"{name} ({len(row)} seeds: each thin, {bold} bold)"


def draw_row(ax, row: list[dict], key: str, style: dict, name: str | None = None, marker: str = ".") -> None:
    """One table row's curve of `key`: each seed thin when there are several, and bold their mean over the finished
    ones (a seed still training would cut the mean short at its last epoch)."""
    if len(row) > 1:
        for r in row:
            ax.plot(*mean_curve([r], key), linewidth=0.7, alpha=0.5, **style)
    mean_of = [r for r in row if r["status"] == "finished"] or row
    ax.plot(*mean_curve(mean_of, key), marker=marker, label=name, **style)


def plot_curves(runs: list[dict], path: Path) -> None:
    """Test accuracy of rotation (4-way) and classification runs on their own axes, and the training loss; dotted
    lines where the learning rate stepped down. One colour per table row on all three, one legend under them: a
    row of several seeds draws each seed thin and their mean bold, so five seeds of ten rows stay ten legend
    entries. Whole epochs on the x axis, and accuracy on 0-100 when the values span too little for a zoomed axis
    to mean much (runs of one or two epochs)."""
    runs = [r for r in runs if r["history"]]
    many_seeds = len({r["seed"] for r in runs}) > 1
    many_data = len({r.get("data") for r in runs}) > 1
    fig, (rot, cls, loss) = plt.subplots(1, 3, figsize=(16, 4.5))
    rows = rows_of(runs)
    for row, style in zip(rows, run_styles(len(rows)), strict=True):
        ax = rot if row[0]["experiment"] == "rotation" else cls
        draw_row(ax, row, "test_acc", style)
        draw_row(loss, row, "train_loss", style, row_name(row, many_seeds, many_data))
        for x in sorted({x for r in row for x in lr_steps(r["history"])}):
            ax.axvline(x, color=style["color"], linestyle=":", alpha=0.6)
    rot.set(xlabel="epoch", ylabel="test accuracy (%)", title="Rotation (4-way; chance 25%)")
    cls.set(xlabel="epoch", ylabel="test accuracy (%)", title="Classification (chance 1/classes)")
    loss.set(xlabel="epoch", ylabel="train loss (log)", title="Training loss; dotted: lr steps", yscale="log")
    loss.yaxis.set_major_formatter(ScalarFormatter())
    loss.yaxis.set_minor_formatter(ScalarFormatter())
    last = max((h["epoch"] for r in runs for h in r["history"]), default=1)
    for ax in (rot, cls, loss):
        ax.grid(alpha=0.3)
        ax.set_xlim(0.5, last + 0.5)
        ax.set_xticks(range(1, last + 1, max(1, -(-last // 10))))  # whole epochs, ten ticks at most
        ys = [y for line in ax.lines for y in line.get_ydata()]
        if ax is not loss and ys and max(ys) - min(ys) < 10:
            ax.set_ylim(0, 100)
    if loss.lines:
        below(fig, *loss.get_legend_handles_labels())
    savefig(fig, path)


def plot_bars(rows: list[dict], path: Path) -> None:
    """The reference report's numbers beside ours, with value labels: rotation (4-way) and classification rows on
    separate axes, since their accuracies don't compare."""
    rows = [r for r in rows if r["reference"] is not None or r["ours_mean"] is not None]
    groups = [[r for r in rows if r["experiment"] == "rotation"], [r for r in rows if r["experiment"] != "rotation"]]
    groups = [g for g in groups if g] or [[]]
    widths = [max(2.5, 1.5 * len(g)) for g in groups]
    fig, axes = plt.subplots(1, len(groups), figsize=(sum(widths) + 1, 4.8), squeeze=False,
                             gridspec_kw={"width_ratios": widths})  # fmt: skip
    for ax, group in zip(axes[0], groups, strict=True):
        xs = range(len(group))
        reported = any(r["reference"] is not None for r in rows)  # no bars, no legend entry
        seed = ax.bar([x - 0.2 for x in xs], [r["reference"] or 0 for r in group], 0.4,
                      label="reference report" if reported else None)  # fmt: skip
        # An error bar only where several seeds give a spread: a zero-width cap on a single run, or one at 0 where
        # there is no result, reads as a measurement.
        spread = [r["ours_std"] if r["n"] > 1 else float("nan") for r in group]  # n > 1: finished seeds
        yerr = spread if any(s == s for s in spread) else None
        ax.bar([x + 0.2 for x in xs], [r["ours_mean"] or 0 for r in group], 0.4, label="rotnet", yerr=yerr,
                      capsize=3)  # fmt: skip
        ax.bar_label(seed, labels=[f"{r['reference']:.1f}" if r["reference"] else "" for r in group], fontsize=7)
        tops = [top(r["ours_mean"], r["ours_std"] if r["n"] > 1 else None, r.get("by_seed")) for r in group]
        above(ax, [x + 0.2 for x in xs], tops, [f"{r['ours_mean']:.1f}" if r["n"] else "" for r in group])
        seeds(ax, [x + 0.2 for x in xs], [r.get("by_seed", {}) for r in group])
        for x, r in zip(xs, group, strict=True):
            if r["ours_mean"] is None:
                ax.text(x + 0.2, 2, "no result", rotation=90, ha="center", va="bottom", fontsize=7, color="0.4")
        names = [
            f"{r['experiment']}\n{r['arch']}" + (f"\n{r['data']}" if r["data"] != "cifar10" else "") for r in group
        ]
        ax.set_xticks(list(xs), names, fontsize=7, rotation=20, ha="right")
        kind = "Rotation (4-way)" if group and group[0]["experiment"] == "rotation" else "Classification"
        ax.set(ylabel="test accuracy (%)" if ax is axes[0][0] else "", ylim=(0, 105), title=kind)
        ax.grid(axis="y", alpha=0.3)
        fit_texts(ax)
    below(fig, *axes[0][0].get_legend_handles_labels())  # under the tick labels: it covers no bar and no title
    fig.suptitle("Reference report vs rotnet")
    savefig(fig, path)


def plot_gains(rows: list[dict], path: Path) -> bool:
    """Pretraining gain (from-rotation minus from-random, points) per transfer experiment, arch and data, beside
    the reference report's where it has both rows."""
    rows = [r for r in rows if r.get("gain") is not None]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(rows)), 4))
    xs = range(len(rows))
    reported = any(r.get("reference_gain") is not None for r in rows)  # no bars, no legend entry
    seed = ax.bar([x - 0.2 for x in xs], [r.get("reference_gain") or 0 for r in rows], 0.4,
                  label="reference report" if reported else None)  # fmt: skip
    nan = float("nan")  # no interval from one seed: no error bar (a zero-width cap would read as a measurement)
    ci = [r.get("gain_ci95") or [nan, nan] for r in rows]
    yerr = [
        [r["gain"] - c[0] for r, c in zip(rows, ci, strict=True)],
        [c[1] - r["gain"] for r, c in zip(rows, ci, strict=True)],
    ]
    has_ci = any(r.get("gain_ci95") for r in rows)
    ax.bar([x + 0.2 for x in xs], [r["gain"] for r in rows], 0.4, label="rotnet (mean; 95% t-interval)" if has_ci
                  else "rotnet", yerr=yerr if has_ci else None, capsize=3)  # fmt: skip
    seeds(ax, [x + 0.2 for x in xs], [r.get("gain_by_seed", {}) for r in rows])
    ax.bar_label(seed, labels=[signed(r.get("reference_gain")) for r in rows], fontsize=8)
    tops = [max((r.get("gain_ci95") or [0, 0])[1], *r.get("gain_by_seed", {}).values(), r["gain"], 0) for r in rows]
    above(ax, [x + 0.2 for x in xs], tops, [signed(r["gain"]) for r in rows], fontsize=8)
    names = [f"{r['experiment'].removesuffix('-from-rotation')}\n{r['arch']}\n{r['data']}" for r in rows]
    ax.set_xticks(list(xs), names, fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(ylabel="accuracy points", title="Pretraining gain: from rotation minus from random init")
    fit_texts(ax)
    below(fig, *ax.get_legend_handles_labels())
    ax.grid(axis="y", alpha=0.3)
    savefig(fig, path)
    return True


def top(mean: float | None, std: float | None, by_seed: dict | None) -> float:
    """The highest point drawn over a bar: its mean, its error bar, its seeds."""
    return max([mean or 0, (mean or 0) + (std or 0), *(by_seed or {}).values()])


def above(ax, xs: list[float], tops: list[float], texts: list[str], fontsize: int = 7) -> None:
    """Value labels just above the highest thing drawn at each x (bar, error bar, seed points), so none covers
    another."""
    for x, y, text in zip(xs, tops, texts, strict=True):
        ax.annotate(
            text, (x, y), xytext=(0, 4), textcoords="offset points", ha="center", va="bottom", fontsize=fontsize
        )


def fit_texts(ax) -> None:
    """Raise the y axis's top until every text drawn in ax lies inside it: a value label over a tall error bar
    crossed the frame. A few rounds, since a label offset in points moves as the data's scale changes."""
    renderer = ax.figure.canvas.get_renderer()
    for _ in range(4):
        box = ax.get_window_extent(renderer)
        over = max((t.get_window_extent(renderer).y1 for t in ax.texts if t.get_text()), default=0) - box.y1
        if over <= 0:
            return
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + (over + 2) * (high - low) / box.height)


def below(fig, handles, labels) -> None:
    """A figure's legend under everything else, tick labels included (savefig's tight box grows to hold it), in
    rows of at most four."""
    renderer = fig.canvas.get_renderer()
    bottom = min(ax.get_tightbbox(renderer).transformed(fig.transFigure.inverted()).y0 for ax in fig.axes)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, min(bottom, 0.0) - 0.01),
               ncols=min(len(labels), 4), fontsize=8, frameon=False)  # fmt: skip


def seeds(ax, xs: list[float], values: list[dict]) -> None:
    """Each seed's value as a point over its bar (spread a little sideways so equal values stay visible)."""
    labeled = False
    for x, by_seed in zip(xs, values, strict=True):
        ys = list(by_seed.values())
        if len(ys) < 2:
            continue
        offsets = [0.12 * (i / (len(ys) - 1) - 0.5) for i in range(len(ys))]
        ax.scatter([x + o for o in offsets], ys, s=12, color="black", zorder=3, label=None if labeled else "each seed")
        labeled = True


def signed(x: float | None) -> str:
    return "" if x is None else f"{x:+.1f}"


def plot_confusions(runs: list[dict], path: Path) -> bool:
    """Row-normalized confusion matrices (each true class sums to 1) of the first seed's finished runs: the 4x4
    rotation matrix (true rotation vs predicted) and the classification ones, a row of panels per arch and data
    (a report with ResNet34/50 beside ResNet18 stays as wide as one arch's runs)."""
    runs = [r for r in runs if r["status"] == "finished" and r["result"].get("confusion")]
    runs = [r for r in runs if r["seed"] == min(x["seed"] for x in runs)] if runs else []
    if not runs:
        return False
    by_arch = grouped(runs, "arch", "data")
    width = max(map(len, by_arch.values()))
    many_data = len({data for _, data in by_arch}) > 1
    fig, axes = plt.subplots(
        len(by_arch), width, figsize=(4.6 * width, 4.2 * len(by_arch)), squeeze=False, layout="constrained"
    )  # constrained: a row's titles clear the tick labels of the row above
    for panels, arch_runs in zip(axes, by_arch.values(), strict=True):
        for ax in panels[len(arch_runs) :]:
            ax.set_visible(False)
        for ax, r in zip(panels, arch_runs, strict=False):
            m = r["result"]["confusion"]
            names = r["result"]["class_names"]
            names = [f"{n}°" for n in names] if r["result"].get("task") == "rotation" else names
            rowsum = [max(sum(row), 1) for row in m]
            normed = [[v / s for v in row] for row, s in zip(m, rowsum, strict=True)]
            im = ax.imshow(normed, cmap="Blues", vmin=0, vmax=1)
            small = 6 if len(names) > 10 else 8
            ax.set_xticks(range(len(names)), names if len(names) <= 20 else [], rotation=90, fontsize=small)
            ax.set_yticks(range(len(names)), names if len(names) <= 20 else [], fontsize=small)
            ax.set(
                xlabel="predicted",
                ylabel="true" if ax is panels[0] else "",
                title=f"{label(r, False, many_data)}\n{r['result']['test_acc']:.1f}%",
            )
            ax.title.set_fontsize(8)
    shown = [ax for ax in axes.flat if ax.get_visible()]
    fig.colorbar(im, ax=shown, fraction=0.02, pad=0.02, label="fraction of the true class (rows sum to 1)")
    savefig(fig, path)
    return True


def plot_rotation_examples(runs: list[dict], path: Path) -> bool:
    """Test images in each of the four rotations, titled with the predicted rotation (green right, red wrong)."""
    runs = [r for r in runs if r["experiment"] == "rotation" and (r["folder"] / EXAMPLES).is_file()]
    if not runs:
        return False
    r = min(runs, key=lambda r: (r["arch"] != "resnet18", r["seed"]))
    try:
        tensors, _ = load_tensors(r["folder"] / EXAMPLES)
    except RotnetError:  # a damaged examples file costs the report this figure, nothing more
        return False
    images, pred = tensors["images"], tensors["pred"]  # (8, 3, 32, 32) uint8, (8, 4)
    import torch  # only here: the rest of the report needs no torch

    fig, axes = plt.subplots(4, len(images), figsize=(1.3 * len(images), 5.6))
    for k in range(4):
        for i in range(len(images)):
            ax = axes[k, i]
            ax.imshow(torch.rot90(images[i], k, dims=(1, 2)).permute(1, 2, 0).numpy())
            ok = int(pred[i, k]) == k
            ax.set_title(f"pred {90 * int(pred[i, k])}°", fontsize=7, color="green" if ok else "red")
            ax.axis("off")
        axes[k, 0].text(-8, 16, f"{90 * k}°", fontsize=8, ha="right", va="center")
    fig.suptitle(f"{r['arch']} rotation (seed {r['seed']}): rows are the true rotation", fontsize=9)
    savefig(fig, path)
    return True


def plot_knn(runs: list[dict], path: Path) -> None:
    """kNN accuracy by epoch, a colour per table row (seeds thin, their mean bold, as the learning curves)."""
    many_seeds = len({r["seed"] for r in runs}) > 1
    many_data = len({r.get("data") for r in runs}) > 1
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = rows_of(runs)
    for row, style in zip(rows, run_styles(len(rows)), strict=True):
        draw_row(ax, row, "knn_acc", style, row_name(row, many_seeds, many_data), marker="o")
    ax.set(xlabel="epoch", ylabel="kNN accuracy (%)", title="Weighted kNN (k=200, T=0.1) on penultimate features",
           ylim=(0, 100))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    savefig(fig, path)


def plot_probes(probes: list[tuple[dict, dict]], path: Path) -> None:
    fig, axes = plt.subplots(1, len(probes), figsize=(6 * len(probes), 4), squeeze=False)
    for ax, (r, p) in zip(axes[0], probes, strict=True):
        stages, acc = p["stages"], p["accuracy"]
        for i, (which, values) in enumerate(acc.items()):
            bars = ax.bar(
                [x + 0.4 * i - 0.2 for x in range(len(stages))], [values[s] for s in stages], 0.4, label=which
            )
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks(range(len(stages)), stages)
        on = f" on {p['data']}" if p.get("data") else ""
        ax.set(ylabel="test accuracy (%)", title=f"{label(r, True)}: {p['head']} probe{on}", ylim=(0, 100))
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    savefig(fig, path)


def plot_label_efficiency(curves: dict[str, tuple[list, list, list]], path: Path) -> None:
    """curves: name -> (labels per class, mean accuracies, stds)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (xs, means, stds) in curves.items():
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=name)
    ax.set(xscale="log", xlabel="labelled images per class", ylabel="test accuracy (%)", title="Label efficiency")
    readable_log_axis(ax.xaxis, [x for xs, _, _ in curves.values() for x in xs])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    savefig(fig, path)


def plot_gain_by_epoch(rows: list[dict], path: Path) -> bool:
    """The pretraining gain at every transfer epoch, one panel per from-rotation row: each seed a thin line, the
    mean with its 95% t-interval as a band, 0 and the reference report's gain (at its last epoch) marked."""
    rows = [r for r in rows if r.get("gain_by_epoch")]
    if not rows:
        return False
    fig, axes = plt.subplots(1, len(rows), figsize=(4.5 * len(rows), 3.6), squeeze=False)
    for ax, r in zip(axes[0], rows, strict=True):
        curve = r["gain_by_epoch"]
        epochs = [e["epoch"] for e in curve]
        for i, seed in enumerate(sorted({s for e in curve for s in e["by_seed"]})):
            points = [(e["epoch"], e["by_seed"][seed]) for e in curve if seed in e["by_seed"]]
            ax.plot(
                *zip(*points, strict=True), color="grey", linewidth=0.7, alpha=0.7, label="each seed" if not i else None
            )
        ax.plot(epochs, [e["mean"] for e in curve], color="C0", linewidth=2, label="mean")
        band = [(e["epoch"], *e["ci95"]) for e in curve if e["ci95"]]
        if band:
            xs, lo, hi = zip(*band, strict=True)
            ax.fill_between(xs, lo, hi, color="C0", alpha=0.25, label="95% t-interval")
        ax.axhline(0, color="black", linewidth=0.8)
        if r.get("reference_gain") is not None and r.get("reference_epochs"):
            ax.scatter([r["reference_epochs"]], [r["reference_gain"]], marker="*", s=90, color="C1", zorder=4,
                       label="reference report (one run)")  # fmt: skip
        name = r["experiment"].removesuffix("-from-rotation")
        ax.set(xlabel="transfer epoch", ylabel="gain (accuracy points)", title=f"{r['arch']} {name} ({r['data']})")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    below(fig, *axes[0][0].get_legend_handles_labels())
    savefig(fig, path)
    return True
