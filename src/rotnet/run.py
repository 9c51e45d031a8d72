"""One run's life: its folder (locked), initialization (checked weights), resume, training, final outputs."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace

import torch

from rotnet import checkpoint as ckpt
from rotnet.checks import (
    Source,
    check_run,
    class_name,
    refuse_broken_source,
    refuse_untrainable,
    refuse_writing_into_data,
    resume_threads,
    warn_short_classes,
    warn_without_knn,
)
from rotnet.config import RunConfig
from rotnet.data import Dataset, class_counts, normalization, subset_size
from rotnet.distributed import barrier, ranks_agree
from rotnet.errors import Diverged, RotnetError
from rotnet.evaluate import confusion, targets_for
from rotnet.files import atomic_write_text, first_missing
from rotnet.health import weights_problem
from rotnet.kernels import computing_with, deterministic
from rotnet.layout import CHECKPOINTS, EXAMPLES, FAILED, RESULT, WEIGHTS, run_dir
from rotnet.lifecycle import RunContext, build_engine, init_model, place, train_epochs
from rotnet.lock import RunLock
from rotnet.loggers import Loggers, replay
from rotnet.loop import Engine, LoopState, plural
from rotnet.manifest import Seal
from rotnet.runtime import cpu_threads, threads_text
from rotnet.seeds import stream_contract
from rotnet.state import (
    keep_aside,
    kept_checkpoint_names,
    make_dir,
    remove_made,
    restore_state,
    save_state,
    weights_meta,
    write_metrics,
    write_record,
)


def run(
    cfg: RunConfig, data: Dataset, context: RunContext, source: Source | None = None, log=print, weights=None
) -> dict:
    """Train one experiment into its run folder (resuming if a checkpoint is there), or reuse it if it finished;
    return its result. `weights`: the source weights an earlier `check_run` of this run returned (not read again)."""
    world = context.world
    log = log if world.is_main else (lambda *_: None)  # one voice, and only rank 0 writes files
    folder = run_dir(context.runs_root, cfg)
    steps = math.ceil(subset_size(data.train_labels, cfg.train_per_class) / cfg.batch_size)
    loggers = context.run_options.loggers
    if (folder / RESULT).is_file() and not context.run_options.restart:
        record = check_run(cfg, context, source, data, weights).record
        result = record.result
        written = replay(loggers, folder, cfg, steps, record.history or [], result) if world.is_main else []
        also = f"; wrote its {' and '.join(written)} logs from metrics.jsonl" if written else ""
        also += "; not sent to W&B, which takes a run while it trains" if "wandb" in loggers else ""
        log(f"{folder}: already finished; reusing it{also}")
        return result
    # Before any folder is made: labels for classification, steps batch norm can train on.
    classes = refuse_untrainable(cfg, data, world.size)
    refuse_writing_into_data(cfg, context.runs_root)
    warn_short_classes(cfg, data)
    warn_without_knn(cfg, data)
    lock, created = None, None
    if world.is_main:
        if context.run_options.restart and folder.exists():
            log(f"{folder}: kept the previous run as {keep_aside(folder).name}")
        created = first_missing(folder)  # what a refusal below removes: the run folder and the parents it needs
        make_dir(folder, context.runs_root)
        lock = RunLock(folder).acquire()
    try:
        barrier()
        try:
            # Again under the lock (another process may have started it), now with the data; after a restart's
            # keep_aside the folder is new, and is checked as such.
            fresh = replace(context, run_options=replace(context.run_options, restart=False))
            checked = check_run(cfg, fresh, source, data, weights, held=True)
            model, init_info = init_model(cfg, classes, checked.weights)
            refuse_broken_source(cfg, model, data, init_info)
            engine = build_engine(cfg, model, context, normalization(cfg, data))
            contract = stream_contract(context.device)
            state = restore_state(folder, cfg, engine, steps, contract, checked.record, checked.weights_compared)
        except (RotnetError, OSError, RuntimeError):
            if created:  # nothing of a run refused before it started is left behind (a report would list it)
                lock.release()
                remove_made(folder, created)
            raise
        resumed, threads = state is not None, None
        if state is None:
            state = LoopState()
        else:
            started = (
                resume_threads(folder, checked.record.config)
                if context.device.type == "cpu" and world.size == 1
                else None
            )
            threads = started if started != torch.get_num_threads() else None
            on = f" on {threads_text(threads)}, as the run started" if threads else ""
            log(f"{folder}: resuming at epoch {state.epoch + 1}, step {state.step}{on}")
        seal = Seal.resume(folder, checked.record)
        # CPU sums depend on the thread count (keep the one the run started with) and on the kernels; a GPU's on
        # its algorithms (deterministic unless asked not to)
        gpu = deterministic(context.run_options.deterministic, context.device)
        with cpu_threads(threads), computing_with(cfg.kernels, context.device), gpu:
            if world.is_main:
                write_record(seal, cfg, data, context, init_info, checked.record.config if resumed else None)
            at = state.epoch * steps + state.step if resumed else None
            sinks = Loggers(loggers, folder, cfg, steps, at) if world.is_main and loggers else None
            return train_and_finish(cfg, data, context, seal, engine, state, log, sinks)
    finally:
        if lock is not None:
            lock.release()


def train_and_finish(
    cfg: RunConfig,
    data: Dataset,
    context: RunContext,
    seal: Seal,
    engine: Engine,
    state: LoopState,
    log,
    sinks: Loggers | None = None,
) -> dict:
    world, folder, stream = context.world, seal.folder, stream_contract(context.device)
    placed = place(cfg, data, engine, context.device)
    images, test_images, test_labels = placed.images, placed.test_images, placed.test_labels

    last = time.monotonic()

    def save(s: LoopState) -> None:
        """A checkpoint mid-epoch (by steps or on a stop), at a kept epoch, or once checkpoint_minutes passed; at
        other epoch ends only metrics.jsonl, so that a long run of short epochs doesn't write one file per epoch. The
        last epoch's is written only when the finished run keeps checkpoints: its weights follow at once, and a run
        killed before its result is written resumes from the checkpoint before (bit-exact, as from any other)."""
        nonlocal last
        if not world.is_main:
            return
        if sinks and not s.step:
            sinks.epoch(s.history)
        stopping = context.stop is not None and context.stop.requested
        kept = not s.step and s.epoch in context.run_options.keep_epochs
        if s.epoch >= cfg.epochs:
            due = stopping or kept or context.run_options.keep_checkpoints > 0
        else:
            due = s.step or stopping or kept or time.monotonic() - last >= context.run_options.checkpoint_minutes * 60
        if due:
            save_state(seal, cfg, engine, s, stream, kept_checkpoint_names(context))
            last = time.monotonic()
        else:
            write_metrics(seal, s)

    if world.is_main:
        steps = math.ceil(len(images) / cfg.batch_size)
        evals = "every epoch" if cfg.eval_every == 1 else f"every {cfg.eval_every} epochs and after the last"
        evals = "after the last epoch" if cfg.eval_every >= cfg.epochs and cfg.eval_every > 1 else evals
        log(
            f"{folder}: {plural(cfg.epochs, 'epoch')} ({cfg.epochs - state.epoch} to go) of {len(images):,} images "
            f"({steps} steps of {cfg.batch_size}), tested on {len(test_images):,} images {evals}"
        )
    started = time.perf_counter()
    history = train_epochs(
        cfg, engine, placed, state, save=save, log=log, progress=sinks.progress if sinks else None, context=context
    )
    model = engine.model
    agree = ranks_agree(model)
    if not agree:
        raise RotnetError("the ranks ended with different weights; this is a bug, please report it")
    problem = weights_problem(model, test_images, engine.norm, cfg.channels_last)
    if problem:  # every rank sees it (their weights agree), so none waits for outputs that never come
        why = f"diverged: the final weights have {problem}"
        if world.is_main:  # never called finished: no weights or result written, failed.json says why
            atomic_write_text(folder / FAILED, json.dumps({"error": why}) + "\n")
        raise Diverged(f"{folder}: {why}")
    if not world.is_main:
        barrier()  # rank 0 writes the final outputs
        return json.loads((folder / RESULT).read_text())

    # Final outputs: weights that load into plain torchvision, and what the report needs without the data.
    classes = list(data.class_names) if cfg.task == "classification" else ["0", "90", "180", "270"]
    meta = weights_meta(cfg, engine.norm, classes, test_images.shape[-1])
    seal.write(WEIGHTS, ckpt.encode(model.state_dict(), meta))
    pred = placed.evaluate.final_predictions(model)
    examples = {"images": data.test_images[:8].clone(), "pred": pred[:8]}
    seal.write(EXAMPLES, ckpt.encode(examples))
    result = {
        "experiment": cfg.experiment,
        "arch": cfg.arch,
        "seed": cfg.seed,
        "task": cfg.task,
        "test_acc": history[-1]["test_acc"],
        "epochs": len(history),
        "train_seconds": sum(r["seconds"] for r in history),  # every epoch's, across resumes (pauses included)
        "last_invocation_seconds": time.perf_counter() - started,  # this process's training and evaluation only
        "images_per_s": sum(r["images_per_s"] for r in history) / len(history),
        "confusion": confusion(pred, targets_for(pred, test_labels, cfg.task), len(classes)),
        "world_size": world.size,
        "ranks_agree": agree,
        "class_names": classes,
        "dataset": cfg.dataset,
        "pretrain_dataset": cfg.pretrain_dataset,
        "test_images": len(data.test_images),
        "train_images": len(images),
    }
    if cfg.train_per_class:  # up to N of each class: what each one had
        result["train_images_per_class"] = {class_name(data, c): n for c, n in class_counts(placed.labels).items()}
    seal.write_text(RESULT, json.dumps(result, indent=2) + "\n")
    (folder / FAILED).unlink(missing_ok=True)  # an earlier attempt's mark; it finished now
    seal.removed(
        ckpt.prune_checkpoints(
            folder / CHECKPOINTS, context.run_options.keep_checkpoints, kept_checkpoint_names(context)
        )
    )
    if sinks:
        sinks.finish(result)
    n = len(history)
    log(f"{folder}: test accuracy {result['test_acc']:.2f}% after {plural(n, 'epoch')}")
    barrier()
    return result
