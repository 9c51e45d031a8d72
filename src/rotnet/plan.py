"""How a plan of runs is executed (`PlanOptions`, checked alike from the command line, the API and a job file), how many
runs go at once, and how long the rest will take."""

from __future__ import annotations

import fcntl
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rotnet.config import DataOptions, RunConfig
from rotnet.data import subset_size
from rotnet.errors import RotnetError
from rotnet.files import atomic_write_text, file_in_the_way
from rotnet.layout import FAILED, merge_logs, read_json, run_id
from rotnet.lifecycle import RunContext, RunOptions
from rotnet.loop import duration
from rotnet.protocol import Protocol
from rotnet.signals import StopFlag


@dataclass(frozen=True)
class PlanOptions:
    """How to execute a plan (what to run is the list of configurations)."""

    runs_root: Path
    protocol: Protocol = Protocol()
    device: str = "auto"
    data: DataOptions = DataOptions()
    run_options: RunOptions = RunOptions()
    command: str = ""  # the user's command line, recorded in every run ("" = this process's argv)
    jobs: int = 0  # runs at once; 0: auto_jobs
    log_name: str = "reproduce.json"  # the invocation's log under runs_root (what was asked, when)
    extra: dict = field(default_factory=dict)  # recorded beside it (archs, seeds, sizes)

    def __post_init__(self):  # the API and the command line alike
        if getattr(self.jobs, "shape", None) == () and hasattr(self.jobs, "item"):  # np.int64(2), as config.coerce
            object.__setattr__(self, "jobs", self.jobs.item())
        if not isinstance(self.jobs, int) or isinstance(self.jobs, bool) or self.jobs < 0:
            raise RotnetError(f"--jobs (jobs) must be zero (auto) or a positive number; got {self.jobs!r}")
        if in_the_way := file_in_the_way(self.runs_root):  # before the data is read: seconds, and its warnings
            raise in_the_way

    def context(self, device, world, stop: StopFlag) -> RunContext:
        """How each run of the plan runs: these options on the device chosen."""
        return RunContext(device, self.runs_root, self.run_options, self.command, stop, world)


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
    return subset_size(data.train_labels, cfg.train_per_class)


class Eta:
    """Time left in a plan, from the seconds per (epoch x training image) of the runs trained so far; runs that were
    reused (finished in under a second) or ended without a result teach it nothing."""

    def __init__(self, costs: list[int]):
        self.costs, self.seconds, self.work, self.finished = costs, 0.0, 0, set()

    def done(self, i: int, here: float, recorded: float | None) -> None:
        """Run i ended after `here` seconds in this plan; `recorded`: the seconds its record says its epochs took,
        across its resumes (result.json's train_seconds; None: no result), the time its whole cost took. A resumed
        run's time here is only its last part's."""
        self.finished.add(i)
        if here > 1.0 and isinstance(recorded, int | float) and recorded >= 0:
            self.seconds, self.work = self.seconds + recorded, self.work + self.costs[i]

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


def log_invocation(path: Path, record: dict) -> None:
    """Write a plan's record into the runs root's log (reproduce.json), merged with the log there now under a lock
    on the runs root: a plan run beside this one on the same root keeps its entry, whichever starts or ends last
    (each wrote the log it read at its start, and the one to end last dropped the other's)."""
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)  # held for a read and a write; released when closed
        atomic_write_text(path, json.dumps(merge_logs(read_json(path), record), indent=2) + "\n")
    finally:
        os.close(folder)


def provenance_command() -> str:
    import shlex

    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def mark_failed(folder: Path, why: str) -> None:
    if folder.is_dir():
        atomic_write_text(folder / FAILED, json.dumps({"error": why}) + "\n")
