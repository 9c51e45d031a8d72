"""The pretraining gain (rotnet.gains): paired by seed, with its interval, and worded by its numbers (0 inside or
outside the interval; the reference's figure inside, above or below it)."""

import pytest

from tests.helpers import gain_row


@pytest.mark.parametrize(
    ("diffs", "reference_gain", "words"),
    [
        ([0.1, 0.5, -0.3], 1.24, ["contains 0: these seeds cannot tell this gain from no gain", "+1.24 lies above"]),
        ([16.4, 16.6, 16.5], 17.13, ["excludes 0: rotation pretraining helps here", "+17.13 lies above"]),
        ([16.1, 16.9, 16.5], 16.4, ["excludes 0: rotation pretraining helps here", "+16.40 lies inside it."]),
        ([-2.0, -2.5, -1.5], 1.24, ["excludes 0: rotation pretraining hurts here", "+1.24 lies above"]),
        ([1.0, 1.2, 0.8], -3.0, ["helps here", "-3.00 lies below it (its single run is not what these seeds find)"]),
        ([0.4, 0.2], None, ["over 2 seeds", "contains 0"]),
        ([0.17], 1.24, ["gain +0.17 from one seed; no interval"]),
    ],
)
def test_the_gain_is_worded_by_its_numbers(diffs, reference_gain, words):
    from rotnet.gains import gain_finding

    row = gain_row(diffs, reference_gain)
    text = gain_finding(row)
    assert text.startswith("resnet18 full: gain ")
    for w in words:
        assert w in text, (w, text)
    if len(diffs) > 1:
        lo, hi = row["gain_ci95"]
        assert lo < row["gain"] < hi and f"[{lo:+.2f}, {hi:+.2f}]" in text
