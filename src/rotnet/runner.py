"""`rotnet reproduce` and `rotnet label-efficiency`: a plan of runs executed in dependency order (reusing finished
runs, resuming partial ones), one after another or as parallel `rotnet` processes, then the report."""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import replace

from rotnet import kernels
from rotnet.checks import (
    Checked,
    Source,
    check_run,
    refuse_other_data,
    refuse_other_pretraining_data,
    refuse_untrainable,
    refuse_writing_into_data,
    rotation_of,
)
from rotnet.config import DATASETS, DataOptions, RunConfig
from rotnet.data import Dataset
from rotnet.datasets import load_dataset, load_for
from rotnet.errors import Diverged, Interrupted, InUse, RotnetError
from rotnet.files import make_folder
from rotnet.jobs import run_parallel
from rotnet.layout import CONFIG, RESULT, RunId, has_checkpoint, has_rotnet_version, read_json, run_dir, run_id
from rotnet.lifecycle import RunContext
from rotnet.lock import IN_USE
from rotnet.plan import Eta, PlanOptions, auto_jobs, log_invocation, mark_failed, train_size
from rotnet.protocol import rotation_source
from rotnet.provenance import provenance
from rotnet.run import run
from rotnet.runtime import setup_device
from rotnet.signals import StopFlag, stop_handlers


def source_for(cfg: RunConfig, options: PlanOptions):
    """The checked origin of a from-rotation run's weights (None for other runs)."""
    if cfg.init != "rotation" or cfg.init_path:
        return None
    expected = rotation_source(cfg, options.protocol)
    flags = ["--arch", cfg.arch, "--seed", str(cfg.seed), *options.protocol.flags()]
    command = " ".join(["rotnet train rotation", *flags])
    return Source(expected, command)


def pretraining_data(cfg: RunConfig, source: Source | None, data: DataOptions) -> Dataset:
    """The data a from-rotation run's rotation weights must have been pretrained on: its rotation run's."""
    return load_for(source.expected if source else rotation_of(cfg), data)


def forget_data() -> None:
    """Each command reads its data afresh: the datasets a plan loads are kept for that plan only, so that a second
    call in one Python process sees files changed in between (images moved between class folders, say)."""
    load_dataset.cache_clear()


def train_one(cfg: RunConfig, options: PlanOptions) -> dict:
    """One run, as `rotnet train` and `rotnet.train` do it: the config and the weights checked before the data
    loads, then the run, where the first Ctrl-C saves a checkpoint and stops. Returns its result.json."""
    kernels.ensure([cfg.kernels])  # before anything is written: a portable run may restart the command
    forget_data()
    source = source_for(cfg, options)
    context = options.context(*setup_device(options.device), StopFlag())
    try:
        weights = check_run(cfg, context, source).weights  # before the data loads: these checks need none
    except RotnetError:
        refuse_unlabeled(cfg, options)
        raise
    refuse_writing_into_data(cfg, options.runs_root)  # before a folder's images are read
    data = load_for(cfg, options.data)
    if weights is not None and cfg.pretrain_dataset:  # its own dataset's: checked in run
        refuse_other_pretraining_data(cfg, pretraining_data(cfg, source, options.data), weights[1])
    with stop_handlers(context.stop):
        result = run(cfg, data, context, source, weights=weights)
    if context.stop.requested:  # it came after the last step: the run is whole, but the caller asked to stop
        raise Interrupted(
            f"stopped after the last step; {run_dir(options.runs_root, cfg)} finished", context.stop.signum, saved=False
        )
    return result


LABELED_DATASETS = tuple(d for d in DATASETS if d != "stl10-unlabeled")


def refuse_unlabeled(cfg: RunConfig, options: PlanOptions) -> None:
    """A classification run on data without class labels (an image folder without class folders, STL-10's unlabeled
    split) or of one class is refused for that before any other refusal: "no rotation weights; make them with ..."
    sent users to train rotation weights for a run that cannot train. The named labeled datasets need no look."""
    if cfg.task != "classification" or cfg.dataset in LABELED_DATASETS:
        return
    with warnings.catch_warnings():  # its data's own warnings come when the run loads it, if it ever does
        warnings.simplefilter("ignore")
        data = load_for(cfg, options.data)
    refuse_untrainable(cfg, data)


def execute(configs: list[RunConfig], options: PlanOptions) -> int:
    """Run configs in order under options.runs_root, log the invocation, and write the report, also when
    interrupted. Returns the number of runs that failed or did not run; raises Interrupted on SIGINT/SIGTERM."""
    refuse_repeats(configs)
    if options.jobs > 1 and ":" in options.device:
        raise RotnetError(
            f"--device {options.device} names one GPU, but --jobs {options.jobs} gives each job its own; "
            "choose the GPUs with CUDA_VISIBLE_DEVICES instead"
        )
    kernels.ensure([c.kernels for c in configs])
    forget_data()
    device, world = setup_device(options.device)
    if options.jobs > 1 and world.size > 1:  # it ran the plan's runs in turn, each shared by the ranks
        raise RotnetError(
            f"--jobs {options.jobs} runs experiments side by side, each in a process of its own; under torchrun "
            f"the {world.size} processes share each run in turn: leave --jobs out"
        )
    context = options.context(device, world, StopFlag())
    sources = [source_for(c, options) for c in configs]
    check_plan(configs, sources, options, context)
    with stop_handlers(context.stop):
        return run_plan(configs, sources, options, context)


def refuse_repeats(configs: list[RunConfig]) -> None:
    """Every plan (reproduce, label-efficiency, the API) names each run once: the same run twice would train it twice
    in turn, or in two jobs at once where one fails on the other's lock while the plan still says done."""
    seen: set[RunId] = set()
    for rid in map(run_id, configs):
        if rid in seen:
            raise RotnetError(
                f"the plan names {rid.relative} twice (a seed, arch, experiment or size given twice?); name each once"
            )
        seen.add(rid)


def run_plan(configs: list[RunConfig], sources: list, options: PlanOptions, context: RunContext) -> int:
    """execute's part after the checks: the invocation's record, the runs, the report."""
    from rotnet.report import summary, write_report  # matplotlib: only where a report is written

    root, device, world = options.runs_root, context.device, context.world
    say = print if world.is_main else (lambda *_, **__: None)
    started = time.time()
    record = {
        **provenance(device, options.command),
        "preset": options.protocol.preset,
        **options.extra,
        "runs": [str(run_id(c).relative) for c in configs],
        "started": started,
    }
    if world.is_main:
        make_folder(root)
        log_invocation(root / options.log_name, record)
    outcome: dict[str, str] = {}  # run folder -> done / failed: why / not run
    costs = [cfg.epochs * train_size(cfg, load_for(cfg, options.data)) for cfg in configs]
    todo = [i for i, cfg in enumerate(configs) if not (run_dir(root, cfg) / RESULT).is_file()]
    jobs = options.jobs or auto_jobs(device, [(configs[i], sources[i]) for i in todo], [costs[i] for i in todo])
    try:
        if jobs > 1 and world.size == 1:
            run_parallel(configs, sources, replace(options, jobs=jobs), context.stop, outcome, costs)
        else:
            run_in_turn(configs, sources, options, context, costs, outcome)
    finally:
        if world.is_main:
            for cfg in configs:
                outcome.setdefault(str(run_id(cfg).relative), "not run")
            record |= {"finished": time.time(), "wall_seconds": time.time() - started, "outcome": outcome}
            log_invocation(root / options.log_name, record)
            missing = [k for k, v in outcome.items() if not v.startswith("done")]
            for k in missing:
                say(f"   {k}: {outcome[k]}")
            if any(root.glob(f"**/seed*/{CONFIG}")):
                path = write_report(root, preset=options.protocol.preset)
                print(f"\n{summary(root)}\n\nreport: {path}\nplots: {root / 'plots'}; runs: {root}/...")
            else:  # stopped (or failed) before any run began: nothing to report, and the stop's exit status stands
                say("no run has started: no report")
    if context.stop.requested:
        left = f"{len(missing)} of {len(configs)} runs not finished" if missing else "every run had finished"
        saved = any(has_checkpoint(run_dir(root, cfg)) for cfg in configs if str(run_id(cfg).relative) in missing)
        raise Interrupted(f"stopped; {left}", context.stop.signum, saved=saved)
    return len(missing)


def check_plan(configs: list[RunConfig], sources: list, options: PlanOptions, context: RunContext) -> None:
    """Everything that can fail before hours of training: changed configurations, rotation weights of another
    protocol, report files that are not rotnet's, missing data, a run there that was trained on other data (it
    failed at its turn, after the runs before it had trained), and data a run cannot train on (a transfer run's would
    otherwise fail only after its rotation run trained)."""
    from rotnet.report import refuse_foreign_outputs  # matplotlib: only where a report is written

    checked = {}
    for cfg, source in zip(configs, sources, strict=True):
        ready = source is None or (run_dir(options.runs_root, source.expected) / RESULT).is_file()
        with contextlib.suppress(InUse):  # another process's run: "not run" when its turn comes, like any other
            checked[cfg] = check_run(cfg, context, source, with_source=ready)
    refuse_foreign_outputs(options.runs_root)  # the report at the end would
    log = options.runs_root / options.log_name
    if log.exists() and not has_rotnet_version(read_json(log)):  # the plan would write its history over it
        raise RotnetError(f"{log} is not a rotnet plan's log; move it away or name another runs root")
    for cfg in configs:  # by the folders' paths, before any is read
        refuse_writing_into_data(cfg, options.runs_root)
    for cfg, source in zip(configs, sources, strict=True):
        data = load_for(cfg, options.data)  # each data identity loaded once, for the plan
        try:
            found = checked.get(cfg, Checked())
            if found.record is not None and found.record.config is not None:  # a run there to go on or reuse
                refuse_other_data(run_dir(options.runs_root, cfg), data, found.record.config)
            if found.weights is not None:  # a rotation run that had finished: pretrained on these files?
                pretraining = pretraining_data(cfg, source, options.data) if cfg.pretrain_dataset else data
                refuse_other_pretraining_data(cfg, pretraining, found.weights[1])
            if not (run_dir(options.runs_root, cfg) / RESULT).is_file():
                refuse_untrainable(cfg, data, context.world.size)
        except RotnetError as e:
            raise RotnetError(f"{run_id(cfg).relative}: {e}") from None


def run_in_turn(
    configs: list[RunConfig], sources: list, options: PlanOptions, context: RunContext, costs: list[int], outcome: dict
) -> None:
    """Run configs one after another in this process; a transfer run only if its rotation run could run. One failed
    run doesn't stop the others: the report shows it as failed."""
    say = print if context.world.is_main else (lambda *_, **__: None)
    blocked: dict[RunId, str] = {}  # rotation runs that failed or are another process's: why
    eta = Eta(costs)
    for i, (cfg, source) in enumerate(zip(configs, sources, strict=True)):
        name = str(run_id(cfg).relative)
        if context.stop.requested:  # it came after the last step of the run before: start no other
            break
        if source and run_id(source.expected) in blocked:
            outcome[name] = f"not run: its rotation run {blocked[run_id(source.expected)]}"
            continue
        epochs = f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}"
        say(f"== [{i + 1}/{len(configs)}] {name} ({epochs}){eta.text(i)}", flush=True)
        try:
            data = load_for(cfg, options.data)
            started = time.monotonic()
            result = run(cfg, data, context, source)
            eta.done(i, time.monotonic() - started, result.get("train_seconds"))
            outcome[name] = f"done: {result['test_acc']:.2f}%"
        except InUse as e:  # another process trains it: not a failure, and not this process's to mark
            outcome[name] = f"not run: {e}"
            say(f"rotnet: {name}: {e}")
            if cfg.experiment == "rotation":
                blocked[run_id(cfg)] = IN_USE
        except (RotnetError, Diverged) as e:
            outcome[name] = f"failed: {e}"
            say(f"rotnet: error: {name}: {e}")
            mark_failed(options.runs_root / name, str(e))
            if cfg.experiment == "rotation":
                blocked[run_id(cfg)] = "failed"
