"""What each record file must hold (rotnet.schema), table-driven: metrics lines, result.json's fields, config.json's
configuration and the confusion matrix, each good form accepted and each bad one named."""

import json

import pytest

from rotnet.config import RunConfig
from rotnet.schema import RESULT_FIELDS, config_problems, confusion_problems, parse_metrics, result_problems

SHA = "a" * 64


def lines(*records) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


@pytest.mark.parametrize(
    ("data", "epochs"),
    [
        (None, 0),
        (b"", 0),
        (lines({"epoch": 1, "test_acc": 50.0}, {"epoch": 2, "weights_sha256": SHA}), 2),
        (lines({"epoch": 1}) + b'{"epoch": 2, "te', 1),  # a torn last line: the epochs before it
    ],
)
def test_metrics_that_rotnet_writes_are_read(data, epochs):
    assert len(parse_metrics(data)) == epochs


@pytest.mark.parametrize(
    "data",
    [
        lines({"epoch": 2}),  # does not start at 1
        lines({"epoch": 1}, {"epoch": 1}),  # not in order
        lines({"epoch": 1, "lr": "0.1"}),  # a number as text
        lines('{"epoch": 1, "train_loss": NaN}'),  # not finite
        lines({"epoch": 1, "weights_sha256": "abc"}),  # not a sha256
        lines("[1]"),  # not a record
        lines("garbage", {"epoch": 1}),  # a bad line that is not the last
        b"\xff\xfe",  # not text
    ],
)
def test_metrics_that_are_not_epoch_records_read_as_none(data):
    assert parse_metrics(data) is None


GOOD_RESULT = {"test_acc": 50.0, "epochs": 2, "seed": 0, "task": "rotation", "class_names": ["a"], "world_size": 1}


@pytest.mark.parametrize("key", sorted(RESULT_FIELDS))
def test_every_result_field_of_the_wrong_kind_is_named(key):
    assert result_problems(GOOD_RESULT, {"task": "rotation"}) == []
    bad = {"ranks_agree": "yes", "class_names": "a", "train_images_per_class": {"a": -1}}.get(key, [])
    problems = result_problems(GOOD_RESULT | {key: bad}, {"task": "rotation"})
    assert problems and f"result.json's {key} is" in problems[0]


def test_a_result_without_accuracy_or_of_another_task_is_named():
    assert "has no test_acc" in result_problems({"epochs": 1}, {})[0]
    assert "says task 'rotation'" in result_problems(GOOD_RESULT, {"task": "classification"})[0]


def test_a_configuration_rotnet_could_not_have_run_is_named():
    assert config_problems(RunConfig().to_dict()) == []
    assert config_problems({"lr": -1.0}) and config_problems({"epochs": "ten"})


@pytest.mark.parametrize(
    ("result", "named"),
    [
        ({"confusion": [[1, 0], [0]], "class_names": ["a", "b"], "test_acc": 50.0}, "not a square matrix"),
        ({"confusion": [[1, -1], [0, 1]], "class_names": ["a", "b"], "test_acc": 50.0}, "not a square matrix"),
        ({"confusion": [[1, 0], [0, 1]], "class_names": ["a"], "test_acc": 100.0}, "2 confusion rows"),
        ({"confusion": [[1, 1], [0, 2]], "class_names": ["a", "b"], "test_acc": 50.0}, "gives test_acc 75.0"),
    ],
)
def test_a_confusion_matrix_that_disagrees_with_itself_is_named(result, named):
    assert named in confusion_problems(result)[0]
    good = {"confusion": [[1, 1], [0, 2]], "class_names": ["a", "b"], "test_acc": 75.0}
    assert confusion_problems(good) == [] and confusion_problems({"test_acc": 1.0}) == []
