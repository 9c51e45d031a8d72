"""`rotnet label-efficiency`: full-from-rotation vs full-from-random on class-balanced subsets (RotNet Fig. 5b).

Subsets are chosen by seed and nested (the 20-per-class subset lies inside the 100 one; `data.balanced_subset`).
Schedule rule for a subset of n images per class (10n images): at least the preset's epochs E for the transfer
experiments, and at least `min_steps` optimizer steps:
    epochs(n) = max(E, ceil(min_steps * batch_size / (10 n)))
the lr step scales with it (lr_step_epochs = round(epochs(n) * S / E) with S the preset's step), and the test set is
evaluated about 10 times per run (eval_every = ceil(epochs(n) / 10)) so that small subsets don't spend their time
evaluating.
"""

from __future__ import annotations

import math
from dataclasses import replace

from rotnet.config import RunConfig, validate

ARMS = ("full-from-rotation", "full-from-random")


def subset_schedule(cfg: RunConfig, per_class: int, min_steps: int) -> RunConfig:
    """cfg (the preset's full-data transfer config) adapted to n labelled images per class by the rule above."""
    epochs = max(cfg.epochs, math.ceil(min_steps * cfg.batch_size / (10 * per_class)))
    step = max(1, round(epochs * cfg.lr_step_epochs / cfg.epochs))
    return validate(
        replace(cfg, train_per_class=per_class, epochs=epochs, lr_step_epochs=step, eval_every=math.ceil(epochs / 10))
    )
