"""The report's statistics: Student's t-interval of a mean over seeds, Wilson's interval of an accuracy."""

import pytest

from rotnet.stats import counts_of, mean_interval, wilson


@pytest.mark.parametrize(
    ("correct", "n", "low", "high"),
    [  # 5/10 and 0/10 as textbooks give them; the others worked by hand from Wilson's formula
        (5, 10, 23.659, 76.341),
        (0, 10, 0.0, 27.753),
        (49, 200, 19.057, 30.904),
        (8244, 10000, 81.682, 83.173),
    ],
)
def test_wilson_intervals_are_the_published_ones(correct, n, low, high):
    lo, hi = wilson(correct, n)
    assert lo == pytest.approx(low, abs=2e-3) and hi == pytest.approx(high, abs=2e-3)


def test_no_test_images_no_interval_and_counts_come_from_a_confusion_matrix():
    assert wilson(0, 0) is None
    assert counts_of([[3, 1], [0, 4]]) == (7, 8) and counts_of("(matrix)") is None and counts_of([[1], "x"]) is None


def test_one_value_has_a_mean_but_no_spread():
    assert mean_interval([2.5]) == (2.5, None, None)
    mean, std, (lo, hi) = mean_interval([1.0, 3.0])
    assert (mean, std) == (2.0, pytest.approx(2**0.5)) and hi - 2.0 == pytest.approx(12.706)
