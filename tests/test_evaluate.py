"""Evaluation against hand-written references."""

import pytest
import torch

from rotnet.evaluate import accuracy, confusion, predict, targets_for
from rotnet.models import build_model


def test_rotation_predictions_score_all_four_rotations():
    torch.manual_seed(0)
    model = build_model("resnet18", 4)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    pred = predict(model, images, "rotation", batch_size=2, precision="fp32", channels_last=True)
    assert pred.shape == (5, 4)
    from rotnet.augment import to_input

    model.eval()
    with torch.no_grad():
        for k in range(4):
            ref = model(to_input(torch.rot90(images, k, dims=(2, 3)), False)).argmax(1)
            assert torch.equal(pred[:, k], ref)


def test_accuracy_and_confusion_by_hand():
    pred = torch.tensor([[0, 1, 2, 0], [0, 1, 3, 3]])  # two images, their four rotations
    assert accuracy(pred, torch.tensor([]), "rotation") == 100.0 * 6 / 8
    m = confusion(pred, targets_for(pred, torch.tensor([]), "rotation"), 4)
    assert m == [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1], [1, 0, 0, 1]]
    labels = torch.tensor([1, 2, 2])
    assert accuracy(torch.tensor([1, 0, 2]), labels, "classification") == pytest.approx(100.0 * 2 / 3)
