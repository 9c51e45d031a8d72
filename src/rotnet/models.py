"""torchvision ResNets, the head swap for transfer, and which parameters train."""

from __future__ import annotations

import contextlib

import torch
import torchvision
from torch import nn

from rotnet.errors import RotnetError, unknown
from rotnet.seeds import derive_seed

BUILDERS = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
}
TRAINABLE_PREFIXES = {"all": ("",), "layer4": ("layer4.", "fc.")}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """The forward pass's precision: fp32 as is, or autocast to bf16/fp16."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def build_model(arch: str, num_classes: int, stem: str = "imagenet") -> nn.Module:
    """The unmodified torchvision ResNet (ImageNet stem, as the reference used), or with a CIFAR stem:
    3x3 stride-1 conv1 and no maxpool, which keeps 4x more spatial resolution at 32x32."""
    if arch not in BUILDERS:
        raise unknown("arch", arch, BUILDERS)
    model = BUILDERS[arch](num_classes=num_classes)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        model.maxpool = nn.Identity()
    return model


def initial_model(arch: str, num_classes: int, stem: str, seed: int) -> nn.Module:
    """The random init a run of this seed starts from (the "init" random stream): the same for a run, its resume,
    its probe and its verification."""
    torch.manual_seed(derive_seed("init", seed))
    return build_model(arch, num_classes, stem)


def set_trainable(model: nn.Module, trainable: str) -> list[nn.Parameter]:
    """Freeze every parameter outside `trainable` ("all" or "layer4"); return those that train, in model order."""
    prefixes = TRAINABLE_PREFIXES[trainable]
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(prefixes))
        if p.requires_grad:
            params.append(p)
    return params


def train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """model.train(); with freeze_bn, BatchNorm layers whose parameters are frozen stay in eval mode.

    Without freeze_bn the frozen layers' BatchNorm keep updating running statistics, as in the reference, which
    calls net.train() on the whole network.
    """
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                m.eval()


def transfer_state(source: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict for `model` that copies every tensor of `source` except fc, which keeps model's fresh
    initialization (it has a different number of outputs). Keys must match exactly: a mismatch is an error
    that lists the missing, unexpected and wrong-shape keys."""
    target = model.state_dict()
    body = {k for k in target if not k.startswith("fc.")}
    check_keys({k: v for k, v in source.items() if not k.startswith("fc.")}, {k: target[k] for k in body})
    return {k: (source[k] if k in body else v) for k, v in target.items()}


def check_keys(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str = "weights") -> None:
    """Raise RotnetError listing missing, unexpected, wrong-shape, wrong-dtype and non-finite tensors, if any."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(
        f"{k} {tuple(found[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(found) & set(expected)
        if found[k].shape != expected[k].shape
    )

    def show(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "") or "none"

    if missing or unexpected or shapes:
        raise RotnetError(
            f"{what} do not match the model: missing {show(missing)}; unexpected {show(unexpected)}; "
            f"wrong shape {show(shapes)}"
        )
    dtypes = sorted(
        f"{k} {found[k].dtype} != {expected[k].dtype}" for k in found if found[k].dtype != expected[k].dtype
    )
    if dtypes:
        raise RotnetError(f"{what} have the wrong dtype: {show(dtypes)}")
    bad = sorted(k for k, v in found.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        raise RotnetError(f"{what} hold non-finite values (nan or inf) in {show(bad)}; refusing them")
