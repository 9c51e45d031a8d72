"""What the learning curves say that the final numbers do not: the pretraining gain paired by seed at every epoch,
and deeper models compared at matching epochs. The reference report gives one number per run, at its last epoch;
the gain of the whole network from rotation weights shrinks as training goes on, and the reference compares
20-epoch ResNet18 transfer runs with 70-epoch ResNet34/50 ones."""

from __future__ import annotations

import statistics

from rotnet.experiments import reference_results
from rotnet.markdown import markdown_table, spans
from rotnet.stats import difference_interval, mean_interval

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


def deeper_groups(rows: list[dict], runs: list[dict]) -> dict[tuple, tuple[list[dict], dict[str, list[dict]]]]:
    """(experiment, data) -> the rows of the archs run for it on that data (more than one arch; the shallowest first,
    as the table orders them) and each arch's finished runs."""
    finished = [r for r in runs if r["status"] == "finished"]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["n"]:
            groups.setdefault((row["experiment"], row["data"]), []).append(row)

    def runs_of(experiment: str, arch: str, data: str) -> list[dict]:
        return [x for x in finished if (x["experiment"], x["arch"], x["data_label"]) == (experiment, arch, data)]

    return {
        (experiment, data): (group, {r["arch"]: runs_of(experiment, r["arch"], data) for r in group})
        for (experiment, data), group in groups.items()
        if len(group) > 1
    }


def deeper_comparisons(rows: list[dict], runs: list[dict]) -> list[dict]:
    """Each deeper arch against the shallowest of its group (results.json's `deeper`): the difference at its last
    epoch with a 95% interval over the seeds (`difference_interval`: with one seed on a side, the other's spread
    stands in for it), the deeper arch at the shallowest's schedule length, how much each side's epochs at lr <=
    1e-7 changed it (`tiny_lr`, `base_tiny_lr`: first such epoch and the mean change), and the reference report's
    claim (its words, e.g. "worse than resnet18") against its own numbers and against these runs'."""
    claims = {(r["experiment"], r["arch"]): r.get("claim", "") for r in reference_results()}
    out = []
    for (experiment, data), (group, theirs) in deeper_groups(rows, runs).items():
        base = group[0]
        for r in group[1:]:
            diff = r["ours_mean"] - base["ours_mean"]
            ci95, interval = difference_interval(list(base["by_seed"].values()), list(r["by_seed"].values()))
            same = at_epoch(theirs[r["arch"]], int(base["epochs"])) if base["epochs"].isdigit() else None
            claim = claims.get((experiment, r["arch"]), "") if r["reference"] is not None else ""
            word, _, than = claim.partition(" than ")
            sign = {"worse": -1, "better": 1}.get(word) if than == base["arch"] else None
            refs = (r["reference"], base["reference"])
            tiny, base_tiny = tiny_lr_change(theirs[r["arch"]]), tiny_lr_change(theirs[base["arch"]])
            out.append(
                {
                    "experiment": experiment,
                    "data": data,
                    "arch": r["arch"],
                    "base_arch": base["arch"],
                    "mean": r["ours_mean"],
                    "n": r["n"],
                    "epochs": r["epochs"],
                    "base_mean": base["ours_mean"],
                    "base_std": base["ours_std"],
                    "base_n": base["n"],
                    "base_epochs": base["epochs"],
                    "difference": diff,
                    "ci95": ci95,
                    "interval": interval,
                    "at_base_epochs": same,
                    "tiny_lr": {"from_epoch": tiny[0], "change": tiny[1]} if tiny else None,
                    "base_tiny_lr": {"from_epoch": base_tiny[0], "change": base_tiny[1]} if base_tiny else None,
                    "reference": r["reference"],
                    "base_reference": base["reference"],
                    "reference_claim": claim if sign else "",
                    # do the reference's own numbers say what its words do?
                    "claim_in_its_numbers": None if sign is None or None in refs else (refs[0] - refs[1]) * sign > 0,
                    "verdict": verdict(sign, diff, ci95),
                }
            )
    return out


def verdict(sign: int | None, diff: float, ci95: list[float] | None) -> str:
    """What these runs say of a claim that the deeper arch is worse (sign -1) or better (+1): "supported",
    "contradicted" (its interval excludes 0 on one side), "not told apart" (contains 0), or without an interval
    "same direction" / "other direction"; "" without a claim."""
    if sign is None:
        return ""
    if ci95 is None:
        return "same direction" if diff * sign > 0 else "other direction"
    lo, hi = ci95
    if lo <= 0 <= hi:
        return "not told apart"
    return "supported" if (lo > 0) == (sign > 0) else "contradicted"


def deeper_section(rows: list[dict], runs: list[dict], comparisons: list[dict]) -> list[str]:
    """report.md's "Deeper models": for each experiment run with more than one arch on the same data, each arch's
    accuracy at every schedule length in the group (the reference compares them at different ones), at its last
    epoch, the change over its epochs at lr <= 1e-7, and the reference's number; then `comparisons` worded."""
    groups = deeper_groups(rows, runs)
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
    for (experiment, data), (group, theirs) in groups.items():
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
    return [*lines, *(f"- {deeper_finding(c)}" for c in comparisons), ""]


VERDICTS = {
    "supported": "these runs support it (the interval lies on its side of 0)",
    "contradicted": "these runs contradict it (the interval lies on the other side of 0)",
    "not told apart": "these runs cannot tell (the interval contains 0)",
    "same direction": "these runs point its way, with no interval",
    "other direction": "these runs point the other way, with no interval",
}


def epochs_text(n: int | str) -> str:
    """'1 epoch', '20 epochs' (a count, or the text of one)."""
    return f"{n} epoch{'s' * (str(n) != '1')}"


def deeper_finding(c: dict) -> str:
    """One deeper arch against the shallowest, worded from `deeper_comparisons`' numbers."""
    base_std = f" ± {c['base_std']:.2f}" if c["base_std"] is not None else ""
    text = (
        f"{c['experiment']}: {c['arch']} {c['mean']:.2f} at its last epoch ({c['epochs']}) against {c['base_arch']}'s "
        f"{c['base_mean']:.2f}{base_std} (n={c['base_n']}, {epochs_text(c['base_epochs'])}): {c['difference']:+.2f}"
    )
    if c["ci95"] is not None:
        lo, hi = c["ci95"]
        text += f", 95% interval [{lo:+.2f}, {hi:+.2f}]"
        if c["interval"] == "one seed":
            one = c["arch"] if c["n"] == 1 else c["base_arch"]
            other = c["base_arch"] if one == c["arch"] else c["arch"]
            text += f" ({one} stands on one seed: {other}'s seed spread stands in for its own)"
    else:
        text += " (one seed each: no interval)"
    if c["at_base_epochs"] is not None:
        same = c["at_base_epochs"]
        text += f"; at {epochs_text(c['base_epochs'])}, {same:.2f} ({same - c['base_mean']:+.2f})"
    if tiny := c["tiny_lr"]:
        text += f"; its epochs {tiny['from_epoch']}-{c['epochs']} at lr <= 1e-7 changed it by {tiny['change']:+.2f}"
        if base := c["base_tiny_lr"]:
            text += f" ({c['base_arch']}'s epochs {base['from_epoch']}-{c['base_epochs']}: {base['change']:+.2f})"
    if c["reference_claim"]:
        text += f". The reference report says {c['arch']} is {c['reference_claim']}"
        if c["claim_in_its_numbers"] is not None:
            ours = f"{c['reference']:.2f} vs {c['base_reference']:.2f}"
            text += f" (its numbers, {ours}, {'say so' if c['claim_in_its_numbers'] else 'say the opposite'})"
        text += f"; {VERDICTS[c['verdict']]}"
    elif c["reference"] is not None and c["base_reference"] is not None:
        text += f". The reference report's numbers: {c['reference']:.2f} vs {c['base_reference']:.2f}"
    return text + "."
