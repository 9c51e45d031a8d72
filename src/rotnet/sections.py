"""The report's sections beyond its main table: hyperparameters, the kNN monitor, linear probes, label
efficiency, and where every number came from (provenance); each from the runs `report.collect` read."""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

from rotnet import plots
from rotnet.config import DATASETS, uses_reference_normalization
from rotnet.errors import RotnetError
from rotnet.files import sha256_file
from rotnet.layout import invocations, read_json
from rotnet.markdown import code, markdown_table
from rotnet.runtime import recorded_threads

HYPERPARAMETERS = ("optimizer", "lr", "schedule", "lr_step_epochs", "lr_gamma", "weight_decay", "epochs")
HYPERPARAMETERS += ("batch_size", "rotations_per_image", "stem", "image_size", "normalization", "precision")


def hyperparameter_text(cfg: dict, key: str):
    """A setting as the table shows it: the value, or what it means where the value is a rule."""
    if key == "image_size" and not cfg[key]:
        return "dataset's"
    if key == "normalization":
        return "reference constants" if uses_reference_normalization(cfg[key], cfg["dataset"]) else "dataset's mean/std"
    return cfg[key]


def hyperparameter_section(runs: list[dict]) -> list[str]:
    """The settings each row's runs actually used, read from their config.json (one line per distinct setting)."""
    seen: dict[tuple, list[str]] = {}
    for r in runs:
        if cfg := r["cfg"]:
            key = tuple(hyperparameter_text(cfg, k) for k in HYPERPARAMETERS)
            seen.setdefault(key, []).append(f"{r['arch']} {r['experiment']}" + (f" ({r['data']})" if r["data"] else ""))
    if not seen:
        return []
    rows = [[", ".join(dict.fromkeys(names)), *key] for key, names in seen.items()]
    return ["", "### Hyperparameters each run used", "", *markdown_table(["runs", *HYPERPARAMETERS], rows)]


def test_set_text(runs: list[dict]) -> str:
    """What the accuracies were measured on, from the runs' own counts."""
    counts = sorted({r["result"].get("test_images") for r in runs if r["result"].get("test_images")})
    n = "/".join(f"{c:,}" for c in counts) or "the"
    return f"Rotation: all four rotations of {n} test images; classification: {n} test images."


def transfer_schedule(runs: list[dict]) -> tuple[dict[int, float], int | None]:
    """The learning rate at each epoch of the finished transfer runs (the first run's, as they share the protocol)
    and their lr step in epochs, for the gain-by-epoch table."""
    mine = [r for r in runs if r["status"] == "finished" and r["experiment"] != "rotation"]
    if not mine:
        return {}, None
    lrs = {h["epoch"]: h["lr"] for h in mine[0]["history"] if isinstance(h.get("lr"), int | float)}
    return lrs, mine[0]["cfg"].get("lr_step_epochs") if mine[0]["cfg"].get("schedule") == "step" else None


def knn_section(runs: list[dict], path: Path) -> list[str]:
    runs = [r for r in runs if any("knn_acc" in h for h in r["history"])]
    if not runs:
        return []
    plots.plot_knn(runs, path)
    rows = [
        [plots.label(r, True), ", ".join(f"{h['epoch']}: {h['knn_acc']:.2f}" for h in r["history"] if "knn_acc" in h)]
        for r in runs
    ]
    return [
        "## kNN monitor",
        "",
        *markdown_table(["run", "epoch: kNN accuracy (%)"], rows),
        "",
        f"![knn](plots/{path.name})",
        "",
    ]


def probe_section(runs: list[dict], path: Path) -> list[str]:
    found = [(r, sorted((r["folder"] / "probe").glob("probe-*.json"))) for r in runs]
    shown = [(r, p) for r, files in found for p in sealed_probes(r, files)]
    unsealed = sum(len(files) for _, files in found) - len(shown)
    probes = [(r, read_json(p)) for r, p in shown]
    probes = [(r, p) for r, p in probes if isinstance(p, dict) and "accuracy" in p and "stages" in p]
    if not probes and not unsealed:
        return []
    lines = ["## Per-layer probes (frozen features, RotNet Table 1 protocol)", ""]
    if unsealed:
        lines += [
            f"{unsealed} probe file(s) that their run's manifest.json does not vouch for are not shown (edited, put "
            "there by hand, or written by a rotnet before 0.6: `rotnet probe` again seals its results).",
            "",
        ]
    if not probes:
        return lines
    for r, p in probes:
        stages, acc = p["stages"], p["accuracy"]
        on = f", on {p['data']}" if p.get("data") else ""  # probes before rotnet 0.3: the run's own data
        lines += [f"{plots.label(r, True)}: {p['head']} head, pool {p['pool']}, {p['epochs']} epochs{on}", ""]
        lines += markdown_table(["stage", *acc], [[s, *(f"{acc[w][s]:.2f}" for w in acc)] for s in stages]) + [""]
    plots.plot_probes(probes, path)
    return [*lines, f"![probe](plots/{path.name})", ""]


def sealed_probes(run: dict, found: list[Path]) -> list[Path]:
    """Those of a run's probe results (`found`) that its manifest lists with the sha256 they still have (every one,
    for a record made before rotnet sealed runs): a probe file put into a sealed run by hand, or edited, is not
    shown."""
    files = run.get("sealed_files")
    if files is None:
        return found if run.get("status") != "unreadable" and not run.get("sealed") else []
    return [p for p in found if (sha := files.get(f"probe/{p.name}")) is not None and digest(p) == sha]


def digest(path: Path) -> str | None:
    """A file's sha256, or None for one that is not a regular file (a FIFO or a link planted by hand)."""
    try:
        return sha256_file(path)
    except RotnetError:
        return None


def label_efficiency_section(runs: list[dict], path: Path) -> list[str]:
    """Accuracy by labeled images per class, one column per arm: a classification experiment of one arch on one data
    (its runs' segment; runs on two datasets were averaged as seeds of one number). A rotation run on a subset
    (`--train-per-class`) uses no labels and is no arm."""
    runs = [
        r for r in runs if r["per_class"] and r["status"] == "finished" and r["cfg"].get("task") == "classification"
    ]
    if not runs:
        return []
    arms = sorted({(r["segment"], r["arch"], r["experiment"]) for r in runs})
    many_data = len({segment for segment, _, _ in arms}) > 1
    names = {arm: f"{arm[1]} {arm[2]}" + (f" ({arm[0] or 'cifar10'})" if many_data else "") for arm in arms}
    sizes = sorted({r["per_class"] for r in runs})
    table: dict = {}
    curves = {}
    for arm in arms:
        xs, means, stds = [], [], []
        for n in sizes:
            accs = [
                r["result"]["test_acc"]
                for r in runs
                if (r["segment"], r["arch"], r["experiment"]) == arm and r["per_class"] == n
            ]
            if accs:
                m, s = statistics.fmean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
                xs.append(n), means.append(m), stds.append(s)
                table[(arm, n)] = f"{m:.2f} ± {s:.2f} (n={len(accs)})" if len(accs) > 1 else f"{m:.2f} (n=1)"
        curves[names[arm]] = (xs, means, stds)
    plots.plot_label_efficiency(curves, path)
    header = ["labels per class", *(names[arm] for arm in arms)]
    rows = [[n, *(table.get((arm, n), "—") for arm in arms)] for n in sizes]
    return [
        "## Label efficiency (class-balanced, nested subsets)",
        "",
        *markdown_table(header, rows),
        "",
        f"![label efficiency](plots/{path.name})",
        "",
    ]


def epoch_seconds(history: list[dict]) -> list[float]:
    """The seconds each epoch recorded (an epoch that spans a pause counts it)."""
    return [s for h in history if isinstance(s := h.get("seconds"), int | float)]


def run_summary(r: dict) -> dict:
    c = r["config"]
    resumes = c.get("resumes") if isinstance(c.get("resumes"), list) else []
    # Medians: an epoch that spans a pause (a stopped process, a suspended machine) counts it in its seconds.
    speeds = [s for h in r["history"] if isinstance(s := h.get("images_per_s"), int | float)]
    seconds = epoch_seconds(r["history"])
    return {
        "run": "/".join(r["folder"].parts[-4 if r["segment"] else -3 :]),
        "status": r["status"],
        "epochs_done": len(r["history"]),
        "epochs_planned": r["planned_epochs"],
        "test_acc": r["result"].get("test_acc"),
        "epoch_seconds_sum": sum(seconds),
        "epoch_seconds": statistics.median(seconds) if seconds else None,
        "images_per_s": statistics.median(speeds) if speeds else None,
        "device": device_text(c),
        "torch": c.get("torch"),
        "torchvision": c.get("torchvision"),
        "rotnet": c.get("rotnet_version"),
        "commit": c.get("git_commit"),
        "resumed_by": list(dict.fromkeys(str(x.get("git_commit")) for x in resumes if isinstance(x, dict))),
        "dataset_checksums_match": c.get("dataset_checksums_match"),
        "command": c.get("command"),
        "invocations": [
            (str(x.get("git_commit")), str(x.get("command")))
            for x in [c, *resumes]
            if isinstance(x, dict) and (x.get("command") or x.get("git_commit"))
        ],
        "error": r["error"],
    }


def device_text(record: dict) -> str | None:
    """The device a run trained on, with its CPU where the record names it (from rotnet 0.4): "x86_64 (1 thread),
    AMD EPYC, AVX2"."""
    cpu = record.get("cpu") if isinstance(record.get("cpu"), dict) else {}
    named = [str(cpu[k]) for k in ("model", "capability") if cpu.get(k)]
    return ", ".join([str(record.get("device_name")), *named]) if named else record.get("device_name")


def compute(runs: list[dict]) -> dict | None:
    """The CPU compute the finished runs took, in core-hours (threads × seconds): by median epoch times × epochs (an
    epoch that spans a pause, a stopped process or a suspended machine, counts it in its seconds; the median leaves
    it out) and by the seconds the epochs recorded; a run left out of its row's mean (`pooling`) took its compute too.
    None when no finished CPU run recorded its threads."""
    done = [(r, recorded_threads(r["config"])) for r in runs if r["status"] in ("finished", "not pooled")]
    done = [(r, t) for r, t in done if t and r["config"].get("device") == "cpu"]
    if not done:
        return None
    by_median = by_seconds = 0.0
    for r, threads in done:
        seconds = epoch_seconds(r["history"])
        by_median += threads * statistics.median(seconds) * len(r["history"]) if seconds else 0.0
        by_seconds += threads * sum(seconds)
    return {"runs": len(done), "core_hours_median": by_median / 3600, "core_hours_recorded": by_seconds / 3600}


def compute_text(spent: dict | None) -> str:
    if not spent:
        return ""
    return (
        f"- compute: {spent['core_hours_median']:.1f} core-hours for the {spent['runs']} finished CPU runs by median "
        f"epoch times (threads × median epoch × epochs, evaluation included), {spent['core_hours_recorded']:.1f} by "
        "the seconds the epochs recorded (pauses included)"
    )


def data_files_text(dataset: str, match) -> str:
    """The provenance table's "data files": whether a named dataset's files are its official release's (by md5); an
    image folder has none to compare with, whatever an older record says (rotnet <= 0.4 recorded True)."""
    if dataset not in DATASETS:
        return "image folder (no official release)"
    return {True: f"official {dataset} (md5)", False: "differ from the official (warned)"}.get(match, "?")


def commands_line(repro: dict) -> list[str]:
    """The plan's command; every distinct one, in the order first given, when its runs root was filled by more than
    one (seeds added later, say: the last command alone would hide the runs the others made)."""
    said = [e.get("command") for e in invocations(repro)]
    commands = list(dict.fromkeys(c for c in said if isinstance(c, str) and c))
    if len(commands) > 1:
        return ["Commands, in the order first given: " + "; ".join(code(c) for c in commands), ""]
    return [f"Command: {code(commands[0])}", ""] if commands else []


def earlier_text(repro: dict) -> str:
    """The invocations before the last one (a plan resumed across sessions): how many, their commits, and the wall
    time of them all."""
    entries = invocations(repro)
    earlier = entries[:-1]
    if not earlier:
        return ""
    walls = [e.get("wall_seconds") for e in entries]
    known = [w for w in walls if isinstance(w, int | float)]
    commits = ", ".join(dict.fromkeys(str(e.get("git_commit"))[:7] for e in earlier))
    unknown = len(walls) - len(known)  # killed, or (the last) still running: their time is not the sum's
    if not unknown:
        wall = f"{sum(known) / 60:.1f} min for all {len(walls)}"
    elif known:
        wall = f"{sum(known) / 60:.1f} min for the {len(known)} of {len(walls)} that recorded their end"
        wall += f" ({unknown} did not: killed, or still running)"
    else:
        wall = f"none of the {len(walls)} recorded its end (killed, or still running)"
    return f"; resumed from {len(earlier)} earlier invocation{'s' * (len(earlier) != 1)} (commits {commits}), {wall}"


def provenance_lines(runs: list[dict], repro: dict, spent: dict | None) -> list[str]:
    """The Provenance section: the plan's invocations, the compute `spent` (results.json's), each run's line."""
    head = []
    if repro:
        wall = repro.get("wall_seconds")
        head.append(
            f"- reproduce: rotnet {repro.get('rotnet_version')} at commit {repro.get('git_commit')}, "
            f"torch {repro.get('torch')}, torchvision {repro.get('torchvision')}, {repro.get('device_name')}"
            + (f"; wall time {wall / 60:.1f} min" if wall else "")
            + earlier_text(repro)
        )
    head += [text] if (text := compute_text(spent)) else []
    lines = ["## Provenance", "", *head, *([""] if head else [])]
    lines += [
        "| run | status | epochs | epoch seconds (sum, pauses included) | epoch (s, median) | img/s (median) | device "
        "| torch | rotnet (commit) "
        "| data files |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s = run_summary(r)
        md5 = data_files_text(r["cfg"].get("dataset", "cifar10"), s["dataset_checksums_match"])
        resumed = f"; resumed by {', '.join(c[:7] for c in s['resumed_by'])}" if s["resumed_by"] else ""
        known = {k: "—" if s[k] is None else s[k] for k in ("epochs_planned", "device", "torch", "rotnet")}
        lines.append(
            f"| {s['run']} | {s['status']} | {s['epochs_done']}/{known['epochs_planned']} | "
            f"{s['epoch_seconds_sum']:.0f} | {fmt(s['epoch_seconds'], 0)} | {fmt(s['images_per_s'], 0)} | "
            f"{known['device']} | {known['torch']} | "
            f"{known['rotnet']} ({(s['commit'] or '?')[:12]}{resumed}) | {md5} |"
        )
    lines += [
        "",
        "Every command that started or resumed a run, as its config.json records them (a run's record begins at its "
        "first start; rotnet before 0.3 recorded no resumes):",
        "",
    ]
    for r in runs:
        s = run_summary(r)
        said = []  # a run resumed by the same command again and again: once, with its count
        for (commit, cmd), same in itertools.groupby(map(tuple, s["invocations"])):
            times = len(list(same))
            said.append(f"{code(cmd)} ({commit[:12]})" + (f" ×{times}" if times > 1 else ""))
        lines += [f"- {s['run']}: " + ("; ".join(said) or f"no command read ({s['status']})")]
    return lines


def status_notes(mine: list[dict], planned: list[tuple], data: str) -> list[str]:
    """A table row's status: each of its runs that did not finish (and why), each planned seed not run, the seeds
    whose numbers stand on an unsealed record (before 0.4) or on a record without its weights (committed results),
    and the from-rotation seeds whose rotation run was trained again after they started from it, or whose rotation
    weights were pretrained on other data than the seed was trained on."""
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
    found = {(data, r["arch"], r["experiment"], f"seed{r['seed']}") for r in mine}
    notes += [f"seed {p[3].removeprefix('seed')} not run" for p in planned if p not in found]
    if not mine and not planned:
        notes.append("not run")
    finished = [r for r in mine if r["status"] == "finished"]
    unsealed = [str(r["seed"]) for r in finished if not r["sealed"]]
    if unsealed:
        notes.append(f"seed {', '.join(unsealed)} unsealed (made before rotnet 0.4)")
    absent = sorted((r["absent"], r["seed"]) for r in finished if r["absent"])
    for names, same in itertools.groupby(absent, key=lambda x: x[0]):
        notes.append(f"seed {', '.join(str(s) for _, s in same)} record only (no {', '.join(names)})")
    if replaced := [str(r["seed"]) for r in finished if r.get("replaced_source")]:
        notes.append(
            f"seed {', '.join(replaced)} started from rotation weights that its rotation run here no longer holds "
            "(trained again since)"
        )
    for r in (r for r in finished if r.get("other_pretraining_data")):
        differ = list(dict.fromkeys(d.split(":")[0].removeprefix("files/") for d in r["other_pretraining_data"]))
        notes.append(
            f"seed {r['seed']} started from rotation weights pretrained on other data than it was trained on "
            f"({', '.join(differ[:3])}{' ...' if len(differ) > 3 else ''} differ)"
        )
    return notes


def fmt(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:.{digits}f}"
