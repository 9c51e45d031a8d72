"""The report's sections beyond the main table (rotnet.sections): data files, wall time of resumed invocations."""

import pytest


@pytest.mark.parametrize(
    ("dataset", "match", "shown"),
    [
        ("cifar10", True, "official cifar10 (md5)"),
        ("stl10", False, "differ from the official (warned)"),
        ("cifar100", None, "?"),
        ("/data/pets", None, "image folder (no official release)"),
        ("/data/pets", True, "image folder (no official release)"),  # what rotnet <= 0.4 recorded for a folder
    ],
)
def test_the_report_says_official_files_only_of_a_named_dataset(dataset, match, shown):
    from rotnet.sections import data_files_text

    assert data_files_text(dataset, match) == shown


def test_the_wall_time_of_resumed_invocations_counts_only_those_that_recorded_it():
    """The wall time of a resumed plan counts only the invocations that recorded their end, and says how many did
    not."""
    from rotnet.sections import earlier_text

    killed = {"git_commit": "aaaaaaa1", "wall_seconds": None}
    text = earlier_text({"earlier": [killed], "git_commit": "bbbbbbb2"})
    assert "0.0 min" not in text and "none of the 2 recorded its end" in text
    text = earlier_text({"earlier": [killed, {"git_commit": "ccccccc3", "wall_seconds": 600}], "wall_seconds": 60})
    assert "11.0 min for the 2 of 3 that recorded their end (1 did not" in text and "commits aaaaaaa, ccccccc" in text


@pytest.mark.parametrize(
    "log, shown",
    [
        ({"command": "rotnet reproduce --seeds 0"}, "Command: `rotnet reproduce --seeds 0`"),
        # resumed with the same command: said once
        ({"command": "A", "earlier": [{"command": "A"}, {"command": "A"}]}, "Command: `A`"),
        # a runs root filled by two plans (seeds added later): both, in the order first given
        (
            {"command": "B", "earlier": [{"command": "A"}, {"command": "B"}, {"command": "A"}]},
            "Commands, in the order first given: `A`; `B`",
        ),
        ({"command": None, "earlier": [{"command": "A"}, "junk", {}]}, "Command: `A`"),  # what an old log holds
        ({"earlier": "junk"}, None),
        ({}, None),
    ],
)
def test_the_report_names_every_command_that_filled_the_runs_root(log, shown):
    from rotnet.sections import commands_line

    assert commands_line(log) == ([shown, ""] if shown else [])


def test_compute_counts_the_finished_cpu_runs_threads_times_seconds():
    """Core-hours by median epoch and by the recorded seconds, over finished CPU runs only, with the threads each
    recorded (`cpu_threads`, or the device name of a record before 0.7); a pause shows in the sum, not the median."""
    from rotnet.sections import compute

    def run(status="finished", seconds=(100, 100, 1000), **config):
        config = {"device": "cpu", "cpu_threads": 2} | config
        return {"status": status, "config": config, "history": [{"seconds": s} for s in seconds]}

    runs = [
        run(),  # 2 threads: median 100 x 3 epochs; 1,200 s recorded
        run(cpu_threads=None, device_name="x86_64 (1 thread)", seconds=(360, 360)),  # 720 s both ways
        run(status="partial"),
        run(device="cuda", device_name="NVIDIA H200"),
        run(cpu_threads=None, device_name="x86_64"),  # threads not recorded: not counted
        run(status="not pooled", seconds=(10, 10)),  # out of its row's mean, but trained: 2 x 10 x 2 both ways
    ]
    spent = compute(runs)
    assert spent["runs"] == 3
    assert spent["core_hours_median"] == pytest.approx((2 * 100 * 3 + 720 + 40) / 3600)
    assert spent["core_hours_recorded"] == pytest.approx((2 * 1200 + 720 + 40) / 3600)
    assert compute(runs[2:5]) is None


@pytest.mark.parametrize(
    "record, shown",
    [
        (
            {"device_name": "x86_64 (1 thread)", "cpu": {"model": "AMD EPYC", "capability": "AVX2"}},
            "x86_64 (1 thread), AMD EPYC, AVX2",
        ),
        ({"device_name": "x86_64 (2 threads)"}, "x86_64 (2 threads)"),  # before 0.4: no CPU recorded
        ({"device_name": "NVIDIA H200", "cpu": "junk"}, "NVIDIA H200"),
        ({}, None),
    ],
)
def test_the_provenance_names_the_cpu_a_run_recorded(record, shown):
    from rotnet.sections import device_text

    assert device_text(record) == shown


def subset_run(segment: str, arch: str, experiment: str, seed: int, per_class: int, acc: float) -> dict:
    """A finished subset run as rotnet.report.collect gives it, for the label-efficiency section."""
    task = "rotation" if experiment == "rotation" else "classification"
    return {
        "segment": segment, "arch": arch, "experiment": experiment, "seed": seed, "per_class": per_class,
        "status": "finished", "cfg": {"task": task}, "result": {"test_acc": acc},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("runs", "header", "row"),
    [
        (  # two seeds of one arm on one data: averaged (the control)
            [("", "resnet18", "full-from-rotation", 0, 4, 10.0), ("", "resnet18", "full-from-rotation", 1, 4, 20.0)],
            ["resnet18 full-from-rotation"],
            ["15.00 ± 7.07 (n=2)"],
        ),
        (  # one arm on two datasets: two columns (they were averaged as two seeds of one number)
            [("", "resnet18", "full-from-rotation", 0, 4, 10.0), ("pets", "resnet18", "full-from-rotation", 0, 4, 3.0)],
            ["resnet18 full-from-rotation (cifar10)", "resnet18 full-from-rotation (pets)"],
            ["10.00 (n=1)", "3.00 (n=1)"],
        ),
        (  # a rotation run on a subset (--train-per-class) uses no labels: no column (it was one)
            [("", "resnet18", "rotation", 0, 4, 60.0), ("", "resnet18", "full-from-random", 0, 4, 12.0)],
            ["resnet18 full-from-random"],
            ["12.00 (n=1)"],
        ),
        (  # two archs on one data: a column each
            [("", "resnet18", "full-from-random", 0, 4, 12.0), ("", "resnet34", "full-from-random", 0, 4, 14.0)],
            ["resnet18 full-from-random", "resnet34 full-from-random"],
            ["12.00 (n=1)", "14.00 (n=1)"],
        ),
    ],
)
def test_label_efficiency_averages_only_seeds_of_one_arm_on_one_data(tmp_path, runs, header, row):
    from rotnet.sections import label_efficiency_section

    lines = label_efficiency_section([subset_run(*r) for r in runs], tmp_path / "le.png")
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| " + " | ".join(["labels per class", *header]) + " |"
    assert table[2:] == ["| " + " | ".join(["4", *row]) + " |"]
