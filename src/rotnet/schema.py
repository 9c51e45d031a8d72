"""What each record file must hold to be one rotnet wrote: metrics lines, result.json's fields, config.json's
configuration, the confusion matrix (a record that passes is one every reader can use)."""

from __future__ import annotations

import json
import re

from rotnet.config import RunConfig, from_dict, with_defaults
from rotnet.errors import RotnetError
from rotnet.layout import (
    CONFIG,
    RESULT,
    finite,
)

# A run's fields for the report and its checks; each must be a finite number where present.
NUMBERS = ("epoch", "lr", "train_loss", "train_acc", "test_acc", "knn_acc", "images_per_s", "seconds")


def is_sha256(x) -> bool:
    return isinstance(x, str) and re.fullmatch(r"[0-9a-f]{64}", x) is not None


def parse_metrics(data: bytes | None) -> list[dict] | None:
    """Epoch records; [] for no file, None when a line is not an epoch record (epochs 1, 2, ... in order, finite
    numbers, a weights digest that is a sha256 where present)."""
    if data is None:
        return []
    out = []
    try:
        lines = data.decode().splitlines()
    except UnicodeDecodeError:
        return None
    for i, line in enumerate(lines):
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # a torn last line (a crash mid-write of rotnet <= 0.1): the epochs before it
                break
            return None
        if not isinstance(r, dict) or r.get("epoch") != i + 1 or not all(finite(r[k]) for k in NUMBERS if k in r):
            return None
        if "weights_sha256" in r and not is_sha256(r["weights_sha256"]):
            return None
        out.append(r)
    return out


def is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def is_text(x) -> bool:
    return isinstance(x, str)


# result.json's fields that readers use (report, plots, export, API), each with what it must be where present: a
# record that passes these is one every reader can use without a traceback.
RESULT_FIELDS = {
    "test_acc": (finite, "a number"),
    "epochs": (lambda x: is_count(x) and x > 0, "a positive whole number"),
    "seed": (is_count, "a whole number"),
    "arch": (is_text, "text"),
    "experiment": (is_text, "text"),
    "task": (lambda x: x in ("rotation", "classification"), "rotation or classification"),
    "dataset": (is_text, "text"),
    "pretrain_dataset": (is_text, "text"),
    "train_seconds": (lambda x: finite(x) and x >= 0, "a number of seconds"),
    "last_invocation_seconds": (lambda x: finite(x) and x >= 0, "a number of seconds"),
    "images_per_s": (lambda x: finite(x) and x >= 0, "a number"),
    "test_images": (is_count, "a count"),
    "train_images": (is_count, "a count"),
    "world_size": (lambda x: is_count(x) and x > 0, "a positive whole number"),
    "ranks_agree": (lambda x: isinstance(x, bool), "true or false"),
    "class_names": (lambda x: isinstance(x, list) and all(map(is_text, x)), "a list of names"),
    "train_images_per_class": (lambda x: isinstance(x, dict) and all(map(is_count, x.values())), "counts by class"),
}


def result_problems(result: dict, cfg) -> list[str]:
    """Where result.json is not what rotnet writes (RESULT_FIELDS), or names another task than its configuration."""
    out = [
        f"inconsistent: {RESULT}'s {key} is {result[key]!r}, not {what}"
        for key, (ok, what) in RESULT_FIELDS.items()
        if key in result and not ok(result[key])
    ]
    if "test_acc" not in result:
        out.append(f"inconsistent: {RESULT} has no test_acc")
    if isinstance(cfg, dict) and "task" in result and result["task"] != cfg.get("task", result["task"]):
        out.append(f"inconsistent: {RESULT} says task {result['task']!r}, {CONFIG} {cfg.get('task')!r}")
    return out


def config_problems(cfg: dict) -> list[str]:
    """Where config.json's configuration is not one rotnet could have run (a value of the wrong kind or out of range;
    a key a record predates is read as before it, and a missing key is a resume's concern, not a reader's)."""
    try:
        from_dict(RunConfig().to_dict() | with_defaults(cfg), CONFIG)
    except RotnetError as e:
        return [f"inconsistent: {e}"]
    return []


def is_counts(row) -> bool:
    return isinstance(row, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in row)


def confusion_problems(result: dict) -> list[str]:
    """Where result.json's confusion matrix disagrees with itself: not a square matrix of counts, one row per class
    name, whose diagonal gives its test accuracy."""
    m, names = result.get("confusion"), result.get("class_names")
    if m is None:
        return []
    if not isinstance(m, list) or not m or not all(is_counts(row) and len(row) == len(m) for row in m):
        return [f"inconsistent: {RESULT}'s confusion is not a square matrix of counts"]
    if not isinstance(names, list) or len(names) != len(m) or not all(isinstance(n, str) for n in names):
        return [f"inconsistent: {RESULT} has {len(m)} confusion rows but class_names {names!r}"]
    total = sum(map(sum, m))
    acc = 100 * sum(m[i][i] for i in range(len(m))) / max(total, 1)
    if not finite(result.get("test_acc")) or abs(acc - result["test_acc"]) > 1e-6:
        return [f"inconsistent: {RESULT}'s confusion gives test_acc {acc!r}, it says {result.get('test_acc')!r}"]
    return []
