"""Whether weights are usable (rotnet.health), table-driven: each way weights load yet cannot work is named, and
healthy weights pass."""

import pytest
import torch

from rotnet.augment import REFERENCE_NORM
from rotnet.health import weights_problem
from rotnet.models import build_model


def images(n: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def nan_weight(m):
    m.conv1.weight.data[0, 0, 0, 0] = float("nan")


def negative_variance(m):
    m.bn1.running_var[0] = -1.0


def scaled_by_1e30(m):  # finite weights whose forward pass overflows
    for p in m.parameters():
        p.data.mul_(1e30)


def constant_head(m):  # every image gets the same output
    m.fc.weight.data.zero_()


@pytest.mark.parametrize(
    ("break_it", "named"),
    [
        (nan_weight, "non-finite values (nan or inf) in conv1.weight"),
        (negative_variance, "a negative BatchNorm running variance in bn1.running_var"),
        (scaled_by_1e30, "non-finite outputs"),
        (constant_head, "one and the same output"),
    ],
)
def test_weights_that_load_but_cannot_work_are_named(break_it, named):
    torch.manual_seed(0)
    model = build_model("resnet18", 4)
    assert weights_problem(model, images(), REFERENCE_NORM, channels_last=False) == ""
    with torch.no_grad():
        break_it(model)
    assert named in weights_problem(model, images(), REFERENCE_NORM, channels_last=False)


def test_the_check_leaves_the_model_in_the_mode_it_found_it():
    model = build_model("resnet18", 4).train()
    weights_problem(model, images(), REFERENCE_NORM, channels_last=False)
    assert model.training


def test_one_image_or_identical_images_are_not_called_constant():
    model = build_model("resnet18", 4)
    with torch.no_grad():
        constant_head(model)
    same = images(1).repeat(4, 1, 1, 1)
    assert weights_problem(model, same, REFERENCE_NORM, channels_last=False) == ""
