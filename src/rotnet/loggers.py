"""Where a run's numbers go besides metrics.jsonl (always written): TensorBoard, a CSV file, Weights & Biases.

Each is opened only when asked for with `--logger`, and imported then: none is needed to train.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rotnet.checkpoint import atomic_write_text
from rotnet.config import RunConfig
from rotnet.errors import RotnetError
from rotnet.files import refuse_links

LOGGERS = ("tensorboard", "csv", "wandb")
EVERY = 20  # steps between progress points
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "the wandb package")}


def require_logger(name: str) -> None:
    """Refuse a logger that is unknown or whose package is not installed, without importing it (wandb is slow)."""
    import importlib.util

    if name not in LOGGERS:
        raise RotnetError(f"unknown logger {name!r}; choose from {', '.join(LOGGERS)}")
    if name in PACKAGES and importlib.util.find_spec(PACKAGES[name][0]) is None:
        raise RotnetError(f"--logger {name} needs {PACKAGES[name][1]}: pip install 'rotnet[{name}]'")


class Loggers:
    """The loggers a run writes to: `epoch(history)` at each epoch end, `progress(step, scalars)` every EVERY steps,
    `finish(result)` once, with the final metrics beside the hyperparameters."""

    def __init__(self, names: tuple[str, ...], folder: Path, cfg: RunConfig, resumed: bool):
        self.cfg, self.folder, self.tb, self.csv_path, self.wandb = cfg, Path(folder), None, None, None
        for name in ("tensorboard", "metrics.csv"):
            refuse_links(self.folder / name, self.folder.parent)
        for name in names:
            if name == "tensorboard":
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    raise RotnetError(
                        "--logger tensorboard needs tensorboard: pip install 'rotnet[tensorboard]'"
                    ) from None
                self.tb = SummaryWriter(log_dir=str(self.folder / "tensorboard"))
                self.tb.add_text("config", f"```\n{json.dumps(cfg.to_dict(), indent=2)}\n```")
            elif name == "csv":
                self.csv_path = self.folder / "metrics.csv"
            elif name == "wandb":
                try:
                    import wandb
                except ImportError:
                    raise RotnetError("--logger wandb needs the wandb package: pip install 'rotnet[wandb]'") from None
                run_name = f"{cfg.arch}-{cfg.experiment}-seed{cfg.seed}"
                self.wandb = wandb.init(project="rotnet", name=run_name, config=cfg.to_dict(), dir=str(self.folder),
                                        resume="allow" if resumed else None)  # fmt: skip
            else:
                raise RotnetError(f"unknown logger {name!r}; choose from {', '.join(LOGGERS)}")

    @property
    def active(self) -> bool:
        return any(x is not None for x in (self.tb, self.csv_path, self.wandb))

    def progress(self, step: int, scalars: dict) -> None:
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(f"step/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"step/{k}": v for k, v in scalars.items()} | {"global_step": step})

    def epoch(self, history: list[dict]) -> None:
        """At an epoch end, with the run's epoch records so far (the last is the new one)."""
        record = history[-1]
        scalars = {k: v for k, v in record.items() if isinstance(v, int | float) and k != "epoch"}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(f"epoch/{k}", v, record["epoch"])
            self.tb.flush()
        if self.csv_path is not None:
            # Rewritten whole, like metrics.jsonl: a resume from an earlier checkpoint repeats no row, and a column
            # that first appears later (test accuracy with eval_every > 1) is not dropped.
            columns = dict.fromkeys(k for r in history for k, v in r.items() if isinstance(v, int | float))
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(history)
            atomic_write_text(self.csv_path, out.getvalue())
        if self.wandb is not None:
            self.wandb.log({f"epoch/{k}": v for k, v in scalars.items()} | {"epoch": record["epoch"]})

    def finish(self, result: dict) -> None:
        if self.tb is not None:
            hparams = {k: v for k, v in self.cfg.to_dict().items() if isinstance(v, int | float | str | bool)}
            self.tb.add_hparams(hparams, {"hparam/test_acc": result["test_acc"]}, run_name=".")
            self.tb.close()
        if self.wandb is not None:
            self.wandb.summary["test_acc"] = result["test_acc"]
            self.wandb.finish()


def replay(names: tuple[str, ...], folder: Path, cfg: RunConfig, history: list[dict], result: dict) -> list[str]:
    """Write a finished run's TensorBoard and CSV logs from its epoch records (no step-level points: metrics.jsonl
    has none), for the loggers whose output it lacks; returns what was written. W&B is skipped: it takes a run
    while it trains (a finished run in a plan is reused, not failed, for asking)."""
    names = tuple(n for n in names if n != "wandb")
    have = {"tensorboard": (Path(folder) / "tensorboard").exists(), "csv": (Path(folder) / "metrics.csv").exists()}
    todo = tuple(n for n in names if not have.get(n, False))
    if todo and history:
        sinks = Loggers(todo, folder, cfg, resumed=False)
        for i in range(len(history)):
            sinks.epoch(history[: i + 1])
        sinks.finish(result)
    return list(todo)
