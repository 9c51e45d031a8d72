"""`rotnet report RUNS_DIR`: results table (markdown, JSON, CSV), plots and provenance, from run folders alone.

The report writes only its own files (listed in REPORT_MARKER); a file of the same name that it did not write is
never overwritten.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any

from rotnet import plots
from rotnet.config import config_diff, dataset_slug, with_defaults
from rotnet.curves import accuracy_curve, deeper_comparisons, deeper_section, gain_by_epoch_section
from rotnet.data import data_diff
from rotnet.errors import RotnetError
from rotnet.experiments import EXPERIMENTS, reference_results
from rotnet.files import atomic_write_text, file_in_the_way, make_folder, refuse_links, sha256_file
from rotnet.gains import gain_finding, gain_text, signed, with_gains
from rotnet.layout import (
    CONFIG,
    FAILED,
    REPORT_MARKER,
    RESULT,
    find_runs,
    invocations,
    parent_as_spelled,
    parse_run_dir,
    plan_log,
    read_json,
    recorded_root,
    run_holding,
    runs_root_above,
    runs_root_holding,
    source_run,
)
from rotnet.lock import is_locked
from rotnet.markdown import code, markdown_table
from rotnet.pooling import IGNORED, pool, unpaired
from rotnet.protocol import load_preset, preset_names, resolve
from rotnet.record import read_run
from rotnet.sections import (
    commands_line,
    compute,
    fmt,
    hyperparameter_section,
    knn_section,
    label_efficiency_section,
    probe_section,
    provenance_lines,
    run_summary,
    status_notes,
    test_set_text,
    transfer_schedule,
)
from rotnet.stats import counts_of, wilson

ORDER = {e: i for i, e in enumerate(EXPERIMENTS)}  # the report's row order: rotation first
OUTPUTS = ("report.md", "results.json", "results.csv")
PLOTS = (
    "seed_vs_rotnet.png",  # the reference vs rotnet bars; the file keeps its 0.1 name so links to it hold
    "pretraining_gain.png",
    "gain_by_epoch.png",
    "curves.png",
    "confusion.png",
    "rotation_examples.png",
    "knn.png",
    "probe.png",
    "label_efficiency.png",
)

REPORT_FILES = (*OUTPUTS, *(f"plots/{p}" for p in PLOTS))  # every file the report writes under a runs root


def collect(root: Path) -> list[dict]:
    """One entry per run folder, with its status: finished, failed, partial (some epochs), started, unreadable (a
    config, result or metrics file that is not what rotnet writes), or what `record.inspect` found wrong with it
    (tampered, incomplete, inconsistent), whose numbers are never counted."""
    runs = []
    for folder in find_runs(root):
        rid = parse_run_dir(folder, root)
        rec = read_run(folder, root)  # each record file read once, checked and parsed from the same bytes
        config = rec.config
        result = rec.result if RESULT in rec.has else {}
        failed = read_json(folder / FAILED) if (folder / FAILED).exists() else {}
        history = rec.history
        readable = (
            config is not None
            and isinstance(result, dict)
            and (not result or isinstance(result.get("test_acc"), int | float))
            and isinstance(failed, dict)
            and history is not None
        )
        if not readable:
            status = "unreadable"
            config, result, failed, history = {}, {}, {}, []
        else:
            # A failed mark beside a result: a later reproduce refused to reuse it (its rotation weights changed).
            status = "failed" if failed else "finished" if result else "partial" if history else "started"
        # A run another process is writing is between two seals; it is checked once that process lets go.
        seen = rec.inspection if not is_locked(folder) else None
        if seen is not None and not seen.record_whole and status != "unreadable":
            status, failed = seen.status, {"error": "; ".join(seen.problems)}
            if status in ("tampered", "inconsistent"):  # its fields may hold anything: none is read, the row says why
                config, result, history = {}, {}, []
        cfg = with_defaults(config["config"]) if config else {}  # a run older than a key: its default
        runs.append(
            {
                "folder": folder,
                "placed_in": recorded_root(folder, rec.config["config"]) if rec.config else None,
                "segment": rid.data,
                "data": rid.data + (f"@{rid.per_class}pc" if rid.per_class else ""),  # the table's key for its data
                "data_label": data_label(cfg, rid.data),
                "arch": rid.arch,
                "experiment": rid.experiment,
                "seed": rid.seed,
                "status": status,
                "sealed": seen is None or seen.status != "unsealed",
                "absent": sorted(seen.missing) if seen is not None and not seen.trusted else [],  # record only
                "per_class": rid.per_class,
                "config": config,  # config.json as written
                "cfg": cfg,  # the run's configuration, every key
                "result": result,
                "history": history,
                "sealed_files": rec.listed[0] if rec.listed else None,  # what the manifest vouches for (probes)
                "planned_epochs": cfg.get("epochs"),
                "error": str(failed.get("error", "")),
            }
        )
    order = lambda r: (r["data"], r["arch"], ORDER.get(r["experiment"], 99), r["per_class"], r["seed"])  # noqa: E731
    return sorted(runs, key=order)


def own_runs(root: Path, runs: list[dict]) -> tuple[list[dict], list[Path], list[Path]]:
    """The runs of this runs root; the runs roots inside it (`runs/quick` in `runs`, the README's layout); and those
    above it whose runs lie in it (it is their dataset's folder), each as root spells it. Which root a run is of is
    where its record places it: read here by any other, a run reads as inconsistent, of a dataset named after a
    folder. A run placed nowhere (moved, unreadable) below an inner root is that root's."""
    here = root.resolve()
    placed = {r["placed_in"] for r in runs if r["placed_in"] is not None}
    inner = sorted(p for p in placed if here in p.parents)

    def theirs(r: dict) -> bool:
        if r["placed_in"] is not None:
            return r["placed_in"] != here
        return any(n in r["folder"].resolve().parents for n in inner)

    outer = sorted((p for p in placed if p in here.parents), key=lambda p: -len(p.parts))
    above = [parent_as_spelled(root, len(here.parts) - len(p.parts)) for p in outer]
    return [r for r in runs if not theirs(r)], [root / n.relative_to(here) for n in inner], above


def link_sources(root: Path, runs: list[dict]) -> list[dict]:
    """Each finished from-rotation run checked against the rotation run it started from. `replaced_source`: its
    rotation run in this root no longer holds those weights: trained again since (`--restart`), to other final weights
    or not yet to any (partial, started or failed). `other_pretraining_data`: what differs between the files its
    weights were pretrained on (as its record says, or, in a record older than `init_source_data`, as the rotation
    run here that still holds them does) and the files it was fine-tuned on, for a run pretrained on its own dataset.
    Either way the table would show the two as one pipeline on one data. `source_data`: those files, where known. A
    source that the record does not name, that lies elsewhere or whose record cannot be read, is not judged."""
    # What each rotation run here holds now: its final weights' digest, or "" for none yet (a failed mark beside a
    # result, where a plan refused to reuse the run, leaves its weights as they were); and the data it trained on.
    holds, trained_on = {}, {}
    for r in runs:
        if r["experiment"] == "rotation" and r["status"] in ("finished", "partial", "started", "failed"):
            folder = r["folder"].resolve()
            holds[folder] = (r["history"][-1].get("weights_sha256") if r["history"] else None) if r["result"] else ""
            trained_on[folder] = r["config"].get("dataset")
    out = []
    for r in runs:
        started = r["config"].get("init_sha256") if r["status"] == "finished" else None
        source = source_run(root, r["config"]) if started else None
        now = holds.get(source.resolve()) if source else None
        if now is not None and now != started:
            r = r | {"replaced_source": True}
        made_on = r["config"].get("init_source_data") if started else None
        if made_on is None and source is not None and now == started:  # older record: its source here holds them
            made_on = trained_on.get(source.resolve())
        if isinstance(made_on, dict):  # pooling compares it between seeds (`pooling.differences`)
            r = r | {"source_data": made_on}
        own = r["config"].get("dataset")
        if isinstance(made_on, dict) and isinstance(own, dict) and not r["cfg"].get("pretrain_dataset"):
            if diff := data_diff(made_on, own):
                r = r | {"other_pretraining_data": diff}
        out.append(r)
    return out


def data_label(cfg: dict, segment: str) -> str:
    """What a run trained on, for the report: the dataset, its size if set, and the pretraining data of a transfer."""
    if not cfg:
        return segment or "cifar10"
    out = dataset_slug(cfg.get("dataset", "cifar10")) + (f" {cfg['image_size']}px" if cfg.get("image_size") else "")
    out += f", {cfg['train_per_class']} per class" if cfg.get("train_per_class") else ""
    return out + (f" (pretrained on {dataset_slug(cfg['pretrain_dataset'])})" if cfg.get("pretrain_dataset") else "")


def table_rows(root: Path, runs: list[dict]) -> list[dict]:
    """One row per (data, experiment, arch): the reference report's number beside ours (mean, std, n over finished
    seeds); the reference report's rows are CIFAR-10's (data segment "")."""
    seeds = {(r["experiment"], r["arch"], ""): r for r in reference_results()}
    plan = planned_runs(root)
    # The reference's rows: where a plan recorded its runs, those run or planned here (`reproduce --archs resnet18`
    # lists no ResNet34/50 row as "not run"; a label-efficiency plan, its rotation run's alone); in a folder of `train`
    # runs, every row of the archs run there (what is missing is said); all of them for a folder with nothing run.
    if made := {(p[2], p[1], p[0]) for p in plan + planned_runs(root, ("label-efficiency.json",))}:
        keys = [k for k in seeds if k in made | {(r["experiment"], r["arch"], r["data"]) for r in runs}]
    else:
        archs, cifar = {r["arch"] for r in runs}, not runs or any(not r["data"] for r in runs)
        keys = [k for k in seeds if not archs or k[1] in archs] if cifar else []
    keys += [(r["experiment"], r["arch"], r["data"]) for r in runs] + [(p[2], p[1], p[0]) for p in plan]
    keys = sorted(dict.fromkeys(keys), key=lambda k: (k[1], ORDER.get(k[0], 99), k[2]))
    labels = {r["data"]: r["data_label"] for r in runs}
    rows, curves, pooled = [], [], []
    for experiment, arch, data in keys:
        mine = [r for r in runs if (r["experiment"], r["arch"], r["data"]) == (experiment, arch, data)]
        by_seed = {r["seed"]: r["result"]["test_acc"] for r in mine if r["status"] == "finished"}
        counts = [c for r in mine if r["status"] == "finished" and (c := counts_of(r["result"].get("confusion")))]
        curves.append({r["seed"]: accuracy_curve(r["history"]) for r in mine if r["status"] == "finished"})
        pooled.append(next((r for r in mine if r["status"] == "finished"), None))  # one run of the row's protocol
        done = list(by_seed.values())
        seed = seeds.get((experiment, arch, data))
        mean = statistics.fmean(done) if done else None
        std = statistics.stdev(done) if len(done) > 1 else None  # no spread from one seed, not a spread of 0
        planned = [p for p in plan if (p[0], p[1], p[2]) == (data, arch, experiment)]
        notes = status_notes(mine, planned, data)
        epochs = sorted({len(r["history"]) for r in mine if r["status"] == "finished"})
        rows.append(
            {
                "experiment": experiment,
                "arch": arch,
                "data": labels.get(data, data or "cifar10"),
                "reference": seed["test_acc"] if seed else None,
                "reference_epochs": seed["epochs"] if seed else None,
                "ours_mean": mean,
                "ours_std": std,
                "n": len(done),
                "by_seed": by_seed,
                "epochs": ",".join(map(str, epochs)),
                "difference": mean - seed["test_acc"] if seed and mean is not None else None,
                "status": "; ".join(notes) or "ok",
                "reference_wording": seed["wording"] if seed else "",
                # one seed: the test set's own sampling error is all the uncertainty said about the number
                "wilson95": wilson(*counts[0]) if len(by_seed) == 1 and len(counts) == 1 else None,
            }
        )
    return with_gains(rows, curves, apart=lambda i, j: unpaired(pooled[i], pooled[j]))


def planned_runs(root: Path, logs: tuple[str, ...] = ("reproduce.json",)) -> list[tuple[str, str, str, str]]:
    """(data key, arch, experiment, seedN) of each run any invocation in the plans' logs planned (a first plan's seed
    that never started stays "not run" after a second plan on the same root); a subset run's key is DATA@Npc."""
    out = []
    lists = [e["runs"] for log in logs for e in invocations(plan_log(root / log)) if e["runs"] is not None]
    for p in dict.fromkeys(r for runs in lists for r in runs):  # invocations: lists of run names only
        parts = p.split("/")
        if len(parts) in (3, 4):
            data, arch, name, seed = ([""] + parts)[-4:]
            experiment, at, per_class = name.partition("@")
            out.append((data + (f"@{per_class}" if at else ""), arch, experiment, seed))
    return out


def results_table(rows: list[dict]) -> list[str]:
    """The main table's markdown lines (report.md, and the terminal at the end of reproduce)."""
    out = []
    for r in rows:
        ours = (
            f"{r['ours_mean']:.2f}" + (f" ± {r['ours_std']:.2f} (n={r['n']})" if r["n"] > 1 else "") if r["n"] else "—"
        )
        ci = r.get("wilson95")
        if ci and ci[1] - ci[0] >= 2:  # where the test set alone could move the number by a point or more
            ours += f" [{ci[0]:.1f}, {ci[1]:.1f}]"
        out.append(
            [r["experiment"], r["arch"], r["data"], fmt(r["reference"]) or "—", ours]
            + [f"{r['reference_epochs'] or '—'} / {r['epochs'] or '—'}", signed(r["difference"]), gain_text(r)]
            + [r["status"]]
        )
    header = ["experiment", "arch", "data", "reference report", "ours (mean ± std, n)", "epochs (reference / ours)"]
    return markdown_table(header + ["difference", "pretraining gain", "status"], out)


def seeds_section(rows: list[dict], seeds: list[int]) -> list[str]:
    """Each seed's accuracy per row, where there are several seeds: the numbers behind each mean and std."""
    if len(seeds) < 2:
        return []

    def cell(r: dict, s: int) -> str:
        gain = r.get("gain_by_seed", {}).get(s)
        return (
            "—" if s not in r["by_seed"] else f"{r['by_seed'][s]:.2f}" + (f" ({gain:+.2f})" if gain is not None else "")
        )

    shown = [[r["experiment"], r["arch"], r["data"], *(cell(r, s) for s in seeds)] for r in rows if r["by_seed"]]
    intro = (
        "Each seed's test accuracy (%); in brackets a from-rotation run's gain over the same seed's from-random run."
    )
    header = ["experiment", "arch", "data", *(f"seed {s}" for s in seeds)]
    return ["", "### Each seed", "", intro, "", *markdown_table(header, shown)]


# results.json's row keys before 0.7 named the reference report "seed"; read under today's names
OLD_ROW_KEYS = {
    "seed_report": "reference",
    "seed_gain": "reference_gain",
    "seed_epochs": "reference_epochs",
    "seed_wording": "reference_wording",
}


def read_results(path: Path) -> Any:
    """A results.json (None if unreadable), its rows' keys as today's report writes them, whichever version wrote it."""
    results = read_json(Path(path))
    if isinstance(results, dict) and isinstance(results.get("rows"), list):
        rows = results["rows"]
        results["rows"] = [
            {OLD_ROW_KEYS.get(k, k): v for k, v in r.items()} if isinstance(r, dict) else r for r in rows
        ]
    return results


def summary(root: Path) -> str:
    """The main table for the terminal, from the results.json the report wrote, with its preset's caveat."""
    results = read_results(Path(root) / "results.json")
    rows = results.get("rows", []) if isinstance(results, dict) else []
    caveat = results.get("caveat") if isinstance(results, dict) else None
    return "\n".join(results_table(rows)) + (f"\n\n{caveat}" if isinstance(caveat, str) and caveat else "")


def preset_caveat(preset: str | None) -> str:
    """What a shipped preset's numbers cannot say (its `caveat`), for the report and the terminal."""
    try:
        return str(load_preset(preset).get("caveat", "")) if preset in preset_names() else ""
    except RotnetError:
        return ""


def outside_preset(preset: str, runs: list[dict], root: Path) -> list[str]:
    """'RUN (what differs)' for each finished run the preset's protocol would not have made, as pooling compares
    seeds: a report that names a preset vouches for the protocol of every run it tables (and shows its caveat)."""
    out = []
    for r in (r for r in runs if r["status"] in ("finished", "not pooled")):
        cfg = r["cfg"]
        identity = {k: cfg[k] for k in ("arch", "seed", "dataset", "pretrain_dataset", "image_size") if k in cfg}
        expected = resolve(r["experiment"], preset=preset, train_per_class=r["per_class"], **identity)
        ignore = IGNORED + (("freeze_bn",) if expected.trainable == "all" else ())  # no effect on all-trainable
        if diff := config_diff(cfg, expected.to_dict(), ignore):
            out.append(f"{r['folder'].relative_to(root).as_posix()} (recorded -> the preset's: {', '.join(diff)})")
    return out


def preset_claim(preset: str | None, runs: list[dict], root: Path, claimed: bool) -> tuple[str | None, str]:
    """The report's preset and caveat. A preset the user names (`report --preset`) that did not make every run is
    refused; the one a plan recorded keeps its name, and the caveat says which runs it did not make."""
    if not preset:
        return None, ""
    try:
        outside = outside_preset(preset, runs, root)
    except RotnetError as e:  # a preset file since moved or edited into something unreadable
        if claimed:
            raise
        return preset, f"The runs' preset {preset} cannot be read now ({e}), so it is not checked against them."
    more = f" (and {len(outside) - 1} more)" if len(outside) > 1 else ""
    if outside and claimed:
        raise RotnetError(
            f"--preset {preset} did not make {outside[0]}{more}; leave --preset out, or name the one that did"
        )
    caveat = preset_caveat(preset)
    if outside:
        caveat += (" " if caveat else "") + f"Not every run is preset {preset}'s: {outside[0]}{more}."
    return preset, caveat


def refuse_foreign_outputs(root: Path) -> list[str]:
    """Refuse a folder that holds report files this report did not write (a user's own report.md, say) or that
    changed since it wrote them (notes added to its report.md); return the names the report writes. `reproduce`
    calls it before training, so that it fails now rather than hours in."""
    written = report_marker(root)
    foreign = [n for n in REPORT_FILES if (root / n).exists() and n not in written]
    if foreign:
        raise RotnetError(
            f"{root} already holds {', '.join(foreign[:3])} that rotnet report did not write; "
            "move them away or report into another folder"
        )
    here = [n for n in REPORT_FILES if written.get(n) and (root / n).is_file()]
    changed = [n for n in here if sha256_file(root / n) != written[n]]
    if changed:
        them = "it" if len(changed) == 1 else "them"
        raise RotnetError(
            f"{root} holds {', '.join(changed[:3])} changed since rotnet report wrote {them} (edited by hand?); "
            f"move {them} away or report into another folder"
        )
    return list(REPORT_FILES)


def report_marker(root: Path) -> dict[str, str | None]:
    """What REPORT_MARKER says the report wrote: each name with the sha256 of the file as written, None for one
    whose writing did not end (or a marker of rotnet <= 0.6, a list of names), which any content is taken for."""
    marker = read_json(root / REPORT_MARKER)
    if isinstance(marker, list):
        return dict.fromkeys(marker)
    return {k: v for k, v in marker.items() if isinstance(v, str | None)} if isinstance(marker, dict) else {}


def flat_row(row: dict, seeds: list[int]) -> dict:
    """A row of results.csv (for people: numbers rounded to 4 decimals; results.json keeps full precision): one
    column per seed's accuracy and gain, the interval as two numeric columns, empty where there is no value."""
    drop = ("by_seed", "gain_by_seed", "gain_seeds", "gain_ci95", "gain_by_epoch", "wilson95")
    out = {k: v for k, v in row.items() if k not in drop}
    out |= {f"seed{s}": row["by_seed"].get(s) for s in seeds}
    out |= {f"gain_seed{s}": row.get("gain_by_seed", {}).get(s) for s in seeds}
    out["gain_ci95_low"], out["gain_ci95_high"] = row.get("gain_ci95") or (None, None)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def claim_outputs(root: Path) -> None:
    """Mark the report's files as its own, with no content yet: a report stopped while writing leaves them its own."""
    atomic_write_text(root / REPORT_MARKER, json.dumps(dict.fromkeys(refuse_foreign_outputs(root))) + "\n")


def seal_outputs(root: Path) -> None:
    """Record each report file's sha256 as written, so that a hand's edit since is never overwritten."""
    written = {n: sha256_file(root / n) if (root / n).is_file() else None for n in REPORT_FILES}
    atomic_write_text(root / REPORT_MARKER, json.dumps(written) + "\n")


def write_report(root: Path, preset: str | None = None, *, claimed: bool = False) -> Path:
    """Write report.md, results.json, results.csv and plots/ under root; return the report's path. `preset` labels
    it (default: the one reproduce.json recorded); `claimed`: the user named it, and it must have made every run."""
    root = Path(root)
    if not root.is_dir():
        raise file_in_the_way(root) or RotnetError(f"runs folder not found: {root}")
    everything, nested, outer = own_runs(root, collect(root))
    everything = pool(link_sources(root, everything))  # a row's mean is over seeds of one protocol on one data
    # A folder of another runs root: its runs are that root's. An arch's or experiment's folder holds them above a
    # run's depth, where no report looks (runs_root_holding reads no record of a root's own there); a dataset's
    # folder at a run's depth, placed in the root above by their records.
    if (above := runs_root_holding(root) or (outer[0] if outer and not everything else None)) is not None:
        raise RotnetError(f"{root} is a folder of the runs root {above}; report that: rotnet report {above}")
    if not everything and nested:
        named = ", ".join(str(n) for n in nested)
        raise RotnetError(
            f"{root} holds no runs of its own, only the runs roots {named}; report each: rotnet report {nested[0]}"
        )
    if not everything:
        above = runs_root_above(root)
        if above is not None:
            raise RotnetError(f"{root} is one run's folder; report its runs root: rotnet report {above}")
        if (run := run_holding(root)) is not None:
            raise RotnetError(
                f"{root} is a folder inside the run folder {run}; report its runs root: rotnet report "
                f"{runs_root_above(run) or run}"
            )
        raise RotnetError(f"{root} holds no rotnet runs (ARCH/EXPERIMENT/seedN folders with a {CONFIG})")
    planned = set(planned_runs(root))  # subset runs that reproduce planned (a preset's train_per_class) are rows too
    runs = [
        r
        for r in everything
        if not r["per_class"] or (r["data"], r["arch"], r["experiment"], f"seed{r['seed']}") in planned
    ]
    repro = plan_log(root / "reproduce.json")
    preset, caveat = preset_claim(preset or repro.get("preset"), runs, root, claimed)
    for name in [*OUTPUTS, "plots", REPORT_MARKER]:  # a planted link would carry the report's files elsewhere
        refuse_links(root / name, root)
    claim_outputs(root)
    rows = table_rows(root, runs)
    folder = root / "plots"
    make_folder(folder)
    plots.plot_bars(rows, folder / "seed_vs_rotnet.png")
    has_gains = plots.plot_gains(rows, folder / "pretraining_gain.png")
    plots.plot_gain_by_epoch(rows, folder / "gain_by_epoch.png")
    plots.plot_curves(runs, folder / "curves.png")
    has_confusion = plots.plot_confusions(runs, folder / "confusion.png")
    has_examples = plots.plot_rotation_examples(runs, folder / "rotation_examples.png")

    results = {"preset": preset, "caveat": caveat, "rows": rows, "runs": [run_summary(r) for r in runs]}
    results["nested_roots"] = [str(n.relative_to(root)) for n in nested]
    results["outer_roots"] = [str(o) for o in outer]
    results["deeper"] = deeper_comparisons(rows, runs)
    results["reproduce"], results["compute"] = repro, compute(everything)
    atomic_write_text(root / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    buf = io.StringIO()
    seeds = sorted({s for row in rows for s in row["by_seed"]})
    flat = [flat_row(row, seeds) for row in rows]
    writer = csv.DictWriter(buf, fieldnames=list(flat[0]) if flat else ["experiment"])
    writer.writeheader()
    writer.writerows(flat)
    atomic_write_text(root / "results.csv", buf.getvalue())

    lines = [f"# rotnet results{f' (preset {preset})' if preset else ''}", ""]
    lines += [f"**{caveat}**", ""] if caveat else []
    if nested:
        named = ", ".join(f"{code(n.relative_to(root))} ({code(f'rotnet report {n}')})" for n in nested)
        lines += [f"Runs roots inside this one, each reporting its own runs, are not reported here: {named}.", ""]
    if outer:
        named = ", ".join(f"{code(o)} ({code(f'rotnet report {o}')})" for o in outer)
        lines += [f"Runs of the runs root above this one lie here too (this is its dataset's folder): {named}.", ""]
    lines += commands_line(repro)
    lines += [
        f"Test accuracy (%). {test_set_text(runs)} Ours is the mean over finished seeds of one protocol, with ± std "
        "(n) when there are several; a single seed's, where the test set alone could move it by a point or more, "
        "with its 95% Wilson interval on the test images in brackets. Pretraining gain: from-rotation minus "
        "from-random, same arch, data and seed, averaged over the seeds both finished; in brackets the reference "
        "report's difference between the same rows.",
        "",
        *results_table(rows),
    ]
    lines += seeds_section(rows, seeds)
    lines += hyperparameter_section(runs)
    lines += [
        "",
        "![reference vs rotnet](plots/seed_vs_rotnet.png)",
        "",
        "## Learning curves",
        "",
        "![curves](plots/curves.png)",
        "",
    ]
    if has_gains:  # a row with a gain has a finding, and the other way round
        paired = "Paired by seed: from-rotation minus from-random, same arch, data and seed."
        findings = [f"- {text}" for r in rows if (text := gain_finding(r))]
        lines += ["## Pretraining gain", "", paired, "", *findings, ""]
        lines += ["![pretraining gain](plots/pretraining_gain.png)", ""]
    lrs, steps = transfer_schedule(runs)
    lines += gain_by_epoch_section(rows, lrs, steps, "gain_by_epoch.png")
    lines += deeper_section(rows, runs, results["deeper"])
    if has_confusion:
        lines += [
            "## Confusion matrices (first seed; rows normalized to 1)",
            "",
            "![confusion](plots/confusion.png)",
            "",
        ]
    if has_examples:
        lines += ["## Rotation predictions on test images", "", "![rotations](plots/rotation_examples.png)", ""]
    lines += knn_section(runs, folder / "knn.png")
    lines += probe_section(runs, folder / "probe.png")
    lines += label_efficiency_section([r for r in everything if r not in runs], folder / "label_efficiency.png")
    lines += provenance_lines(everything, repro, results["compute"])
    worded = [f'- {r["arch"]} {r["experiment"]}: "{r["reference_wording"]}"' for r in rows if r["reference_wording"]]
    lines += ["", "## The reference report's wording", "", *worded] if worded else []
    path = root / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    seal_outputs(root)
    return path
