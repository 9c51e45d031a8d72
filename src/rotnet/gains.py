"""The pretraining gain: each from-rotation row against its from-random partner, paired by seed (at the end and at
every epoch), with its 95% t-interval, and worded from its numbers."""

from __future__ import annotations

import statistics

from rotnet.curves import gain_by_epoch
from rotnet.stats import t_interval


def gain_text(r: dict) -> str:
    """The gain, naming its seeds when they are fewer than the row's (the other side lacks some), and the
    reference report's own difference where it has both rows."""
    if r.get("gain_apart"):
        return f"— (not paired: from-random has another protocol: {r['gain_apart']})"
    seeds = r["gain_seeds"]
    notes = [f"seed{'s' * (len(seeds) > 1)} {','.join(map(str, seeds))} only"] if 0 < len(seeds) < r["n"] else []
    notes += ["one seed: no interval"] if len(seeds) == 1 else []
    notes += [f"reference report {signed(r['reference_gain'])}"] if r.get("reference_gain") is not None else []
    return signed(r["gain"]) + (f" ({'; '.join(notes)})" if notes else "")


def signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.2f}"


def with_gains(rows: list[dict], curves: list[dict] | None = None, apart=None) -> list[dict]:
    """Each from-rotation row gets `gain`: the mean over the seeds both rows finished of its accuracy minus the
    matching from-random run's (same arch, data and seed), and `gain_seeds`, those seeds. Paired, so that a seed
    one side lacks (failed, still training) does not move the difference. `reference_gain`: the reference report's
    difference between the same two rows, where it has both. `gain_by_epoch`: the same pairing at every epoch, from
    `curves` (per row: seed -> epoch -> test accuracy of its finished runs). `apart(i, j)`, when given, says why
    rows i and j are not one protocol besides the pretraining: such rows get no gain and `gain_apart` says why."""

    def target(r: dict) -> str:  # the data fine-tuned on, whatever the pretraining data
        return r["data"].split(" (pretrained on ")[0]

    curves = curves or [{} for _ in rows]
    by_key = {(r["experiment"], r["arch"], target(r)): i for i, r in enumerate(rows)}
    for i, (r, curve) in enumerate(zip(rows, curves, strict=True)):
        j = by_key.get((r["experiment"].replace("-from-rotation", "-from-random"), r["arch"], target(r)))
        other = rows[j] if j is not None else None
        partner = other is not None and r["experiment"].endswith("-from-rotation")
        r["gain_apart"] = (apart(i, j) if apart else "") if partner else ""
        pair = partner and not r["gain_apart"]
        if pair:
            r["gain_by_epoch"] = gain_by_epoch(curve, curves[j])
        both = sorted(set(r["by_seed"]) & set(other["by_seed"])) if pair else []
        diffs = [r["by_seed"][s] - other["by_seed"][s] for s in both]
        r["gain"] = statistics.fmean(diffs) if diffs else None
        r["gain_seeds"] = both
        r["gain_by_seed"] = dict(zip(both, diffs, strict=True))
        r["gain_std"] = statistics.stdev(diffs) if len(diffs) > 1 else None
        r["gain_ci95"] = t_interval(r["gain"], r["gain_std"], len(diffs))
        known = partner and None not in (r["reference"], other["reference"])
        r["reference_gain"] = r["reference"] - other["reference"] if known else None
    return rows


def gain_finding(r: dict) -> str:
    """One sentence on a row's paired gain, worded by its numbers: is 0 inside the 95% interval, and the
    reference report's single difference?"""
    n, what = len(r["gain_seeds"]), f"{r['arch']} {r['experiment'].removesuffix('-from-rotation')}"
    if not n:
        return ""
    if r["gain_ci95"] is None:
        return f"{what}: gain {signed(r['gain'])} from one seed; no interval (more seeds would give one)."
    lo, hi = r["gain_ci95"]
    span = f"{signed(r['gain'])} ± {r['gain_std']:.2f} over {n} seeds, 95% interval [{lo:+.2f}, {hi:+.2f}]"
    if lo <= 0 <= hi:
        verdict = "the interval contains 0: these seeds cannot tell this gain from no gain"
    else:
        verdict = f"the interval excludes 0: rotation pretraining {'helps' if lo > 0 else 'hurts'} here"
    theirs = r.get("reference_gain")
    if theirs is not None:
        where = "inside" if lo <= theirs <= hi else "above" if theirs > hi else "below"
        verdict += f"; the reference report's {signed(theirs)} lies {where} it"
        verdict += "" if where == "inside" else " (its single run is not what these seeds find)"
    return f"{what}: gain {span}; {verdict}."
