"""Label-efficiency plans (rotnet.label_efficiency): the subset schedule."""

from rotnet.label_efficiency import subset_schedule
from rotnet.protocol import resolve


def test_label_efficiency_schedule_rule():
    base = resolve("full-from-rotation", preset="paper")
    small, large = subset_schedule(base, 20, 300), subset_schedule(base, 5000, 300)
    assert small.epochs == 192 and small.lr_step_epochs == 96 and small.eval_every == 20  # ceil(300*128/200)
    assert large.epochs == 20 and large.lr_step_epochs == 10 and large.eval_every == 2
    assert small.train_per_class == 20
