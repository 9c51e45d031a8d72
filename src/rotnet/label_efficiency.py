"""`rotnet label-efficiency`: full-from-rotation vs full-from-random on class-balanced subsets (RotNet Fig. 5b).

Subsets are chosen by seed and nested (the 20-per-class subset lies inside the 100 one; `data.balanced_subset`).
Schedule rule for a subset of n images per class, M images on its data (10 n on CIFAR-10: n of each class, all of a
smaller class; `data.subset_size`): at least the preset's epochs E for the transfer experiments, and at least
`min_steps` optimizer steps' worth of images:
    epochs(n) = max(E, ceil(min_steps * batch_size / M))
the lr step scales with it (lr_step_epochs = round(epochs(n) * S / E) with S the preset's step), and the test set is
evaluated about 10 times per run (eval_every = ceil(epochs(n) / 10)) so that small subsets don't spend their time
evaluating.
"""

from __future__ import annotations

import math
from dataclasses import replace

from rotnet.config import DataOptions, RunConfig, validate
from rotnet.data import subset_size
from rotnet.datasets import load_for
from rotnet.protocol import Protocol

ARMS = ("full-from-rotation", "full-from-random")


def subset_schedule(cfg: RunConfig, per_class: int, min_steps: int, images: int) -> RunConfig:
    """cfg (the preset's full-data transfer config) adapted to n labelled images per class, `images` in all on its
    data, by the rule above."""
    epochs = max(cfg.epochs, math.ceil(min_steps * cfg.batch_size / images))
    step = max(1, round(epochs * cfg.lr_step_epochs / cfg.epochs))
    return validate(
        replace(cfg, train_per_class=per_class, epochs=epochs, lr_step_epochs=step, eval_every=math.ceil(epochs / 10))
    )


def plan_configs(
    protocol: Protocol, sizes: list[int], seeds: list[int], min_steps: int, data: DataOptions
) -> list[RunConfig]:
    """Every run of a label-efficiency plan: each seed's rotation run, then both arms at each size (smallest first),
    each scheduled on the subset it draws from its own data."""
    configs = []
    for seed in seeds:
        configs.append(protocol.resolve("rotation", seed=seed))
        for n in sorted(sizes):
            for arm in ARMS:
                cfg = protocol.resolve(arm, seed=seed)
                images = subset_size(load_for(cfg, data).train_labels, n)
                configs.append(subset_schedule(cfg, n, min_steps, images))
    return configs
