"""The report's figures: matplotlib only, from plain run records; each function writes one PNG."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from rotnet.checkpoint import atomic_write, load_tensors  # noqa: E402
from rotnet.errors import RotnetError  # noqa: E402
from rotnet.layout import EXAMPLES  # noqa: E402


def savefig(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def label(r: dict, many_seeds: bool) -> str:
    return f"{r['arch']} {r['experiment']}" + (f" s{r['seed']}" if many_seeds else "")


def plot_curves(runs: list[dict], path: Path) -> None:
    many = len({r["seed"] for r in runs}) > 1
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in runs:
        if r["history"]:
            tested = [h for h in r["history"] if "test_acc" in h]
            ax1.plot([h["epoch"] for h in tested], [h["test_acc"] for h in tested], marker=".", label=label(r, many))
            ax2.plot(
                [h["epoch"] for h in r["history"]],
                [h["train_loss"] for h in r["history"]],
                marker=".",
                label=label(r, many),
            )
    ax1.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy")
    ax2.set(xlabel="epoch", ylabel="train loss", title="Training loss", yscale="log")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    savefig(fig, path)


def plot_bars(rows: list[dict], path: Path) -> None:
    rows = [r for r in rows if r["seed_report"] is not None or r["ours_mean"] is not None]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 4.5))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["seed_report"] or 0 for r in rows], 0.4, label="seed report")
    ax.bar(
        [x + 0.2 for x in xs],
        [r["ours_mean"] or 0 for r in rows],
        0.4,
        label="rotnet",
        yerr=[r["ours_std"] or 0 for r in rows],
        capsize=3,
    )
    ax.set_xticks(list(xs), [f"{r['arch']}\n{r['experiment']}" for r in rows], fontsize=7)
    ax.set(ylabel="test accuracy (%)", ylim=(0, 100), title="Seed report vs rotnet")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    savefig(fig, path)


def plot_confusions(runs: list[dict], path: Path) -> bool:
    runs = [r for r in runs if r["status"] == "finished" and r["result"].get("task") == "classification"]
    runs = [r for r in runs if r["seed"] == min(x["seed"] for x in runs)] if runs else []
    if not runs:
        return False
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 4.2), squeeze=False)
    for ax, r in zip(axes[0], runs, strict=True):
        m = r["result"]["confusion"]
        names = r["result"]["class_names"]
        rowsum = [max(sum(row), 1) for row in m]
        ax.imshow([[v / s for v in row] for row, s in zip(m, rowsum, strict=True)], cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set(
            xlabel="predicted", ylabel="true", title=f"{r['arch']} {r['experiment']}\n{r['result']['test_acc']:.1f}%"
        )
        ax.title.set_fontsize(8)
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
    many = len({r["seed"] for r in runs}) > 1
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        pts = [(h["epoch"], h["knn_acc"]) for h in r["history"] if "knn_acc" in h]
        ax.plot(*zip(*pts, strict=True), marker="o", label=label(r, many))
    ax.set(xlabel="epoch", ylabel="kNN accuracy (%)", title="Weighted kNN (k=200, T=0.1) on penultimate features")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    savefig(fig, path)


def plot_probes(probes: list[tuple[dict, dict]], path: Path) -> None:
    fig, axes = plt.subplots(1, len(probes), figsize=(6 * len(probes), 4), squeeze=False)
    for ax, (r, p) in zip(axes[0], probes, strict=True):
        stages, acc = p["stages"], p["accuracy"]
        for i, (which, values) in enumerate(acc.items()):
            ax.bar([x + 0.4 * i - 0.2 for x in range(len(stages))], [values[s] for s in stages], 0.4, label=which)
        ax.set_xticks(range(len(stages)), stages)
        ax.set(ylabel="test accuracy (%)", title=f"{label(r, True)}: {p['head']} probe", ylim=(0, 100))
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    savefig(fig, path)


def plot_label_efficiency(curves: dict[str, tuple[list, list, list]], path: Path) -> None:
    """curves: name -> (labels per class, mean accuracies, stds)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (xs, means, stds) in curves.items():
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=name)
    ax.set(xscale="log", xlabel="labelled images per class", ylabel="test accuracy (%)", title="Label efficiency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    savefig(fig, path)
