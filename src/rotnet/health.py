"""Are weights usable? Checked where they enter a run (the rotation weights a transfer run starts from, `--init`
included) and where they leave it (the final weights, before a run is called finished): finite weights that load
are not enough, since a negative BatchNorm variance or weights scaled by 1e30 train "successfully" to chance."""

from __future__ import annotations

import torch
from torch import nn

from rotnet.augment import to_input

PROBE_IMAGES = 64  # the fixed batch a forward pass is tried on: the first test images of the run's data


def show(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


@torch.inference_mode()
def weights_problem(model: nn.Module, images: torch.Tensor, norm: tuple, channels_last: bool) -> str:
    """What makes a model's weights unusable ('' if nothing): a non-finite tensor, a BatchNorm running variance below
    0, or a forward pass in eval mode on `images` (uint8 (B, 3, H, W), a fixed batch of the run's data) whose outputs
    are not finite or are one and the same for images that differ."""
    state = model.state_dict()
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        return f"non-finite values (nan or inf) in {show(bad)}"
    negative = [k for k, v in state.items() if k.endswith("running_var") and bool((v < 0).any())]
    if negative:
        return f"a negative BatchNorm running variance in {show(negative)}"
    images = images[:PROBE_IMAGES]
    training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        out = model(to_input(images.to(device), channels_last, norm)).float()
    finally:
        model.train(training)
    n = len(images)
    if not bool(torch.isfinite(out).all()):
        return f"non-finite outputs (nan or inf) on a fixed batch of {n} test images"
    if n > 1 and bool((images != images[:1]).any()) and bool((out == out[:1]).all()):
        return f"one and the same output for each of a fixed batch of {n} different test images"
    return ""
