"""Where a run's numbers go besides metrics.jsonl (always written): TensorBoard, a CSV file, Weights & Biases.

Each is opened only when asked for with `--logger`, and imported then: none is needed to train.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rotnet.config import RunConfig
from rotnet.errors import RotnetError
from rotnet.files import atomic_write_text, refuse_links

# What each logger writes in a run's folder: (name, is it a folder)
WRITES = {"tensorboard": ("tensorboard", True), "csv": ("metrics.csv", False), "wandb": ("wandb", True)}
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "the wandb package")}


def require_logger(name: str) -> None:
    """Refuse a logger that is unknown or whose package is not installed, without importing it (wandb is slow)."""
    import importlib.util

    if name not in LOGGERS:
        raise RotnetError(f"unknown logger {name!r}; choose from {', '.join(LOGGERS)}")
    if name in PACKAGES and importlib.util.find_spec(PACKAGES[name][0]) is None:
        raise RotnetError(f"--logger {name} needs {PACKAGES[name][1]}: pip install 'rotnet[{name}]'")


def scalars_of(record: dict) -> dict:
    return {k: v for k, v in record.items() if isinstance(v, int | float) and k != "epoch"}


class Logger:
    """One place a run's numbers go: `progress(step, scalars)` at the loop's flag reads, `epoch(history)` at each
    epoch end (the run's epoch records so far, the last the new one), `finish(result)` once. `steps`: training steps
    an epoch; `resumed_at`: the step a resumed run trains again from (its checkpoint's), None for a new run."""

    def __init__(self, folder: Path, cfg: RunConfig, steps: int, resumed_at: int | None):
        self.folder, self.cfg, self.steps = folder, cfg, steps

    def progress(self, step: int, scalars: dict) -> None:
        pass

    def epoch(self, history: list[dict]) -> None:
        pass

    def finish(self, result: dict) -> None:
        pass


class TensorBoard(Logger):
    """FOLDER/tensorboard: step and epoch scalars on one axis, the training step (an epoch's at the step it ended,
    with `epoch/epoch`, as Lightning logs them), the configuration as text, hyperparameters with the final test
    accuracy."""

    def __init__(self, folder: Path, cfg: RunConfig, steps: int, resumed_at: int | None):
        super().__init__(folder, cfg, steps, resumed_at)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RotnetError("--logger tensorboard needs tensorboard: pip install 'rotnet[tensorboard]'") from None
        # A resumed run trains again the steps after its checkpoint, which a crash may have logged already: from the
        # purge step on, TensorBoard drops the points of the earlier files, on every tag; hence the one axis.
        purge = None if resumed_at is None else resumed_at + 1
        first = not (folder / "tensorboard").exists()  # a resumed run may be logged for the first time
        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"), purge_step=purge)
        if first:  # at step 0, which no purge reaches: written once
            self.writer.add_text("config", f"```\n{json.dumps(cfg.to_dict(), indent=2)}\n```")

    def progress(self, step: int, scalars: dict) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(f"step/{k}", v, step)

    def epoch(self, history: list[dict]) -> None:
        record = history[-1]
        for k, v in (scalars_of(record) | {"epoch": record["epoch"]}).items():
            self.writer.add_scalar(f"epoch/{k}", v, record["epoch"] * self.steps)
        self.writer.flush()

    def finish(self, result: dict) -> None:
        hparams = {k: v for k, v in self.cfg.to_dict().items() if isinstance(v, int | float | str | bool)}
        self.writer.add_hparams(hparams, {"hparam/test_acc": result["test_acc"]}, run_name=".")
        self.writer.close()


class Csv(Logger):
    """FOLDER/metrics.csv: one row per epoch, every numeric column any epoch has."""

    def epoch(self, history: list[dict]) -> None:
        # Rewritten whole, like metrics.jsonl: a resume from an earlier checkpoint repeats no row, and a column
        # that first appears later (test accuracy with eval_every > 1) is not dropped.
        columns = dict.fromkeys(k for r in history for k, v in r.items() if isinstance(v, int | float))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.folder / "metrics.csv", out.getvalue())


class Wandb(Logger):
    """A Weights & Biases run named ARCH-EXPERIMENT-seedN in the project rotnet, every point at its training step; a
    resumed run goes on in the same W&B run, whose id FOLDER/wandb/rotnet-run-id keeps (W&B's advice: resume="allow"
    with the id; without one each life was a new W&B run)."""

    def __init__(self, folder: Path, cfg: RunConfig, steps: int, resumed_at: int | None):
        super().__init__(folder, cfg, steps, resumed_at)
        try:
            import wandb
        except ImportError:
            raise RotnetError("--logger wandb needs the wandb package: pip install 'rotnet[wandb]'") from None
        kept = folder / "wandb" / "rotnet-run-id"
        known = None
        if resumed_at is not None and kept.is_file():
            known = kept.read_text().strip() or None
        name = f"{cfg.arch}-{cfg.experiment}-seed{cfg.seed}"
        self.run = wandb.init(project="rotnet", name=name, config=cfg.to_dict(), dir=str(folder), id=known,
                              resume="allow" if known else None)  # fmt: skip
        if not known:
            kept.parent.mkdir(exist_ok=True)
            atomic_write_text(kept, f"{self.run.id}\n")

    # W&B keeps the first point logged at a step and drops later ones at an earlier step: a resumed run's repeats of
    # the steps after its checkpoint, which a bit-exact resume makes equal to the ones it drops.
    def progress(self, step: int, scalars: dict) -> None:
        self.run.log({f"step/{k}": v for k, v in scalars.items()}, step=step)

    def epoch(self, history: list[dict]) -> None:
        record = history[-1]
        scalars = {f"epoch/{k}": v for k, v in scalars_of(record).items()} | {"epoch": record["epoch"]}
        self.run.log(scalars, step=record["epoch"] * self.steps)

    def finish(self, result: dict) -> None:
        self.run.summary["test_acc"] = result["test_acc"]
        self.run.finish()


KINDS: dict[str, type[Logger]] = {"tensorboard": TensorBoard, "csv": Csv, "wandb": Wandb}
LOGGERS = tuple(KINDS)


class Loggers:
    """The loggers a run writes to, each called in turn."""

    def __init__(self, names: tuple[str, ...], folder: Path, cfg: RunConfig, steps: int, resumed_at: int | None):
        folder = Path(folder)
        for written, _ in WRITES.values():
            refuse_links(folder / written, folder.parent)
        for name in names:
            require_logger(name)
            written, is_folder = WRITES[name]
            if (folder / written).exists() and (folder / written).is_dir() != is_folder:  # said "File exists"
                kind, other = ("folder", "file") if is_folder else ("file", "folder")
                raise RotnetError(
                    f"{folder / written} is a {other}; move it away: --logger {name} writes its {kind} there"
                )
        self.sinks = [KINDS[name](folder, cfg, steps, resumed_at) for name in names]

    def progress(self, step: int, scalars: dict) -> None:
        for sink in self.sinks:
            sink.progress(step, scalars)

    def epoch(self, history: list[dict]) -> None:
        for sink in self.sinks:
            sink.epoch(history)

    def finish(self, result: dict) -> None:
        for sink in self.sinks:
            sink.finish(result)


def replay(
    names: tuple[str, ...], folder: Path, cfg: RunConfig, steps: int, history: list[dict], result: dict
) -> list[str]:
    """Write a finished run's TensorBoard and CSV logs from its epoch records (no step-level points: metrics.jsonl
    has none), for the loggers whose output it lacks; returns what was written. W&B is skipped: it takes a run
    while it trains (a finished run in a plan is reused, not failed, for asking)."""
    names = tuple(n for n in names if n != "wandb")

    def have(name: str) -> bool:  # a file in the way of the folder (or the other way round) is no log: refused
        written, is_folder = WRITES[name]
        return (Path(folder) / written).is_dir() if is_folder else (Path(folder) / written).is_file()

    todo = tuple(n for n in names if not have(n))
    if todo and history:
        sinks = Loggers(todo, folder, cfg, steps, resumed_at=None)
        for i in range(len(history)):
            sinks.epoch(history[: i + 1])
        sinks.finish(result)
    return list(todo)
