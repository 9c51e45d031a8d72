"""Small-sample statistics the report states its numbers with: Student's t-interval of a mean over seeds, of a
difference between two sets of seeds, and Wilson's interval of one accuracy."""

from __future__ import annotations

import math
import statistics

# Student's t quantile t(0.975, df) for df = 1..30 (standard tables); past 30, its Cornish-Fisher expansion.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045,
        2.042)  # fmt: skip


def t975(df: float) -> float:
    """t(0.975, df) for df >= 1. A fractional df (Welch's) between two tabled ones: log t interpolated in 1/df (too wide
    by under 3% between df 1 and 2; within 0.5% past 2)."""
    if df <= len(T975):
        lo = math.floor(df)
        if lo == df:
            return T975[lo - 1]
        w = (1 / lo - 1 / df) / (1 / lo - 1 / (lo + 1))
        return math.exp((1 - w) * math.log(T975[lo - 1]) + w * math.log(t975(lo + 1)))
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def t_interval(mean: float | None, std: float | None, n: int) -> list[float] | None:
    """The 95% t-interval of a mean of n values with sample std `std` (None without a std: under two values)."""
    if mean is None or std is None:
        return None
    half = t975(n - 1) * std / math.sqrt(n)
    return [mean - half, mean + half]


def mean_interval(values: list[float]) -> tuple[float, float | None, list[float] | None]:
    """Mean, sample std and 95% t-interval of values (std and interval None under two values)."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return mean, std, t_interval(mean, std, len(values))


def difference_interval(a: list[float], b: list[float]) -> tuple[list[float] | None, str]:
    """The 95% interval of mean(b) - mean(a) over independent seeds, and how it was had: Welch's t-interval when both
    sides have two values or more ("welch"); with one value on a side, the other side's spread stands in for its own
    (the interval a single new seed falls in, t(n-1) s sqrt(1 + 1/n): "one seed"); (None, "") when neither side has a
    spread."""
    (na, va), (nb, vb) = ((len(x), statistics.variance(x) if len(x) > 1 else None) for x in (a, b))
    diff = statistics.fmean(b) - statistics.fmean(a)
    if va is not None and vb is not None:
        sa, sb = va / na, vb / nb
        se = math.sqrt(sa + sb)
        if se == 0:
            return [diff, diff], "welch"
        df = (sa + sb) ** 2 / (sa**2 / (na - 1) + sb**2 / (nb - 1))
        half = t975(max(1.0, df)) * se
        return [diff - half, diff + half], "welch"
    n, var = (na, va) if va is not None else (nb, vb)
    if var is None:
        return None, ""
    half = t975(n - 1) * math.sqrt(var) * math.sqrt(1 + 1 / n)
    return [diff - half, diff + half], "one seed"


def wilson(correct: int, n: int, z: float = 1.959964) -> list[float] | None:
    """The 95% Wilson score interval (percent) of an accuracy of correct/n: how far the test set's own sampling could
    move it (None without test images). Unlike mean +- 1.96 sd it stays inside 0-100 and is right at few images."""
    if n <= 0:
        return None
    p = correct / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [100 * (center - half), 100 * (center + half)]


def counts_of(confusion) -> tuple[int, int] | None:
    """(correct, total) of a confusion matrix of counts (None when it is not one)."""
    if not isinstance(confusion, list) or not all(isinstance(r, list) for r in confusion):
        return None
    try:
        return sum(confusion[i][i] for i in range(len(confusion))), sum(map(sum, confusion))
    except (TypeError, IndexError):
        return None
