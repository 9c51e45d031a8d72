"""Evaluation against hand-written references."""

import pytest
import torch

from rotnet.evaluate import STAGES, accuracy, confusion, extract, knn_accuracy, predict, stage_outputs, targets_for
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


def reference_knn(train, train_y, test, test_y, k, t):
    correct = 0
    for x, y in zip(test, test_y, strict=True):
        sims = torch.stack([torch.nn.functional.cosine_similarity(x, f, dim=0) for f in train])
        top = sims.topk(k)
        votes = torch.zeros(10)
        for s, i in zip(top.values, top.indices, strict=True):
            votes[train_y[i]] += torch.exp(s / t)
        correct += int(votes.argmax() == y)
    return 100 * correct / len(test)


def test_knn_matches_a_hand_written_reference():
    gen = torch.Generator().manual_seed(0)
    train, test = torch.randn(60, 8, generator=gen), torch.randn(20, 8, generator=gen)
    train_y, test_y = torch.randint(0, 10, (60,), generator=gen), torch.randint(0, 10, (20,), generator=gen)
    for k in (1, 5, 200):
        expected = reference_knn(train, train_y, test, test_y, min(k, 60), 0.1)
        assert knn_accuracy(train, train_y, test, test_y, k=k, chunk=7) == pytest.approx(expected)
    assert knn_accuracy(train, train_y, train, train_y, k=1) == 100.0  # each point is its own neighbour


def test_stage_outputs_match_the_torchvision_forward():
    model = build_model("resnet18", 10).eval()
    x = torch.randn(2, 3, 32, 32)
    out = stage_outputs(model, x)
    assert list(out) == list(STAGES)
    torch.testing.assert_close(model.fc(torch.flatten(model.avgpool(out["layer4"]), 1)), model(x))
    feats = extract(model, torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8), pool=2, batch_size=2)
    assert feats["layer1"].shape == (5, 64 * 4) and feats["layer4"].shape == (5, 512)  # its map is 1x1: kept whole
