"""`rotnet reproduce` and `rotnet label-efficiency`: a plan of runs executed in dependency order (reusing finished
runs, resuming partial ones), one after another or as parallel `rotnet` processes, then the report."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rotnet import kernels
from rotnet.checkpoint import atomic_write_text
from rotnet.checks import Source, check_run, resume_threads
from rotnet.config import DataOptions, RunConfig, from_dict
from rotnet.datasets import load_dataset, load_for
from rotnet.errors import Diverged, Interrupted, InUse, RotnetError
from rotnet.experiments import Protocol, rotation_source
from rotnet.layout import CONFIG, FAILED, RESULT, RunId, has_checkpoint, is_locked, read_json, run_dir, run_id
from rotnet.lifecycle import RunContext, Saving
from rotnet.loop import duration
from rotnet.provenance import provenance
from rotnet.run import run
from rotnet.runtime import setup_device, threads_text
from rotnet.signals import StopFlag, stop_handlers


@dataclass(frozen=True)
class Options:
    """How to execute a plan (what to run is the list of configurations)."""

    runs_root: Path
    protocol: Protocol = Protocol()
    device: str = "auto"
    data: DataOptions = DataOptions()
    saving: Saving = Saving()
    command: str = ""  # the user's command line, recorded in every run ("" = this process's argv)
    jobs: int = 0  # runs at once; 0: auto_jobs
    log_name: str = "reproduce.json"  # the invocation's record under runs_root
    extra: dict = field(default_factory=dict)  # recorded beside it (archs, seeds, sizes)

    def __post_init__(self):  # the API and the command line alike
        if not isinstance(self.jobs, int) or isinstance(self.jobs, bool) or self.jobs < 0:
            raise RotnetError(f"--jobs (jobs) must be zero (auto) or a positive number; got {self.jobs!r}")

    def context(self, device, world, stop: StopFlag) -> RunContext:
        """How each run of the plan runs: these options on the device chosen."""
        return RunContext(device, self.runs_root, self.saving, self.command, stop, world)


def source_for(cfg: RunConfig, options: Options):
    """The checked origin of a from-rotation run's weights (None for other runs)."""
    if cfg.init != "rotation" or cfg.init_path:
        return None
    expected = rotation_source(cfg, options.protocol)
    flags = ["--arch", cfg.arch, "--seed", str(cfg.seed), *options.protocol.flags()]
    command = " ".join(["rotnet train rotation", *flags])
    return Source(expected, command)


def forget_data() -> None:
    """Each command reads its data afresh: the datasets a plan loads are kept for that plan only, so that a second
    call in one Python process sees files changed in between (images moved between class folders, say)."""
    load_dataset.cache_clear()


def train_one(cfg: RunConfig, options: Options) -> dict:
    """One run, as `rotnet train` and `rotnet.train` do it: the config and the weights checked before the data
    loads, then the run, where the first Ctrl-C saves a checkpoint and stops. Returns its result.json."""
    kernels.ensure([cfg.kernels])  # before anything is written: a portable run may restart the command
    forget_data()
    source = source_for(cfg, options)
    rt = options.context(*setup_device(options.device), StopFlag())
    weights = check_run(cfg, rt, source).weights  # before the data loads: these checks need none
    data = load_for(cfg, options.data)
    with stop_handlers(rt.stop):
        result = run(cfg, data, rt, source, weights=weights)
    if rt.stop.requested:  # it came after the last step: the run is whole, but the caller asked to stop
        raise Interrupted(
            f"stopped after the last step; {run_dir(options.runs_root, cfg)} finished", rt.stop.signum, saved=False
        )
    return result


def execute(configs: list[RunConfig], options: Options) -> int:
    """Run configs in order under options.runs_root, log the invocation, and write the report, also when
    interrupted. Returns the number of runs that failed or did not run; raises Interrupted on SIGINT/SIGTERM."""
    if options.jobs > 1 and ":" in options.device:
        raise RotnetError(
            f"--device {options.device} names one GPU, but --jobs {options.jobs} gives each job its own; "
            "choose the GPUs with CUDA_VISIBLE_DEVICES instead"
        )
    kernels.ensure([c.kernels for c in configs])
    forget_data()
    device, world = setup_device(options.device)
    rt = options.context(device, world, StopFlag())
    sources = [source_for(c, options) for c in configs]
    check_plan(configs, sources, options, rt)
    with stop_handlers(rt.stop):
        return run_plan(configs, sources, options, rt)


def run_plan(configs: list[RunConfig], sources: list, options: Options, rt: RunContext) -> int:
    """execute's part after the checks: the invocation's record, the runs, the report."""
    from rotnet.report import summary, write_report  # matplotlib: only where a report is written

    root, device, world = options.runs_root, rt.device, rt.world
    say = print if world.is_main else (lambda *_, **__: None)
    started = time.time()
    record = {
        **provenance(device, options.command),
        "preset": options.protocol.preset,
        **options.extra,
        "runs": [str(run_id(c).relative) for c in configs],
        "started": started,
        "earlier": earlier_invocations(root / options.log_name),
    }
    if world.is_main:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RotnetError(f"cannot create {root} ({e.strerror or e})") from None
        atomic_write_text(root / options.log_name, json.dumps(record, indent=2) + "\n")
    outcome: dict[str, str] = {}  # run folder -> done / failed: why / not run
    costs = [cfg.epochs * train_size(cfg, load_for(cfg, options.data)) for cfg in configs]
    todo = [i for i, cfg in enumerate(configs) if not (run_dir(root, cfg) / RESULT).is_file()]
    jobs = options.jobs or auto_jobs(device, [(configs[i], sources[i]) for i in todo], [costs[i] for i in todo])
    try:
        if jobs > 1 and world.size == 1:
            run_parallel(configs, sources, replace(options, jobs=jobs), rt.stop, outcome, costs)
        else:
            run_in_turn(configs, sources, options, rt, costs, outcome)
    finally:
        if world.is_main:
            for cfg in configs:
                outcome.setdefault(str(run_id(cfg).relative), "not run")
            record |= {"finished": time.time(), "wall_seconds": time.time() - started, "outcome": outcome}
            atomic_write_text(root / options.log_name, json.dumps(record, indent=2) + "\n")
            missing = [k for k, v in outcome.items() if not v.startswith("done")]
            for k in missing:
                say(f"   {k}: {outcome[k]}")
            if any(root.glob(f"**/seed*/{CONFIG}")):
                path = write_report(root, preset=options.protocol.preset)
                print(f"\n{summary(root)}\n\nreport: {path}\nplots: {root / 'plots'}; runs: {root}/...")
            else:  # stopped (or failed) before any run began: nothing to report, and the stop's exit status stands
                say("no run has started: no report")
    if rt.stop.requested:
        left = f"{len(missing)} of {len(configs)} runs not finished" if missing else "every run had finished"
        saved = any(has_checkpoint(run_dir(root, cfg)) for cfg in configs if str(run_id(cfg).relative) in missing)
        raise Interrupted(f"stopped; {left}", rt.stop.signum, saved=saved)
    return len(missing)


def check_plan(configs: list[RunConfig], sources: list, options: Options, rt: RunContext) -> None:
    """Everything that can fail before the data loads and hours of training: changed configurations, rotation
    weights of another protocol, report files that are not rotnet's, missing data."""
    from rotnet.report import refuse_foreign_outputs  # matplotlib: only where a report is written

    for cfg, source in zip(configs, sources, strict=True):
        ready = source is None or (run_dir(options.runs_root, source.expected) / RESULT).is_file()
        with contextlib.suppress(InUse):  # another process's run: "not run" when its turn comes, like any other
            check_run(cfg, rt, source, with_source=ready)
    refuse_foreign_outputs(options.runs_root)  # the report at the end would
    for cfg in {run_id(c).data: c for c in configs}.values():
        load_for(cfg, options.data)


def run_in_turn(
    configs: list[RunConfig], sources: list, options: Options, rt: RunContext, costs: list[int], outcome: dict
) -> None:
    """Run configs one after another in this process; a transfer run only if its rotation run could run. One failed
    run doesn't stop the others: the report shows it as failed."""
    say = print if rt.world.is_main else (lambda *_, **__: None)
    blocked: dict[RunId, str] = {}  # rotation runs that failed or are another process's: why
    eta = Eta(costs)
    for i, (cfg, source) in enumerate(zip(configs, sources, strict=True)):
        name = str(run_id(cfg).relative)
        if rt.stop.requested:  # it came after the last step of the run before: start no other
            break
        if source and run_id(source.expected) in blocked:
            outcome[name] = f"not run: its rotation run {blocked[run_id(source.expected)]}"
            continue
        epochs = f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}"
        say(f"== [{i + 1}/{len(configs)}] {name} ({epochs}){eta.text(i)}", flush=True)
        try:
            data = load_for(cfg, options.data)
            started = time.monotonic()
            result = run(cfg, data, rt, source)
            eta.done(i, time.monotonic() - started)
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


IN_USE = "is in use by another rotnet process"

# Below this mean training work per run (epochs x images), two processes' start-up and one-thread evaluations cost
# more than they save. Measured with benchmarks/jobs.py: smoke (~2,400 per run) 0.92x, quick on 500 images per class
# (~22,000 per run) 1.19x; the threshold is a round number between them.
PARALLEL_MIN_WORK = 10_000


def auto_jobs(device, runs: list[tuple[RunConfig, object]], work: list[int]) -> int:
    """Runs at once when --jobs is not given, for these (config, source) runs still to train, each `work` epochs x
    images: on a CPU with 2+ cores, two processes on half the cores each if two runs are ever ready together and the
    runs are long enough to repay the start-up; otherwise one, in this process."""
    if device.type != "cpu" or (os.cpu_count() or 1) < 2 or not runs or sum(work) < PARALLEL_MIN_WORK * len(runs):
        return 1
    planned = {run_id(c) for c, _ in runs}
    waiting = sum(1 for _, s in runs if s is not None and run_id(s.expected) in planned)
    return 2 if max(len(runs) - waiting, waiting) >= 2 else 1


def train_size(cfg: RunConfig, data) -> int:
    """The training images of a run (a class-balanced subset's size, or the whole training split)."""
    return cfg.train_per_class * data.num_classes if cfg.train_per_class else len(data.train_images)


class Eta:
    """Time left in a plan, from the seconds per (epoch x training image) of the runs trained so far; runs that were
    reused (finished in under a second) teach it nothing."""

    def __init__(self, costs: list[int]):
        self.costs, self.seconds, self.work, self.finished = costs, 0.0, 0, set()

    def done(self, i: int, seconds: float) -> None:
        self.finished.add(i)
        if seconds > 1.0:
            self.seconds, self.work = self.seconds + seconds, self.work + self.costs[i]

    def plan_text(self, jobs: int) -> str:
        """'; N of M runs done, about T left in the plan' for runs going `jobs` at a time (a run going now counts
        whole: the estimate errs long by the part of it done)."""
        done = f"; {len(self.finished)} of {len(self.costs)} runs done"
        if not self.work:
            return done
        left = sum(c for j, c in enumerate(self.costs) if j not in self.finished)
        return f"{done}, about {duration(left * self.seconds / self.work / jobs)} left in the plan"

    def text(self, i: int) -> str:
        if not self.work:
            return ""
        left = sum(c for j, c in enumerate(self.costs) if j >= i and j not in self.finished)
        return f"; about {duration(left * self.seconds / self.work)} left in the plan"


def provenance_command() -> str:
    import shlex

    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def earlier_invocations(path: Path) -> list[dict]:
    """The invocations before this one on the same runs root, from the record this one replaces: a plan resumed
    over several sessions keeps its whole history (and the report its whole wall time)."""
    old = read_json(path)
    if not isinstance(old, dict):
        return []
    earlier = old.get("earlier") if isinstance(old.get("earlier"), list) else []
    return [*earlier, {k: old.get(k) for k in ("command", "git_commit", "started", "finished", "wall_seconds")}]


def mark_failed(folder: Path, why: str) -> None:
    if folder.is_dir():
        atomic_write_text(folder / FAILED, json.dumps({"error": why}) + "\n")


def die_with_parent() -> None:
    """In a child, before exec: its own session (so a terminal's Ctrl-C reaches only the parent, which forwards
    it) and, on Linux, SIGTERM when the parent dies, even by SIGKILL: no orphan trains on."""
    os.setsid()
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def write_job(path: Path, cfg: RunConfig, source, options: Options, device: str) -> None:
    """The job file a child `rotnet job` runs: the exact configuration and source, not a re-resolution."""
    job = {
        "config": cfg.to_dict(),
        "source": None if source is None else {"expected": source.expected.to_dict(), "command": source.command},
        "runs_root": str(options.runs_root),
        "device": device,
        "data": options.data.to_dict(),
        "command": options.command or provenance_command(),
        "saving": asdict(options.saving),
    }
    atomic_write_text(path, json.dumps(job, indent=2) + "\n")


def job_options(job: dict) -> Options:
    """The options a job file carries: write_job's inverse."""
    data = DataOptions.from_dict(job.get("data", {}))
    saving = Saving.from_dict(job.get("saving", {}))
    return Options(Path(job["runs_root"]), data=data, saving=saving, command=job.get("command", ""))


def run_parallel(
    configs: list[RunConfig], sources: list, options: Options, stop: StopFlag, outcome: dict, costs: list[int]
) -> None:
    """Run up to options.jobs runs at once, each a `rotnet job` process, a transfer run only after its rotation run
    finished. GPUs: one job per device (CUDA_VISIBLE_DEVICES); CPU: the jobs share the cores (OMP_NUM_THREADS =
    cores / jobs), except that a partial run resumes on the thread count it started with and takes as many jobs'
    share of the cores (a 2-thread run beside a 1-thread one would oversubscribe 2 cores). A stop request is
    forwarded to every child; they save and exit. Logs go to ROOT/logs/; each child's epoch lines are also shown
    here, named by run."""
    import torch

    root = Path(options.runs_root)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    gpus = torch.cuda.device_count() if options.device != "cpu" and torch.cuda.is_available() else 0
    slots = list(range(min(options.jobs, gpus))) if gpus else list(range(options.jobs))
    capacity = len(slots)
    threads = max(1, (os.cpu_count() or 1) // options.jobs)
    pending = list(zip(configs, sources, strict=True))
    pinned = {} if gpus or options.saving.restart else {run_id(c): resume_threads(run_dir(root, c)) for c in configs}
    procs: dict[Future, subprocess.Popen] = {}
    running: dict[Future, tuple[RunConfig, list[int], str, Path, Tail]] = {}
    forwarded = False
    eta, index = Eta(costs), {run_id(c): i for i, c in enumerate(configs)}
    began: dict[Future, float] = {}

    def relay(future: Future) -> None:
        cfg, _, name, _, tail = running[future]
        prefix = f"{cfg.arch} {cfg.experiment} "
        for line in tail.lines():
            if line.startswith(prefix + "epoch "):
                print(f"   {name} {line.removeprefix(prefix)}", flush=True)

    def drop_transfers_of(cfg: RunConfig, why: str) -> None:
        """A rotation run that will not finish here: its transfer runs can never start."""
        for c, s in list(pending):
            if s and run_id(s.expected) == run_id(cfg):
                pending.remove((c, s))
                outcome[str(run_id(c).relative)] = f"not run: its rotation run {why}"

    def ready(source) -> bool:
        unfinished = [c for c, _ in pending] + [c for c, *_ in running.values()]
        return source is None or run_id(source.expected) not in {run_id(c) for c in unfinished}

    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        while pending or running:
            for cfg, source in [(c, s) for c, s in pending if ready(s)]:
                count = pinned.get(run_id(cfg)) or threads
                width = min(capacity, -(-count // threads))
                if len(slots) < width or stop.requested:
                    break
                pending.remove((cfg, source))
                name = str(run_id(cfg).relative)
                holder = is_locked(run_dir(root, cfg))
                if holder:  # another process trains it: not a failure, and not this process's to mark
                    outcome[name] = f"not run: {IN_USE} (pid {holder})"
                    print(f"== {name}: {outcome[name]}", flush=True)
                    drop_transfers_of(cfg, IN_USE)
                    continue
                taken, slots[:width] = slots[:width], []
                env = os.environ | (
                    {"CUDA_VISIBLE_DEVICES": str(taken[0])} if gpus else {"OMP_NUM_THREADS": str(count)}
                )
                log = root / "logs" / (name.replace("/", "_") + ".log")
                job = root / "logs" / (name.replace("/", "_") + ".job.json")
                write_job(job, cfg, source, options, "cuda" if gpus else "cpu")
                tail = Tail(log)
                with open(log, "a") as out:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "rotnet", "job", str(job)],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        preexec_fn=die_with_parent,
                    )
                future = pool.submit(proc.wait)
                procs[future], running[future] = proc, (cfg, taken, name, log, tail)
                began[future] = time.monotonic()
                where = f"cuda:{taken[0]}" if gpus else f"cpu ({threads_text(count)})"
                print(f"== started {name} on {where}; log {log}", flush=True)
            if stop.requested and not forwarded:
                for proc in procs.values():
                    signal_group(proc, stop.signum or signal.SIGINT)
                forwarded = True
                pending.clear()
            done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
            for future in running:
                relay(future)
            for future in done:
                cfg, taken, name, log, _ = running.pop(future)
                procs.pop(future)
                slots.extend(taken)
                code = future.result()
                eta.done(index[run_id(cfg)], time.monotonic() - began.pop(future))
                result = run_dir(root, cfg) / RESULT
                if code == 0 and result.is_file():
                    acc = json.loads(result.read_text()).get("test_acc")
                    outcome[name] = f"done: {acc:.2f}%"
                elif code in (130, 143) or stop.requested:
                    saved = "checkpoint saved" if has_checkpoint(run_dir(root, cfg)) else "before its first checkpoint"
                    outcome[name] = f"not run: stopped ({saved})"
                else:
                    outcome[name] = f"failed: exit code {code}; see {log}"
                    mark_failed(run_dir(root, cfg), outcome[name].removeprefix("failed: "))
                    drop_transfers_of(cfg, "failed")
                plan = eta.plan_text(options.jobs) if pending or running else ""
                print(f"== {name}: {outcome[name]}; log {log}{plan}", flush=True)


class Tail:
    """The complete lines a growing log file gained since the last call (from its size when made)."""

    def __init__(self, path: Path):
        self.path, self.offset, self.partial = path, path.stat().st_size if path.exists() else 0, b""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        *complete, self.partial = (self.partial + data).split(b"\n")
        return [line.decode(errors="replace") for line in complete]


def signal_group(proc: subprocess.Popen, signum: int) -> None:
    """Send signum to a child's whole process group (it leads its own session)."""
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass


def run_job(path: Path) -> int:
    """`rotnet job FILE`: one run of a parallel plan, exactly as the parent resolved it."""

    job = read_json(path)
    if not isinstance(job, dict) or "config" not in job:
        raise RotnetError(f"{path} is not a rotnet job file")
    cfg = from_dict(job["config"], str(path))
    source = job.get("source")
    source = Source(from_dict(source["expected"], str(path)), source["command"]) if source else None
    options = job_options(job)
    rt = options.context(*setup_device(job["device"]), StopFlag())
    with stop_handlers(rt.stop):  # the parent forwards its stop signals; they may come while the data loads
        data = load_for(cfg, options.data)
        run(cfg, data, rt, source)
    return 0
