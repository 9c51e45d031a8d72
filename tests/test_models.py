import pytest
import torch
import torchvision

from rotnet.checkpoint import load_tensors, save_tensors
from rotnet.errors import RotnetError
from rotnet.models import build_model, set_trainable, train_mode, transfer_state


def test_models_are_plain_torchvision():
    """The published parameter counts (torchvision's 1000-class figures with a 4-way head) and the same module tree
    as torchvision's own constructor: the seed's unmodified ResNets."""
    published = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}
    for arch, count in published.items():
        ours = build_model(arch, 4)
        width = ours.fc.in_features
        assert sum(p.numel() for p in ours.parameters()) == count - (width + 1) * 1000 + (width + 1) * 4
        assert repr(ours) == repr(getattr(torchvision.models, arch)(num_classes=4))
    assert isinstance(build_model("resnet18", 4).maxpool, torch.nn.MaxPool2d)
    cifar = build_model("resnet18", 10, stem="cifar")
    assert cifar.conv1.kernel_size == (3, 3) and isinstance(cifar.maxpool, torch.nn.Identity)


def test_layer4_step_changes_only_layer4_and_fc():
    model = build_model("resnet18", 10)
    params = set_trainable(model, "layer4")
    before = {k: v.clone() for k, v in model.named_parameters()}
    opt = torch.optim.Adam(params, lr=1e-2)
    train_mode(model, freeze_bn=False)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32)), torch.randint(0, 10, (8,)))
    loss.backward()
    opt.step()
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p)
        assert changed == name.startswith(("layer4.", "fc.")), name


def test_freeze_bn_keeps_frozen_running_stats():
    for freeze_bn, expect_changed in ((True, False), (False, True)):
        model = build_model("resnet18", 10)
        set_trainable(model, "layer4")
        stats = model.bn1.running_mean.clone()
        train_mode(model, freeze_bn)
        model(torch.randn(8, 3, 32, 32))
        assert (not torch.equal(stats, model.bn1.running_mean)) == expect_changed
        assert model.layer4[0].bn1.training


def test_transfer_copies_every_non_fc_tensor_exactly():
    torch.manual_seed(0)
    source = build_model("resnet18", 4)
    source.layer1[0].bn1.running_mean.add_(1.5)  # buffers are copied too
    torch.manual_seed(1)
    target = build_model("resnet18", 10)
    fresh_fc = target.fc.weight.clone()
    target.load_state_dict(transfer_state(source.state_dict(), target))
    for k, v in target.state_dict().items():
        if k.startswith("fc."):
            assert v.shape[0] == 10
        else:
            assert torch.equal(v, source.state_dict()[k]), k
    assert torch.equal(target.fc.weight, fresh_fc)


def test_transfer_from_another_arch_lists_the_mismatch():
    with pytest.raises(RotnetError, match=r"missing .*unexpected .*wrong shape"):
        transfer_state(build_model("resnet50", 4).state_dict(), build_model("resnet18", 10))


def test_saved_weights_load_into_plain_torchvision(tmp_path):
    model = build_model("resnet18", 10)
    save_tensors(tmp_path / "w.safetensors", model.state_dict())
    tensors, _ = load_tensors(tmp_path / "w.safetensors")
    plain = torchvision.models.resnet18(num_classes=10)
    plain.load_state_dict(tensors, strict=True)
    x = torch.randn(2, 3, 32, 32)
    model.eval(), plain.eval()
    assert torch.equal(model(x), plain(x))


def test_cifar_stem_shapes():
    model = build_model("resnet18", 4, stem="cifar")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    x = torch.randn(2, 3, 32, 32)
    feats = torch.nn.Sequential(
        model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3, model.layer4
    )(x)
    assert feats.shape == (2, 512, 4, 4)  # the ImageNet stem leaves 1x1
    assert model(x).shape == (2, 4)
