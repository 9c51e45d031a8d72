"""How a plan runs (rotnet.plan): how many runs at once and how long the rest will take."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rotnet.experiments import plan
from tests.helpers import TINY_PRESET


def test_two_jobs_by_default_only_on_a_multicore_cpu_for_long_runs_that_can_go_together(monkeypatch):
    import torch

    from rotnet.plan import PARALLEL_MIN_WORK, PlanOptions, auto_jobs
    from rotnet.protocol import Protocol
    from rotnet.runner import source_for

    def jobs(experiments, device="cpu", cores=2, work=PARALLEL_MIN_WORK):
        monkeypatch.setattr(os, "cpu_count", lambda: cores)
        protocol = Protocol(TINY_PRESET)
        configs = [protocol.resolve(e, arch=a, seed=s) for a, s, e in plan(["resnet18"], [0], experiments)]
        options = PlanOptions(Path("runs"), protocol)
        return auto_jobs(torch.device(device), [(c, source_for(c, options)) for c in configs], [work] * len(configs))

    assert jobs([]) == 2  # rotation beside the from-random runs, then the two from-rotation runs together
    assert jobs(["layer4-from-rotation", "full-from-rotation"]) == 2
    assert jobs(["rotation", "full-from-random"]) == 2
    assert jobs(["rotation"]) == 1 and jobs(["full-from-rotation"]) == 1  # the second waits for the first
    assert jobs([], cores=1) == 1 and jobs([], device="cuda") == 1
    assert jobs([], work=PARALLEL_MIN_WORK - 1) == 1  # short runs: start-up costs more than a second process saves
    assert auto_jobs(torch.device("cpu"), [], []) == 1  # nothing left to train


def test_the_plan_eta_counts_the_work_left_at_the_pace_of_runs_that_trained():
    from rotnet.plan import Eta

    eta = Eta([100, 100, 200])
    assert eta.text(0) == ""  # nothing trained yet: no guess
    eta.done(0, 0.5, 9000.0)  # a reused run (under a second here) says nothing about this plan's pace
    assert eta.text(1) == ""
    eta.done(1, 600.0, 600.0)  # 100 units in 10 minutes; 200 units left
    assert eta.text(2) == "; about 20 min left in the plan"


# How the run before the last one ended here: (seconds here, seconds its record says its epochs took) -> what the
# plan then says of its last run's 100 units. A resumed run's whole cost took its recorded epochs, not this process's
# part of them: the last tenth of a run, resumed, made the plan's pace ten times too fast ("about 1 min" for 10).
ENDS = [
    ("trained whole here", (600.0, 600.0), "; about 10 min left in the plan"),
    ("resumed for its last tenth", (60.0, 600.0), "; about 10 min left in the plan"),
    ("failed, no result", (60.0, None), ""),
]


@pytest.mark.parametrize("how, seconds, said", ENDS, ids=[e[0] for e in ENDS])
def test_the_plan_pace_is_each_runs_recorded_time_for_its_whole_cost(how, seconds, said):
    from rotnet.plan import Eta

    eta = Eta([100, 100])
    eta.done(0, *seconds)
    assert eta.text(1) == said


def test_the_plan_estimate_says_seconds_minutes_or_hours():
    from rotnet.plan import Eta

    eta = Eta([10, 10, 10])
    eta.done(0, 12.0, 12.0)
    assert eta.text(1) == "; about 24 s left in the plan"  # it said "about 0 min"
    eta = Eta([1, 1000])
    eta.done(0, 30.0, 30.0)
    assert eta.text(1) == "; about 8.3 h left in the plan"
