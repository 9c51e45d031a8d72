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
from rotnet.data import class_counts, subset_size
from rotnet.datasets import load_for
from rotnet.errors import RotnetError
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
    experiments = ("rotation", *ARMS)
    resolved = protocol.resolve_plan([(None, seed, e) for seed in seeds for e in experiments])
    configs = []
    for i in range(0, len(resolved), len(experiments)):
        rotation, *arm_configs = resolved[i : i + len(experiments)]
        configs.append(rotation)
        # each arm with the data it reads (loaded once a plan: `load_dataset` keeps it), checked once
        arms = [(cfg, load_for(cfg, data)) for cfg in arm_configs]
        for _, on in arms:
            refuse_sizes_above_every_class(sizes, on.train_labels, on.name)
        configs += [
            subset_schedule(cfg, n, min_steps, subset_size(on.train_labels, n))
            for n in sorted(sizes)
            for cfg, on in arms
        ]
    return configs


def refuse_sizes_above_every_class(sizes: list[int], labels, name: str) -> None:
    """A size above the largest class takes every image, as that class's count does: the same run trained again and
    plotted at another number of labels (the default sizes on STL-10's 500 a class: three times)."""
    top = max(class_counts(labels).values(), default=0)
    above = sorted(n for n in set(sizes) if n > top)
    if above:
        kept = ",".join(map(str, sorted({min(n, top) for n in sizes})))
        raise RotnetError(
            f"--per-class {', '.join(map(str, above))}: {name}'s largest class has {top} training images, so a larger "
            f"size takes the same images as {top} (trained again, plotted at another count); pass --per-class {kept}"
        )
