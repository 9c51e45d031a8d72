"""`rotnet verify RUN`: anyone can check every claim of a run's record. The files must be the ones rotnet sealed and
agree with each other; the first epochs are re-trained from the recorded configuration on the same data (fingerprint
checked) and every deterministic field of metrics.jsonl compared; the final weights are re-evaluated and must give
result.json's accuracy and confusion matrix. What was compared goes to RUN/verify.json.

A comparison means what the machines allow: on the CPU identity that made the run (provenance.cpu_identity) and its
thread count, a difference is a failed verification; on another one the last bits of a sum may differ, and one epoch
turns them into points of accuracy, so a difference there is "inconclusive", not a failure. A run trained by N
processes (torchrun) is re-trained by N, as ranks of one job; its sums repeat under no other number.
"""

from __future__ import annotations

import getpass
import itertools
import json
import re
import socket
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import torch

from rotnet import checkpoint as ckpt
from rotnet import files, kernels
from rotnet.checks import refuse_missing_keys, refuse_other_data
from rotnet.config import ADDED, NO_OPTIONS, DataOptions, check_dataset, from_dict, with_defaults
from rotnet.data import is_named, normalization, output_count
from rotnet.datasets import load_for
from rotnet.distributed import init_from_env, is_main_rank, main_value
from rotnet.errors import RotnetError
from rotnet.evaluate import accuracy, confusion, predict, targets_for
from rotnet.layout import (
    CHECKPOINTS,
    CONFIG,
    METRICS,
    RESULT,
    VERIFY,
    WEIGHTS,
    RunId,
    kept_runs,
    not_a_run,
    parse_run_dir,
    refuse_copied_run,
    root_of,
    source_run,
)
from rotnet.lifecycle import RunContext, build_engine, init_model, place, prediction_options, train_epochs
from rotnet.lock import refuse_locked
from rotnet.loop import LoopState
from rotnet.markdown import spans
from rotnet.models import build_model, check_keys
from rotnet.provenance import cpu_identity, git_commit, provenance
from rotnet.record import manifest_vouch, read_run
from rotnet.runtime import cpu_threads, recorded_threads, setup_device, threads_text
from rotnet.seeds import contract_diff, stream_contract
from rotnet.state import restore

# What an epoch's record holds that is a pure function of the configuration, the data and the device kind.
# weights_sha256 (rotnet 0.5 on): the weights each epoch made.
FIELDS = ("epoch", "lr", "train_loss", "train_acc", "test_acc", "knn_acc", "weights_sha256")
VERIFIED, FAILED, INCONCLUSIVE = 0, 1, 3  # exit codes (2 is any error before a comparison)


def source_weights(folder: Path, record: dict) -> tuple[Path, dict]:
    """The rotation weights a transfer run started from, and their tensors: where it recorded them, else the
    rotation run its record names in the runs root it lies in (moved, copied, or named from another working folder),
    else a run `--restart` kept from that one (the rotation run was trained again since); each must have the
    recorded sha256. A record older than `init_source_config`: its sibling rotation run."""
    rid = parse_run_dir(folder) or RunId("?", "?", 0)
    beside = Path(folder).resolve().parent.parent / "rotation" / f"seed{rid.seed}"  # `.` has no parents
    source = source_run(root_of(folder, record["config"]), record) or beside
    candidates = [Path(record.get("init_weights", "")), *(f / WEIGHTS for f in [source, *kept_runs(source)])]
    want = record.get("init_sha256")
    for path in candidates:
        if path.is_file():
            tensors, _ = ckpt.load_tensors(path)
            if ckpt.digest(tensors) == want:
                return path, tensors
    raise RotnetError(
        f"{folder} started from rotation weights (sha256 {str(want)[:12]}...) that are not at "
        f"{' or '.join(str(c) for c in candidates)}; verify needs them"
    )


def epoch_range(epochs: list[int]) -> str:
    """[2, ..., 45] -> "epochs 2-45"; [1, 2, 9, 10] -> "epochs 1-2, 9-10"; [] -> ""."""
    return f"epoch{'s' * (len(epochs) > 1)} {spans(epochs)}" if epochs else ""


def recorded_contract(record: dict) -> dict:
    """The stream contract a run recorded; a record older than stream versions (rotnet <= 0.3) gives its device
    and torch, and its version is taken as the first one (said in verify's output)."""
    if isinstance(record.get("stream"), dict):
        return record["stream"]
    return {"version": 1, "device": str(record.get("device", "cpu")).split(":")[0], "torch": record.get("torch")}


def same_machine(record: dict, device) -> tuple[bool | None, str, str]:
    """Whether this process computes with the same kernels as the one that made the run (None: the record does not
    say), and the two machines as text."""
    if device.type != "cpu":
        made, here = str(record.get("device_name", "?")), provenance(device)["device_name"]
        return made == here, made, here
    here = cpu_identity()
    made = record.get("cpu")
    if not isinstance(made, dict):
        return None, f"{record.get('device_name', '?')} (the record does not name the CPU)", cpu_text(here)
    return made == here, cpu_text(made), cpu_text(here)


def cpu_text(c: dict) -> str:
    env = f", {' '.join(f'{k}={v}' for k, v in c['env'].items())}" if c.get("env") else ""
    return f"{c.get('model')}, {c.get('capability')}, oneDNN {c.get('onednn')}, MKL {c.get('mkl')}{env}"


def re_evaluate(cfg, model_state: dict, engine_norm, test_images, test_labels, classes: int) -> dict:
    """The final weights' test accuracy and confusion matrix, computed again."""
    model = build_model(cfg.arch, classes, cfg.stem)
    check_keys(model_state, model.state_dict(), WEIGHTS)
    model.load_state_dict(model_state)
    model.to(test_images.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    pred = predict(model, test_images, cfg.task, **prediction_options(cfg, engine_norm))
    return {
        "test_acc": accuracy(pred, test_labels, cfg.task),
        "confusion": confusion(pred, targets_for(pred, test_labels, cfg.task), classes),
    }


def verify(
    folder: Path,
    *,
    epochs: int | None = 1,
    from_epoch: int = 1,
    data: DataOptions = NO_OPTIONS,
    device: str = "auto",
    dataset: str | None = None,
    log=print,
) -> int:
    """Check a run's record, re-train `epochs` of it from `from_epoch` (None: every recorded epoch from there),
    re-evaluate its final weights; print each comparison, write verify.json and return VERIFIED (0), FAILED (1) or
    INCONCLUSIVE (3). The final weights count as re-made only when every epoch that made them was re-trained.
    `dataset`: where a folder run's images are now (moved, or on another machine); they must be the same images."""
    folder = Path(folder)
    world = init_from_env(device)  # under torchrun: every rank re-trains its shard, rank 0 speaks and writes
    log = log if world.is_main else lambda *_: None
    if not (folder / CONFIG).is_file():
        raise not_a_run(folder, f"no {CONFIG}")
    refuse_copied_run(folder)  # no evidence written about a folder that is no run
    refuse_locked(folder, "verify")  # nor about a record another process is writing
    rec = read_run(folder)  # read once: every check below reads this
    seen = rec.inspection
    report = {"run": str(folder), "record": seen.status, "problems": list(seen.problems), "comparisons": []}
    if seen.status == "unsealed":
        log(f"{folder}: an unsealed record (made before rotnet 0.4): its files cannot be checked against a manifest")
    elif not seen.record_whole:  # before any field of it is believed (a tampered stream contract is a failed check)
        for p in seen.problems:
            log(f"{folder}: record {seen.status}: {p}")
        return finish(folder, report, FAILED, f"not verified: the record is {seen.status}", log)
    elif not seen.trusted:  # whole but for files no number rests on: a record kept without its weights, as the
        # report's "record only" (docs/results); its epochs are checked, its final weights cannot be
        log(f"{folder}: a sealed record without its {' and '.join(seen.missing)}: its epochs can be re-trained")
    record = rec.config
    if record is None:
        raise not_a_run(folder, f"no readable {CONFIG}")
    refuse_missing_keys(folder, record)
    cfg = from_dict(with_defaults(record["config"]), str(folder / CONFIG))
    kernels.ensure([cfg.kernels])  # a portable run is re-checked with the portable kernels, whoever asks
    predates = sorted(set(ADDED) - set(record["config"]))
    if predates:
        log(
            f"{folder}: the record predates {', '.join(predates)}; read as runs before them: "
            + ", ".join(f"{k}={ADDED[k]!r}" for k in predates)
        )
    worlds = recorded_worlds(record)
    if None not in worlds and len(set(worlds)) == 1 and worlds[0] != world.size:  # its sums cannot repeat here
        raise RotnetError(
            f"{folder} was trained by {worlds[0]} processes (torchrun); its sums repeat only under as many: "
            f"torchrun --nproc_per_node {worlds[0]} -m rotnet verify {folder} (and your other flags)"
            if worlds[0] > 1
            else f"{folder} was trained in one process; verify it without torchrun (here, one of {world.size})"
        )
    dev, _ = setup_device(device)
    recorded, now = recorded_contract(record), stream_contract(dev)
    changed = contract_diff(recorded, now)
    if changed:
        raise RotnetError(
            f"{folder} was made under another random-stream contract ({'; '.join(changed)}); verify it with the "
            f"rotnet ({record.get('rotnet_version', '?')}, commit {record.get('git_commit', '?')}), torch and device "
            "kind its config.json records"
        )
    history = rec.history
    if not history:
        raise RotnetError(f"{folder / METRICS} is {'unreadable' if history is None else 'empty'}")
    if from_epoch > len(history):
        raise RotnetError(
            f"{folder} recorded {len(history)} epoch(s); --from-epoch {from_epoch} has nothing to compare"
        )
    epochs = len(history) - from_epoch + 1 if epochs is None else min(epochs, len(history) - from_epoch + 1)
    last = from_epoch + epochs - 1
    untrained = epoch_range([e for e in range(1, len(history) + 1) if not from_epoch <= e <= last])
    start = None
    if from_epoch > 1:
        path = folder / CHECKPOINTS / ckpt.checkpoint_name(from_epoch - 1, 0)
        if not path.is_file():
            raise RotnetError(
                f"{folder} kept no checkpoint at the end of epoch {from_epoch - 1} ({path.name}); a run keeps one "
                f"with --keep-epoch {from_epoch - 1}"
            )
        problem = manifest_vouch(rec)(path)
        if problem:
            raise RotnetError(f"{path}: {problem}")
        tensors, meta = ckpt.load_tensors(path, checksummed=True)
        bad = ckpt.checkpoint_problem(meta, cfg.epochs)
        if bad:
            raise RotnetError(f"{path}: {bad}")
        start = (tensors, meta, path)
    weights = None
    if cfg.init == "rotation":
        path, tensors = source_weights(folder, record)  # read and hashed once, then used for init
        cfg, weights = replace(cfg, init_path=str(path)), (tensors, {})
    if dataset is not None:
        check_dataset(dataset)  # "" is no folder: resolved, it would name the working folder
    if dataset is not None and is_named(cfg.dataset):
        raise RotnetError(f"{folder} was trained on {cfg.dataset}, not an image folder; point --data-root at its files")
    data = load_for(replace(cfg, dataset=str(Path(dataset).resolve())) if dataset is not None else cfg, data)
    fix = "point --data-root at it" if is_named(cfg.dataset) else "name the folder that holds them with --dataset PATH"
    refuse_other_data(folder, data, record, fix)  # the same images, wherever they are
    threads = recorded_threads(record) if dev.type == "cpu" else None
    on = f" ({threads_text(threads)}, as recorded)" if threads else ""
    which = f"epochs {from_epoch}-{from_epoch + epochs - 1}" if epochs > 1 else f"epoch {from_epoch}"
    kept = f" from the checkpoint of epoch {from_epoch - 1}" if start else ""
    log(f"{folder}: re-training {which} of {cfg.epochs}{kept} on {dev}{on}")
    sys.stdout.flush()  # said before minutes of training

    final = remade = None
    # CPU sums depend on the thread count and the kernels: re-train on the run's thread count, with its kernels
    gpu = kernels.deterministic(True, dev)  # a GPU's bits repeat only with deterministic algorithms
    with cpu_threads(threads), kernels.computing_with(cfg.kernels, dev), gpu:
        classes = output_count(cfg, data)
        model, _ = init_model(cfg, classes, weights)
        context = RunContext(dev, folder, world=world)
        engine = build_engine(cfg, model, context, normalization(cfg, data))
        # source_weights found them by sha256: where they lie now is no part of the run (`config.WHERE`)
        state = restore(start, cfg, engine, now, weights_compared=weights is not None) if start else LoopState()
        placed = place(cfg, data, engine, dev)
        train_epochs(cfg, engine, placed, state, until=last, log=lambda _: None, context=context)
        test_images, test_labels = placed.test_images, placed.test_labels
        result = rec.result
        if result is not None and (folder / WEIGHTS).is_file():
            tensors = ckpt.load_tensors(folder / WEIGHTS)[0]
            final = re_evaluate(cfg, tensors, engine.norm, test_images, test_labels, classes)
            final["weights_sha256"] = ckpt.digest(tensors)
            remade = ckpt.digest(engine.model.state_dict()) if not untrained and from_epoch == 1 else None

    differ, largest = 0, {}  # field -> the largest |re-run - recorded| seen

    def compare(what: str, key: str, a, b) -> None:
        nonlocal differ
        ok = a == b
        differ += not ok
        gap = b - a if not ok and all(isinstance(v, int | float) for v in (a, b)) else None
        entry = {"what": what, "field": key, "recorded": a, "re_run": b, "match": ok}
        report["comparisons"].append(entry | ({"difference": gap} if gap is not None else {}))
        if gap is not None:
            largest[key] = max(largest.get(key, 0.0), abs(gap))
        shown = (a, b) if key != "confusion" else ("(matrix)", "(matrix)")
        shown = tuple(v[:12] + "..." if isinstance(v, str) and len(v) == 64 else v for v in shown)  # a sha256
        size = f" by {gap:+.4g}" if gap is not None else ""
        log(f"{what} {key}: recorded {shown[0]!r}, re-run {shown[1]!r}, {'match' if ok else 'MISMATCH' + size}")

    window = slice(from_epoch - 1, from_epoch - 1 + epochs)
    for old_row, new_row in zip(history[window], state.history[window], strict=False):
        for key in FIELDS:
            if key in old_row:  # only what the run recorded
                compare(f"epoch {old_row['epoch']}", key, old_row[key], new_row.get(key))
    lacks = " and ".join(n for n in (RESULT, WEIGHTS) if not (folder / n).is_file()) or f"a readable {RESULT}"
    if final is not None:
        compare("final weights", "test_acc", result.get("test_acc"), final["test_acc"])
        compare("final weights", "confusion", result.get("confusion"), final["confusion"])
        if "weights_sha256" in history[-1]:  # the file holds what the last epoch made
            compare("final weights", "weights_sha256", history[-1]["weights_sha256"], final["weights_sha256"])
        if remade is not None:  # every epoch re-trained: the weights they make again are the file's
            compare("final weights", "re-made weights_sha256", final["weights_sha256"], remade)
    else:
        log(f"{folder}: no {lacks} to re-evaluate: the final result was not checked")
    same, made, here = same_machine(record, dev)
    report |= {
        "epochs": epochs,
        "from_epoch": from_epoch,
        "re_trained": [from_epoch, last],
        "not_re_trained": untrained or None,
        "final_checked": final is not None,
        "final_re_made": final is not None and remade is not None,
        "threads": threads,
        "made_on": made,
        "re_run_on": here,
        "same_machine": same,
        "stream": now,
        "rotnet_commit": git_commit(),
        "device": str(dev),
        "world_size": world.size,
    }
    which = f"epochs {from_epoch}-{last}" if last > from_epoch else f"epoch {from_epoch}"
    what = f"{which} re-trained" + (" from a checkpoint" if start else "")
    if final is not None:
        what += (
            " and the final weights they make"
            if remade is not None
            else f", the final weights' accuracy{' and sha256' if 'weights_sha256' in history[-1] else ''}"
        )
    what += " identical"
    if untrained:
        what += f"; {untrained} not re-trained (--all re-trains every epoch)"
        what += ", so the final weights were not re-made" if final is not None else ""
    if final is None:
        what += f"; the final result not checked (no {lacks} here)"
    if not differ:
        on = f"; re-trained on {threads_text(threads)}, as recorded" if threads else ""
        return finish(folder, report, VERIFIED, f"verified: {what} (re-run on {here}{on})", log)
    if strict(record, dev, same, cfg.kernels, world.size):
        where = f"on the same machine ({here})" if same else f"with portable kernels (made on {made}, re-run on {here})"
        return finish(folder, report, FAILED, f"not verified: {differ} field(s) differ {where}", log)
    sizes = ", ".join(f"{k} by {v:.4g}" for k, v in largest.items())
    differ_text = f"inconclusive: {differ} field(s) differ{f' (at most: {sizes})' if sizes else ''}"
    if caveat := world_caveat(worlds, world.size):
        why = f", but {caveat}. To settle it: train it again under one number of processes"
    elif same and dev.type == "cuda":
        why = (
            f", but the run was made on {made} without deterministic algorithms (--nondeterministic, or a rotnet "
            "before 0.5), whose bits do not repeat. To settle it: train it again without --nondeterministic"
        )
    else:
        why = (
            f", but the run was made on {made} and re-run on {here}, whose kernels may round differently. To settle "
            "it: run verify on the machine that made the run, or train it with --kernels portable, whose runs "
            "verify on any x86-64 CPU"
        )
    return finish(folder, report, INCONCLUSIVE, differ_text + why, log)


def recorded_worlds(record: dict) -> list[int | None]:
    """How many processes (torchrun's ranks) trained each start of a run, the first start first. A record whose
    resumes name none (made before each start recorded its own) kept only its last start's, at its top level: the
    earlier ones are None, unknown. A record without any predates torchrun support: one process."""
    resumes = record.get("resumes") if isinstance(record.get("resumes"), list) else []
    said = [record.get("world_size", 1), *(r.get("world_size") if isinstance(r, dict) else None for r in resumes)]
    count = [w if isinstance(w, int) and not isinstance(w, bool) and w > 0 else None for w in said]
    if None not in count[1:]:  # every resume names its own: the top level is the first start's
        return count
    return [None] * len(resumes) + count[:1]  # the top level is the last start's


def world_caveat(worlds: list[int | None], size: int) -> str:
    """Why differences cannot fail a verification for want of the run's number of processes ('' when every start
    had `size`, this re-run's): the sums of a step depend on how the batch was sharded."""
    if all(w == size for w in worlds):
        return ""
    if None in worlds:
        return (
            f"the record does not say how many processes trained {sum(w is None for w in worlds)} of its "
            f"{len(worlds)} starts (it was made when a record kept the last start's only): a step's sums rest on it"
        )
    counts = ", ".join(str(w) for w in worlds)
    return f"its starts were trained by {counts} processes (torchrun), this re-run by {size}: a step's sums rest on it"


def strict(record: dict, device, same: bool | None, kernels: str, world_size: int = 1) -> bool:
    """Whether a difference fails a verification rather than leaving it inconclusive: when every start of the run had
    this re-run's number of processes (`world_size`), and, on a CPU, when it is the CPU that made the run (and its
    thread count) or the run used portable kernels; on a GPU, when it is the same GPU model and every start of the
    run computed with deterministic algorithms (config.json's `deterministic`)."""
    if world_caveat(recorded_worlds(record), world_size):
        return False
    if device.type != "cuda":
        return bool(same) or kernels == "portable"
    resumes = record.get("resumes")
    starts = [record, *(resumes if isinstance(resumes, list) else [])]
    return bool(same) and all(isinstance(s, dict) and s.get("deterministic") is True for s in starts)


def finish(folder: Path, report: dict, code: int, verdict: str, log) -> int:
    """Print the verdict and keep what was compared, with who verified where and when, in a new file: RUN/verify.json,
    or verify-2.json, verify-3.json, ... beside the earlier ones, which are never replaced (a read-only folder only
    gets the line; under torchrun only rank 0 speaks and writes, and every rank returns its code)."""
    code = main_value(code)
    report |= {"verdict": verdict.split(":")[0], "summary": verdict, "exit_code": code}
    report |= {"when": datetime.now(UTC).isoformat(timespec="seconds"), "who": user(), "host": host()}
    log(f"{folder}: {verdict}")
    if not is_main_rank():
        return code
    text = (json.dumps(report, indent=2, default=str) + "\n").encode()
    try:
        for n in itertools.count(1):
            name = VERIFY if n == 1 else f"{Path(VERIFY).stem}-{n}.json"
            try:
                files.atomic_write(folder / name, text, replace=False)
            except FileExistsError:
                continue
            log(f"{folder}: wrote {name}" + (f", beside the {n - 1} earlier verification(s), kept" if n > 1 else ""))
            break
    except RotnetError as e:
        log(f"rotnet: warning: {e}")
    return code


def verifications(folder: Path) -> list[Path]:
    """A run's verification files, oldest first: verify.json, verify-2.json, ..."""
    found = [
        p for p in Path(folder).glob("verify*.json") if p.name == VERIFY or re.fullmatch(r"verify-\d+\.json", p.name)
    ]
    return sorted(found, key=lambda p: int(p.stem.partition("-")[2] or 1))


def user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in a container's passwd
        return "unknown"


def host() -> str:
    return socket.gethostname() or "unknown"
