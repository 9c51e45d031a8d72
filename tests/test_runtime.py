"""Device and thread count (rotnet.runtime): a run's thread count a recorded number."""

import pytest


@pytest.mark.parametrize(
    ("record", "threads"),
    [
        ({"cpu_threads": 3, "device_name": "x86_64 (2 threads)"}, 3),  # the number, not the display text
        ({"device_name": "x86_64 (2 threads)"}, 2),  # a record before 0.7
        ({"cpu_threads": True, "device_name": "x86_64"}, None),
        ({"cpu_threads": "4"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_a_runs_thread_count_is_a_recorded_number(record, threads):
    from rotnet.runtime import recorded_threads

    assert recorded_threads(record) == threads


def test_the_suite_hides_a_gpu_from_itself_and_the_processes_it_starts():
    """CI has no GPU; the suite runs on the CPU on a GPU machine too (tests/conftest.py), in its own processes and in
    the rotnet processes tests start."""
    import os
    import subprocess
    import sys

    assert os.environ.get("CUDA_VISIBLE_DEVICES") == ""
    child = "import os, torch; print(repr(os.environ.get('CUDA_VISIBLE_DEVICES')), torch.cuda.is_available())"
    said = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout
    assert said.split() == ["''", "False"]
