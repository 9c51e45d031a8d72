"""What the learning curves say that the final numbers do not: the pretraining gain paired by seed at every epoch,
and deeper models compared at matching epochs. The reference report gives one number per run, at its last epoch;
the gain of the whole network from rotation weights shrinks as training goes on, and the reference compares
20-epoch ResNet18 transfer runs with 70-epoch ResNet34/50 ones."""

from __future__ import annotations

import statistics

from rotnet.markdown import markdown_table, spans
from rotnet.stats import mean_interval

# Adam's steps at lr <= 1e-7 are 1e-4 of the protocol's first ones: under the paper schedule (1e-3, x0.1 every 10
# epochs) that is epoch 41 on, which the reference's 70-epoch ResNet34/50 runs spend 30 epochs in.
TINY_LR = 1e-7 * (1 + 1e-6)  # the float 1e-3 * 0.1**4 sits a hair above 1e-7


def accuracy_curve(history: list[dict]) -> dict[int, float]:
    """Epoch -> test accuracy of one run's metrics lines (epochs without an evaluation are absent)."""
    return {
        h["epoch"]: float(h["test_acc"])
        for h in history
        if isinstance(h.get("epoch"), int) and isinstance(h.get("test_acc"), int | float)
    }


def gain_by_epoch(rotation: dict[int, dict[int, float]], random: dict[int, dict[int, float]]) -> list[dict]:
    """The pretraining gain at every epoch both sides evaluated, paired by seed. Each side maps seed -> epoch ->
    accuracy; each entry: epoch, mean over the seeds, its 95% t-interval (None under two seeds), n and each seed's."""
    seeds = sorted(set(rotation) & set(random))
    epochs = sorted({e for s in seeds for e in rotation[s] if e in random[s]})
    out = []
    for epoch in epochs:
        by_seed = {
            s: rotation[s][epoch] - random[s][epoch] for s in seeds if epoch in rotation[s] and epoch in random[s]
        }
        mean, _, ci95 = mean_interval(list(by_seed.values()))
        out.append({"epoch": epoch, "mean": mean, "ci95": ci95, "n": len(by_seed), "by_seed": by_seed})
    return out


def side(entry: dict) -> str:
    """Where 0 lies against an epoch's interval: "above" (the gain is positive), "below", "contains" or "none"."""
    if entry["ci95"] is None:
        return "none"
    lo, hi = entry["ci95"]
    return "above" if lo > 0 else "below" if hi < 0 else "contains"


def gain_epoch_finding(row: dict) -> str:
    """One sentence on a row's gain over epochs, worded by its numbers: the epochs at which the interval lies above
    0, contains it or lies below it, and what that means for the reference's single figure at its last epoch."""
    curve = row.get("gain_by_epoch") or []
    what = f"{row['arch']} {row['experiment'].removesuffix('-from-rotation')}"
    if not curve:
        return ""
    if all(side(e) == "none" for e in curve):
        return f"{what}: one seed per epoch; no interval at any epoch (more seeds would give one)."
    parts = []
    for where, words in (("above", "lies above 0"), ("contains", "contains 0"), ("below", "lies below 0")):
        epochs = [e["epoch"] for e in curve if side(e) == where]
        if epochs:
            parts.append(f"{words} at epoch{'s' * (len(epochs) > 1)} {spans(epochs)}")
    peak = max(curve, key=lambda e: e["mean"])
    last = curve[-1]
    text = f"{what}: the gain's 95% interval (n={last['n']}) {'; '.join(parts)}"
    text += f"; largest mean {peak['mean']:+.2f} at epoch {peak['epoch']}"
    text += f", {last['mean']:+.2f} at the last ({last['epoch']})"
    ref, ref_epoch = row.get("reference_gain"), row.get("reference_epochs")
    if ref is not None and ref_epoch:
        at = next((e for e in curve if e["epoch"] == ref_epoch), None)
        if at is not None and at["ci95"] is not None:
            lo, hi = at["ci95"]
            where = "inside" if lo <= ref <= hi else "above" if ref > hi else "below"
            text += (
                f". The reference report's single figure ({ref:+.2f}, at epoch {ref_epoch}) lies {where} the interval "
                f"at that epoch; "
            )
            changes = len({side(e) for e in curve if side(e) != "none"}) > 1
            text += (
                "whether the gain is told from none depends on the epoch it is read at"
                if changes
                else "the verdict is the same at every epoch"
            )
    return text + "."


def shown_epochs(curve: list[dict], step: int | None) -> list[int]:
    """The epochs the report's table shows: all of them up to 20, else the first, the last epoch at each learning
    rate and the first after it, and the last."""
    epochs = [e["epoch"] for e in curve]
    if len(epochs) <= 20 or not step:
        return epochs
    keep = {epochs[0], epochs[-1]} | {e for e in epochs if e % step in (0, 1)}
    return [e for e in epochs if e in keep]


def gain_by_epoch_section(rows: list[dict], lrs: dict[int, float], step: int | None, plot: str) -> list[str]:
    """report.md's "Pretraining gain at every epoch": a table (gain mean and interval per transfer setting), the
    findings, the plot."""
    rows = [r for r in rows if r.get("gain_by_epoch")]
    if not rows:
        return []
    epochs = sorted({e for r in rows for e in shown_epochs(r["gain_by_epoch"], step)})
    header = [
        "epoch",
        "lr",
        *(f"{r['arch']} {r['experiment'].removesuffix('-from-rotation')} ({r['data']})" for r in rows),
    ]

    def cell(r: dict, epoch: int) -> str:
        e = next((x for x in r["gain_by_epoch"] if x["epoch"] == epoch), None)
        if e is None:
            return "—"
        ci = f" [{e['ci95'][0]:+.2f}, {e['ci95'][1]:+.2f}]" if e["ci95"] else ""
        return f"{e['mean']:+.2f}{ci}" + ("" if side(e) != "contains" else " (0 inside)")

    table = [[e, f"{lrs[e]:.0e}" if e in lrs else "—", *(cell(r, e) for r in rows)] for e in epochs]
    intro = (
        "From-rotation minus from-random test accuracy at each transfer epoch, paired by seed (each run's "
        "metrics.jsonl): the mean over the seeds and its 95% t-interval; results.json's `gain_by_epoch` has every "
        "epoch and each seed's."
    )
    findings = [f"- {text}" for r in rows if (text := gain_epoch_finding(r))]
    return [
        "## Pretraining gain at every epoch",
        "",
        intro,
        "",
        *markdown_table(header, table),
        "",
        *findings,
        "",
        f"![gain by epoch](plots/{plot})",
        "",
    ]


def at_epoch(runs: list[dict], epoch: int) -> float | None:
    """Mean test accuracy at an epoch over the runs whose curve has it (None when none has)."""
    values = [c[epoch] for r in runs if epoch in (c := accuracy_curve(r["history"]))]
    return statistics.fmean(values) if values else None


def tiny_lr_change(runs: list[dict]) -> tuple[int, float] | None:
    """(first epoch at lr <= TINY_LR, mean accuracy change from the epoch before it to the last), over the runs
    that reach such an lr; None when none does."""
    changes, first = [], None
    for r in runs:
        curve, h = accuracy_curve(r["history"]), r["history"]
        start = next((x["epoch"] for x in h if isinstance(x.get("lr"), int | float) and x["lr"] <= TINY_LR), None)
        if start is None or start - 1 not in curve or not curve:
            continue
        first = start if first is None else min(first, start)
        changes.append(curve[max(curve)] - curve[start - 1])
    return (first, statistics.fmean(changes)) if changes else None


def deeper_section(rows: list[dict], runs: list[dict]) -> list[str]:
    """report.md's "Deeper models": for each experiment run with more than one arch on the same data, each arch's
    accuracy at every schedule length in the group (the reference compares them at different ones), at its last
    epoch, the change over its epochs at lr <= 1e-7, and the reference's number; then each deeper arch against the
    shallowest, worded by the numbers."""
    finished = [r for r in runs if r["status"] == "finished"]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["n"]:
            groups.setdefault((row["experiment"], row["data"]), []).append(row)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return []
    lines = [
        "## Deeper models",
        "",
        "Each arch's test accuracy (%) at the end of each schedule length in the group (the mean over its seeds), "
        "at its last epoch, and how much its epochs at lr <= 1e-7 changed it. The reference report compares "
        "20-epoch ResNet18 transfer runs (45 for rotation) with 70-epoch ResNet34/50 ones.",
        "",
    ]
    findings = []
    for (experiment, data), group in groups.items():
        theirs = {r["arch"]: [x for x in finished if (x["experiment"], x["arch"]) == (experiment, r["arch"])
                              and x["data_label"] == r["data"]] for r in group}  # fmt: skip
        lengths = sorted({len(x["history"]) for xs in theirs.values() for x in xs})
        table = []
        for r in group:
            mine = theirs[r["arch"]]
            tiny = tiny_lr_change(mine)
            table.append(
                [r["arch"], f"{r['reference']:.2f} ({r['reference_epochs']})" if r["reference"] is not None else "—"]
                + [f"{v:.2f}" if (v := at_epoch(mine, e)) is not None else "—" for e in lengths]
                + [f"{r['ours_mean']:.2f} ({r['epochs']}, n={r['n']})"]
                + [f"{tiny[1]:+.2f} (epochs {tiny[0]}-{r['epochs']})" if tiny else "—"]
            )
        header = ["arch", "reference (epochs)", *(f"epoch {e}" for e in lengths), "last epoch (epochs, n)"]
        lines += [f"### {experiment} ({data})", "", *markdown_table(header + ["change at lr <= 1e-7"], table), ""]
        findings += deeper_findings(experiment, group, theirs, lengths)
    return [*lines, *(f"- {f}" for f in findings), ""]


def deeper_findings(experiment: str, group: list[dict], theirs: dict[str, list[dict]], lengths: list[int]) -> list[str]:
    """Each deeper arch against the first (shallowest) of the group: at its last epoch and at the shallowest's
    schedule length, with the shallowest's seed spread as the yardstick and the number of seeds said."""
    base, out = group[0], []
    base_std = f" ± {base['ours_std']:.2f}" if base["ours_std"] is not None else ""
    for r in group[1:]:
        diff = r["ours_mean"] - base["ours_mean"]
        text = (
            f"{experiment}: {r['arch']} {r['ours_mean']:.2f} at its last epoch ({r['epochs']}) is "
            f"{'above' if diff > 0 else 'below'} {base['arch']}'s {base['ours_mean']:.2f}{base_std} "
            f"(n={base['n']}, {base['epochs']} epochs) by {abs(diff):.2f}"
        )
        same = at_epoch(theirs[r["arch"]], int(base["epochs"])) if base["epochs"].isdigit() else None
        if same is not None:
            text += f"; at {base['epochs']} epochs, {same:.2f} ({same - base['ours_mean']:+.2f})"
        if base["ours_std"]:
            text += f"; the difference is {abs(diff) / base['ours_std']:.1f} times {base['arch']}'s seed std"
        if r["reference"] is not None and base["reference"] is not None:
            said = "worse" if r["reference"] < base["reference"] else "better"
            text += f". The reference report: {r['reference']:.2f} vs {base['reference']:.2f}, {said}"
            agree = (diff < 0) == (said == "worse")
            text += f"; these runs {'agree' if agree else 'disagree'}"
        if r["n"] < 2:
            text += f" ({r['arch']} stands on one seed: no interval)"
        out.append(text + ".")
    return out
