"""The report's statistics: Student's t-interval of a mean over seeds, Wilson's interval of an accuracy."""

import pytest

from rotnet.stats import counts_of, difference_interval, mean_interval, wilson


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


def test_the_t_quantiles_are_the_student_t_distributions():
    """t(0.975, df) checked against the t density integrated numerically (no table copied into the test)."""
    import math

    from rotnet.stats import t975

    def cdf(t: float, df: float, steps: int = 200_000) -> float:
        c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
        h = t / steps  # the symmetric density: 0.5 + the integral from 0 to t (Simpson's rule)
        f = [c * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(steps + 1)]
        return 0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))

    for df in (1, 2, 3, 5, 10, 30, 31, 60, 200):
        assert cdf(t975(df), df) == pytest.approx(0.975, abs=2e-4), df
    for df in (1.5, 2.43, 4.7, 29.5):  # Welch's fractional df: interpolated, a hair wide
        assert 0.975 - 2e-4 <= cdf(t975(df), df) <= 0.976, df


def test_a_difference_between_two_archs_has_an_interval_when_a_side_has_a_spread():
    """Welch's interval with a spread on both sides (scipy's ttest_ind(equal_var=False) gives [+1.05, +2.02] for
    these: the df 2.43 interpolated); one value on a side borrows the other's spread as one more draw of it."""
    (lo, hi), how = difference_interval([76.4, 76.6], [78.0, 78.2, 77.9])
    assert how == "welch" and (lo, hi) == (pytest.approx(1.044, abs=2e-3), pytest.approx(2.023, abs=2e-3))
    (lo, hi), how = difference_interval([1.0, 3.0], [10.0])  # 8 +- 12.706 x sqrt(2) x sqrt(1 + 1/2)
    assert how == "one seed" and hi - 8 == pytest.approx(8 - lo) == pytest.approx(12.706 * 3**0.5)
    assert difference_interval([10.0], [1.0, 3.0])[0] == [
        pytest.approx(-8 - 12.706 * 3**0.5),
        pytest.approx(-8 + 12.706 * 3**0.5),
    ]
    assert difference_interval([1.0], [2.0]) == (None, "")
    assert difference_interval([1.0, 1.0], [2.0, 2.0]) == ([1.0, 1.0], "welch")  # no spread at all: the difference
