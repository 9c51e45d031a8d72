"""Parallel runs of a plan: each a `rotnet job` process started from a job file the parent wrote, sharing the cores
or one GPU each, its log relayed, stopped with the parent."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path

from rotnet.checks import Source, resume_threads
from rotnet.config import DataOptions, RunConfig, from_dict
from rotnet.datasets import load_for
from rotnet.errors import RotnetError
from rotnet.files import atomic_write, open_append, open_dir, open_regular
from rotnet.layout import RESULT, has_checkpoint, read_json, run_dir, run_id
from rotnet.lifecycle import RunOptions
from rotnet.lock import IN_USE, is_locked
from rotnet.plan import Eta, PlanOptions, mark_failed, provenance_command
from rotnet.run import run
from rotnet.runtime import setup_device, threads_text
from rotnet.signals import StopFlag, stop_handlers


def die_with_parent() -> None:
    """In a child, before exec: its own session (so a terminal's Ctrl-C reaches only the parent, which forwards
    it) and, on Linux, SIGTERM when the parent dies, even by SIGKILL: no orphan trains on."""
    os.setsid()
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def write_job(path: Path, cfg: RunConfig, source, options: PlanOptions, device: str) -> None:
    """The job file a child `rotnet job` runs: the exact configuration and source, not a re-resolution."""
    job = {
        "config": cfg.to_dict(),
        "source": None if source is None else {"expected": source.expected.to_dict(), "command": source.command},
        "runs_root": str(options.runs_root),
        "device": device,
        "data": options.data.to_dict(),
        "command": options.command or provenance_command(),
        "run_options": asdict(options.run_options),
    }
    atomic_write(path, (json.dumps(job, indent=2) + "\n").encode(), base=options.runs_root)


def job_options(job: dict) -> PlanOptions:
    """The options a job file carries: write_job's inverse."""
    data = DataOptions.from_dict(job.get("data", {}))
    run_options = RunOptions.from_dict(job.get("run_options", {}))
    return PlanOptions(Path(job["runs_root"]), data=data, run_options=run_options, command=job.get("command", ""))


def run_parallel(
    configs: list[RunConfig], sources: list, options: PlanOptions, stop: StopFlag, outcome: dict, costs: list[int]
) -> None:
    """Run up to options.jobs runs at once, each a `rotnet job` process, a transfer run only after its rotation run
    finished. GPUs: one job per device (CUDA_VISIBLE_DEVICES); CPU: the jobs share the cores (OMP_NUM_THREADS =
    cores / jobs), except that a partial run resumes on the thread count it started with and takes as many jobs'
    share of the cores (a 2-thread run beside a 1-thread one would oversubscribe 2 cores). A stop request is
    forwarded to every child; they save and exit. Logs go to ROOT/logs/; each child's epoch lines are also shown
    here, named by run."""
    import torch

    root = Path(options.runs_root)
    os.close(open_dir(root / "logs", root, create=True))  # a link planted at logs/ is refused before any job starts
    gpus = torch.cuda.device_count() if options.device != "cpu" and torch.cuda.is_available() else 0
    slots = list(range(min(options.jobs, gpus))) if gpus else list(range(options.jobs))
    capacity = len(slots)
    threads = max(1, (os.cpu_count() or 1) // options.jobs)
    pending = list(zip(configs, sources, strict=True))
    pinned = (
        {} if gpus or options.run_options.restart else {run_id(c): resume_threads(run_dir(root, c)) for c in configs}
    )
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
                tail = Tail(log, root)
                with open_append(log, root) as out:
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
                result = run_dir(root, cfg) / RESULT
                finished = read_json(result) if code == 0 and result.is_file() else None
                seconds = (finished or {}).get("train_seconds")  # its epochs' across resumes: its whole cost's
                eta.done(index[run_id(cfg)], time.monotonic() - began.pop(future), seconds)
                if finished is not None:
                    outcome[name] = f"done: {finished.get('test_acc'):.2f}%"
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

    def __init__(self, path: Path, base: Path):
        self.path, self.base, self.partial = path, base, b""
        self.offset = path.stat(follow_symlinks=False).st_size if path.exists() else 0

    def lines(self) -> list[str]:
        try:
            with open_regular(self.path, base=self.base) as f:
                f.seek(self.offset)
                data = f.read()
        except (OSError, RotnetError):
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
    context = options.context(*setup_device(job["device"]), StopFlag())
    with stop_handlers(context.stop):  # the parent forwards its stop signals; they may come while the data loads
        data = load_for(cfg, options.data)
        run(cfg, data, context, source)
    return 0
