"""`rotnet report RUNS_DIR`: results table (markdown, JSON, CSV), plots and provenance, from run folders alone."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from rotnet.checkpoint import atomic_write, atomic_write_text, load_tensors  # noqa: E402
from rotnet.errors import RotnetError  # noqa: E402
from rotnet.experiments import EXPERIMENTS  # noqa: E402
from rotnet.reproduce import FAILED, runs_for, seed_results  # noqa: E402
from rotnet.run import CONFIG, EXAMPLES, METRICS, RESULT  # noqa: E402

ORDER = {e: i for i, e in enumerate(EXPERIMENTS)}  # the report's row order: rotation first


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_metrics(path: Path) -> list[dict]:
    """Epoch records; a torn last line (a crash mid-write of an older rotnet, a hand edit) is skipped."""
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def collect(root: Path) -> list[dict]:
    """One entry per run folder, with its status: finished, failed, partial (some epochs) or started."""
    runs = []
    folders = sorted(runs_for(root), key=lambda f: (f.parts[-3], ORDER.get(f.parts[-2], 99), f.name))
    for folder in folders:
        arch, seed = folder.parts[-3], int(folder.name[4:])
        experiment, _, per_class = folder.parts[-2].partition("@")
        config = read_json(folder / CONFIG) or {}
        result = read_json(folder / RESULT)
        failed = read_json(folder / FAILED)
        history = read_metrics(folder / METRICS)
        planned = config.get("config", {}).get("epochs")
        status = "finished" if result else "failed" if failed else "partial" if history else "started"
        runs.append(
            {
                "folder": folder,
                "arch": arch,
                "experiment": experiment,
                "seed": seed,
                "status": status,
                "per_class": int(per_class.removesuffix("pc") or 0),
                "config": config,
                "result": result or {},
                "history": history,
                "planned_epochs": planned,
                "error": (failed or {}).get("error", ""),
            }
        )
    return runs


def fmt(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def table_rows(root: Path, runs: list[dict]) -> list[dict]:
    """One row per (experiment, arch): the seed report's number beside ours (mean, std, n over finished seeds)."""
    seeds = {(r["experiment"], r["arch"]): r for r in seed_results()}
    plan = (read_json(root / "reproduce.json") or {}).get("runs", [])
    keys = list(seeds) + [(r["experiment"], r["arch"]) for r in runs]
    keys += [(p.split("/")[1], p.split("/")[0]) for p in plan]
    keys = sorted(dict.fromkeys(keys), key=lambda k: (k[1], ORDER.get(k[0], 99)))
    rows = []
    for experiment, arch in keys:
        mine = [r for r in runs if (r["experiment"], r["arch"]) == (experiment, arch)]
        done = [r["result"]["test_acc"] for r in mine if r["status"] == "finished"]
        seed = seeds.get((experiment, arch))
        mean = statistics.fmean(done) if done else None
        std = statistics.stdev(done) if len(done) > 1 else 0.0 if done else None
        planned = [p for p in plan if p.startswith(f"{arch}/{experiment}/")]
        notes = [
            f"seed {r['seed']} {r['status']}"
            + (
                f" ({len(r['history'])}/{r['planned_epochs']} epochs)"
                if r["status"] in ("partial", "started")
                else f": {r['error']}"
                if r["error"]
                else ""
            )
            for r in mine
            if r["status"] != "finished"
        ]
        found = {f"{r['arch']}/{r['experiment']}/seed{r['seed']}" for r in mine}
        notes += [f"{p.split('/')[2]} missing" for p in planned if p not in found]
        if not mine and not planned:
            notes.append("not run")
        epochs = sorted({len(r["history"]) for r in mine if r["status"] == "finished"})
        rows.append(
            {
                "experiment": experiment,
                "arch": arch,
                "seed_report": seed["test_acc"] if seed else None,
                "seed_epochs": seed["epochs"] if seed else None,
                "ours_mean": mean,
                "ours_std": std,
                "n": len(done),
                "epochs": ",".join(map(str, epochs)),
                "difference": mean - seed["test_acc"] if seed and mean is not None else None,
                "status": "; ".join(notes) or "ok",
                "seed_wording": seed["wording"] if seed else "",
            }
        )
    return rows


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
    tensors, _ = load_tensors(r["folder"] / EXAMPLES)
    images, pred = tensors["images"], tensors["pred"]  # (8, 3, 32, 32) uint8, (8, 4)
    import torch

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


def write_report(root: Path, preset: str | None = None) -> Path:
    """Write report.md, results.json, results.csv and plots/ under root; return the report's path."""
    root = Path(root)
    if not root.is_dir():
        raise RotnetError(f"runs folder not found: {root}")
    everything = collect(root)
    runs = [r for r in everything if not r["per_class"]]  # the report's rows; subset runs have their own section
    rows = table_rows(root, runs)
    repro = read_json(root / "reproduce.json") or {}
    preset = preset or repro.get("preset")
    plots = root / "plots"
    plots.mkdir(exist_ok=True)
    plot_bars(rows, plots / "seed_vs_rotnet.png")
    plot_curves(runs, plots / "curves.png")
    has_confusion = plot_confusions(runs, plots / "confusion.png")
    has_examples = plot_rotation_examples(runs, plots / "rotation_examples.png")

    results = {"preset": preset, "rows": rows, "runs": [run_summary(r) for r in runs], "reproduce": repro}
    atomic_write_text(root / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["experiment"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(root / "results.csv", buf.getvalue())

    lines = [f"# rotnet results{f' (preset {preset})' if preset else ''}", ""]
    if repro.get("command"):
        lines += [f"Command: `{repro['command']}`", ""]
    lines += [
        "Test accuracy (%). Rotation: all four rotations of the 10,000 test images; classification: the 10,000 "
        "test images. Ours is the mean ± std over finished seeds (n).",
        "",
        "| experiment | arch | seed report | ours (mean ± std, n) | epochs (seed / ours) | difference | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ours = f"{r['ours_mean']:.2f} ± {r['ours_std']:.2f} (n={r['n']})" if r["n"] else "—"
        diff = f"{r['difference']:+.2f}" if r["difference"] is not None else "—"
        lines.append(
            f"| {r['experiment']} | {r['arch']} | {fmt(r['seed_report']) or '—'} | {ours} | "
            f"{r['seed_epochs'] or '—'} / {r['epochs'] or '—'} | {diff} | {r['status']} |"
        )
    lines += [
        "",
        "![seed vs rotnet](plots/seed_vs_rotnet.png)",
        "",
        "## Learning curves",
        "",
        "![curves](plots/curves.png)",
        "",
    ]
    if has_confusion:
        lines += ["## Confusion matrices (classification, first seed)", "", "![confusion](plots/confusion.png)", ""]
    if has_examples:
        lines += ["## Rotation predictions on test images", "", "![rotations](plots/rotation_examples.png)", ""]
    lines += knn_section(runs, plots / "knn.png")
    lines += probe_section(runs, plots / "probe.png")
    lines += label_efficiency_section(everything, plots / "label_efficiency.png")
    lines += provenance_lines(everything, repro)
    lines += ["", "## The seed report's wording", ""]
    lines += [f'- {r["arch"]} {r["experiment"]}: "{r["seed_wording"]}"' for r in rows if r["seed_wording"]]
    path = root / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def knn_section(runs: list[dict], path: Path) -> list[str]:
    runs = [r for r in runs if any("knn_acc" in h for h in r["history"])]
    if not runs:
        return []
    many = len({r["seed"] for r in runs}) > 1
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        pts = [(h["epoch"], h["knn_acc"]) for h in r["history"] if "knn_acc" in h]
        ax.plot(*zip(*pts, strict=True), marker="o", label=label(r, many))
    ax.set(xlabel="epoch", ylabel="kNN accuracy (%)", title="Weighted kNN (k=200, T=0.1) on penultimate features")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    savefig(fig, path)
    lines = ["## kNN monitor", "", "| run | " + "epoch: kNN accuracy (%) |", "|---|---|"]
    for r in runs:
        pts = ", ".join(f"{h['epoch']}: {h['knn_acc']:.2f}" for h in r["history"] if "knn_acc" in h)
        lines.append(f"| {label(r, True)} | {pts} |")
    return [*lines, "", f"![knn](plots/{path.name})", ""]


def probe_section(runs: list[dict], path: Path) -> list[str]:
    probes = [(r, read_json(p)) for r in runs for p in sorted((r["folder"] / "probe").glob("probe-*.json"))]
    probes = [(r, p) for r, p in probes if p]
    if not probes:
        return []
    lines = ["## Per-layer probes (frozen features, RotNet Table 1 protocol)", ""]
    fig, axes = plt.subplots(1, len(probes), figsize=(6 * len(probes), 4), squeeze=False)
    for ax, (r, p) in zip(axes[0], probes, strict=True):
        stages, acc = p["stages"], p["accuracy"]
        lines += [
            f"{label(r, True)}: {p['head']} head, pool {p['pool']}, {p['epochs']} epochs",
            "",
            "| stage | " + " | ".join(acc) + " |",
            "|---|" + "---|" * len(acc),
        ]
        lines += [f"| {s} | " + " | ".join(f"{acc[w][s]:.2f}" for w in acc) + " |" for s in stages] + [""]
        for i, (which, values) in enumerate(acc.items()):
            ax.bar([x + 0.4 * i - 0.2 for x in range(len(stages))], [values[s] for s in stages], 0.4, label=which)
        ax.set_xticks(range(len(stages)), stages)
        ax.set(ylabel="test accuracy (%)", title=f"{label(r, True)}: {p['head']} probe", ylim=(0, 100))
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    savefig(fig, path)
    return [*lines, f"![probe](plots/{path.name})", ""]


def label_efficiency_section(runs: list[dict], path: Path) -> list[str]:
    runs = [r for r in runs if r["per_class"] and r["status"] == "finished"]
    if not runs:
        return []
    arms = sorted({(r["arch"], r["experiment"]) for r in runs})
    sizes = sorted({r["per_class"] for r in runs})
    fig, ax = plt.subplots(figsize=(6, 4))
    lines = [
        "## Label efficiency (class-balanced, nested subsets)",
        "",
        "| labels per class | " + " | ".join(f"{a} {e}" for a, e in arms) + " |",
        "|---|" + "---|" * len(arms),
    ]
    table: dict = {}
    for arm in arms:
        xs, means, stds = [], [], []
        for n in sizes:
            accs = [
                r["result"]["test_acc"] for r in runs if (r["arch"], r["experiment"]) == arm and r["per_class"] == n
            ]
            if accs:
                m, s = statistics.fmean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
                xs.append(n), means.append(m), stds.append(s)
                table[(arm, n)] = f"{m:.2f} ± {s:.2f} (n={len(accs)})"
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=f"{arm[0]} {arm[1]}")
    for n in sizes:
        lines.append(f"| {n} | " + " | ".join(table.get((arm, n), "—") for arm in arms) + " |")
    ax.set(xscale="log", xlabel="labelled images per class", ylabel="test accuracy (%)", title="Label efficiency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    savefig(fig, path)
    return [*lines, "", f"![label efficiency](plots/{path.name})", ""]


def run_summary(r: dict) -> dict:
    c = r["config"]
    return {
        "run": "/".join(r["folder"].parts[-3:]),
        "status": r["status"],
        "epochs_done": len(r["history"]),
        "epochs_planned": r["planned_epochs"],
        "test_acc": r["result"].get("test_acc"),
        "wall_seconds": sum(h.get("seconds", 0) for h in r["history"]),
        "images_per_s": statistics.fmean([h["images_per_s"] for h in r["history"]]) if r["history"] else None,
        "device": c.get("device_name"),
        "torch": c.get("torch"),
        "torchvision": c.get("torchvision"),
        "rotnet": c.get("rotnet_version"),
        "commit": c.get("git_commit"),
        "dataset_checksums_match": c.get("dataset_checksums_match"),
        "command": c.get("command"),
        "error": r["error"],
    }


def provenance_lines(runs: list[dict], repro: dict) -> list[str]:
    lines = ["## Provenance", ""]
    if repro:
        wall = repro.get("wall_seconds")
        lines += [
            f"- reproduce: rotnet {repro.get('rotnet_version')} at commit {repro.get('git_commit')}, "
            f"torch {repro.get('torch')}, torchvision {repro.get('torchvision')}, {repro.get('device_name')}"
            + (f"; wall time {wall / 60:.1f} min" if wall else ""),
            "",
        ]
    lines += [
        "| run | status | epochs | wall (s) | train img/s | device | torch | rotnet (commit) | CIFAR-10 md5 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s = run_summary(r)
        md5 = {True: "official", False: "differs (warned)", None: "?"}[s["dataset_checksums_match"]]
        lines.append(
            f"| {s['run']} | {s['status']} | {s['epochs_done']}/{s['epochs_planned']} | "
            f"{s['wall_seconds']:.0f} | {fmt(s['images_per_s'], 0)} | {s['device']} | {s['torch']} | "
            f"{s['rotnet']} ({(s['commit'] or '?')[:12]}) | {md5} |"
        )
    return lines
