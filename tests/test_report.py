"""The report: only over rotnet runs, only its own files, and every run status rendered (unreadable ones too)."""

import json
import shutil

import matplotlib.image
import pytest

from rotnet.cli import main
from rotnet.experiments import EXPERIMENTS
from rotnet.report import collect, write_report
from tests.helpers import as_made_by_0_3, cli, edit_json, fabricate, partial, reproduce, reseal, with_rotation


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, tiny_runs, fake_root):
    """A tiny reproduce of two seeds (its seed 0 rotation run reused from the session's)."""
    root = with_rotation(tiny_runs, tmp_path_factory.mktemp("repro"))
    assert main(reproduce(root, fake_root, "--seeds", "0,1")) == 0
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_five):
    """A rotation run and a full-from-random one: the session's, copied."""
    import shutil

    root = tmp_path_factory.mktemp("runs")
    for experiment in ("rotation", "full-from-random"):
        shutil.copytree(tiny_five / "resnet18" / experiment, root / "resnet18" / experiment)
    return root


def test_report_refuses_a_folder_without_runs(tmp_path, capsys):
    (tmp_path / "notes.md").write_text("mine")
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no rotnet runs" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.md"]


def test_report_never_overwrites_a_file_it_did_not_write(runs, tmp_path, capsys):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(runs, root)
    (root / "report.md").write_text("my own notes")
    assert main(["report", str(root)]) == 2
    assert "did not write" in capsys.readouterr().err and (root / "report.md").read_text() == "my own notes"
    (root / "report.md").unlink()
    assert main(["report", str(root)]) == 0
    assert main(["report", str(root)]) == 0  # its own files: rewritten freely
    assert "| rotation | resnet18 |" in (root / "report.md").read_text()


@pytest.mark.parametrize(
    "name", ["report.md", "results.json", "results.csv", pytest.param("plots/curves.png", marks=pytest.mark.plots)]
)
@pytest.mark.parametrize("command", ["report", "reproduce"])
def test_a_report_file_edited_since_it_was_written_is_never_overwritten(runs, tmp_path, capsys, fake_root, name,
                                                                        command):  # fmt: skip
    """Notes added to report.md (or any report file changed by hand) were overwritten by the next `rotnet report`,
    or by `reproduce` after hours of training: the marker named the files it wrote, not what they held. It now
    keeps each one's sha256 as written, and a file that differs is refused, as one it never wrote is."""
    import shutil

    from tests.helpers import TINY_PRESET

    root = tmp_path / "copy"
    shutil.copytree(runs, root)
    assert main(["report", str(root)]) == 0
    edited = (root / name).read_bytes() + b"\nmy notes\n"
    (root / name).write_bytes(edited)
    args = ["reproduce", "--preset", TINY_PRESET, "--runs-root", str(root), "--data-root", str(fake_root),
            "--no-download", "--experiments", "rotation"]  # fmt: skip
    before = sorted(root.rglob("*"))
    assert main(["report", str(root)] if command == "report" else args) == 2
    said = f"{root} holds {name} changed since rotnet report wrote it (edited by hand?); move it away or report"
    assert said in capsys.readouterr().err
    assert (root / name).read_bytes() == edited and sorted(root.rglob("*")) == before
    (root / name).unlink()  # moved away: the report is written again, and again freely
    assert main(["report", str(root)]) == 0 and main(["report", str(root)]) == 0


def test_a_report_marker_of_an_older_rotnet_still_marks_its_files(runs, tmp_path):
    """rotnet <= 0.6 wrote the marker as a list of names: its files are the report's, to rewrite."""
    import shutil

    from rotnet.layout import REPORT_MARKER

    root = tmp_path / "copy"
    shutil.copytree(runs, root)
    write_report(root)
    (root / REPORT_MARKER).write_text(json.dumps(["report.md", "results.json", "results.csv"]))
    (root / "report.md").write_text("an older report")
    write_report(root)
    assert "| rotation | resnet18 |" in (root / "report.md").read_text()


@pytest.mark.parametrize(
    "name, garbage",
    [
        ("result.json", "[1, 2]"),
        ("result.json", '{"test_acc": "high"}'),
        ("metrics.jsonl", 'not json\n{"epoch": 2}\n'),
        ("metrics.jsonl", "[1]\n"),
        ("config.json", "[]"),
        ("config.json", "\x00\x01binary"),
    ],
)
def test_garbage_files_mark_the_run_unreadable_and_the_report_goes_on(runs, tmp_path, name, garbage):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(runs, root)
    (root / "resnet18/rotation/seed0" / name).write_text(garbage)
    statuses = {r["experiment"]: r["status"] for r in collect(root)}
    assert statuses == {"rotation": "unreadable", "full-from-random": "finished"}
    write_report(root)
    rows = {(r["experiment"], r["arch"]): r for r in json.loads((root / "results.json").read_text())["rows"]}
    assert rows[("rotation", "resnet18")]["status"] == "seed 0 unreadable"
    assert rows[("full-from-random", "resnet18")]["n"] == 1
    provenance = (root / "report.md").read_text().split("## Provenance")[1]
    line = next(x for x in provenance.splitlines() if x.startswith("| resnet18/rotation/seed0 |"))
    assert "None" not in line, line  # what the record does not say is a dash, not Python's None
    assert "- resnet18/rotation/seed0: " in provenance


def test_garbage_example_file_does_not_stop_the_report(runs, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(runs, root)
    (root / "resnet18/rotation/seed0/examples.safetensors").write_bytes(b"garbage")
    write_report(root)
    rows = {
        r["experiment"]: r for r in json.loads((root / "results.json").read_text())["rows"] if r["arch"] == "resnet18"
    }
    assert rows["rotation"]["status"].startswith("seed 0 tampered: examples.safetensors differs")
    assert rows["rotation"]["n"] == 0 and rows["full-from-random"]["n"] == 1
    assert "| full-from-random |" in (root / "report.md").read_text()
    assert "- resnet18/rotation/seed0: no command read (tampered)" in (root / "report.md").read_text()


def test_a_presets_subset_runs_are_rows_naming_their_data(tiny_runs, tmp_path):
    """A reproduce whose preset sets train_per_class (the smoke preset) makes EXPERIMENT@Npc folders: they are the
    table's rows, named "cifar10, N per class", not the reference report's rows and not label-efficiency points."""

    fabricate(tiny_runs / "resnet18/rotation/seed0", tmp_path / "resnet18/rotation@2pc/seed0", train_per_class=2)
    (tmp_path / "reproduce.json").write_text(json.dumps({"runs": ["resnet18/rotation@2pc/seed0"]}))
    report = write_report(tmp_path).read_text()
    assert "| rotation | resnet18 | cifar10, 2 per class | — |" in report and "| ok |" in report
    assert "| full-from-random | resnet18 | cifar10 | 82.79 |" not in report and "Label efficiency" not in report


R18 = ["rotation", "layer4-from-rotation", "layer4-from-random", "full-from-rotation", "full-from-random"]


@pytest.mark.parametrize(
    ("log", "planned", "listed"),
    [
        # a label-efficiency plan: its rotation run and subset arms; the reference's transfer rows were "not run"
        (
            "label-efficiency.json",
            ["resnet18/rotation/seed0", "resnet18/full-from-rotation@2pc/seed0", "resnet18/full-from-random@2pc/seed0"],
            [("resnet18", "rotation")],
        ),
        ("reproduce.json", [f"resnet18/{e}/seed0" for e in R18], [("resnet18", e) for e in R18]),  # the paper plan
        (None, [], [("resnet18", e) for e in R18]),  # `train` runs, no plan: what is missing of their arch is said
        # a plan of ResNet34 beside a ResNet18 rotation run trained by hand: ResNet18's transfer rows were "not run"
        (
            "reproduce.json",
            ["resnet34/rotation/seed0", "resnet34/full-from-rotation/seed0"],
            [("resnet18", "rotation"), ("resnet34", "rotation"), ("resnet34", "full-from-rotation")],
        ),
    ],
)
def test_the_reference_rows_listed_are_those_run_or_planned_here(tiny_runs, tmp_path, log, planned, listed):
    fabricate(tiny_runs / "resnet18/rotation/seed0", tmp_path / "resnet18/rotation/seed0")
    if log:
        (tmp_path / log).write_text(json.dumps({"runs": planned}))
    report = write_report(tmp_path).read_text()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in report.splitlines() if line.startswith("|")]
    assert {(c[1], c[0]) for c in cells if c[2:3] == ["cifar10"]} == set(listed)  # (arch, experiment) of each row


def test_a_run_older_than_a_setting_shows_its_default_and_the_commits_that_resumed_it(tiny_runs, tmp_path):
    """config.json of a run started before rotnet had a key lacks it; the run used the key's default, so the report
    shows that, not a blank. Resumes name their commits. (Such a run predates manifests: it reads as unsealed.)"""
    import shutil

    folder = tmp_path / "resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", folder)
    record = json.loads((as_made_by_0_3(folder) / "config.json").read_text())
    for key in ("dataset", "image_size", "normalization"):
        del record["config"][key]
    record["resumes"] = [{"git_commit": "abcdef1" + "0" * 33}, {"git_commit": "1234567" + "0" * 33}]
    (folder / "config.json").write_text(json.dumps(record))
    report = write_report(tmp_path).read_text()
    assert "| imagenet | dataset's | reference constants | fp32 |" in report
    assert "; resumed by abcdef1, 1234567) |" in report
    assert "seed 0 unsealed (made before rotnet 0.4)" in report


def test_the_speed_shown_is_the_median_epochs_so_a_paused_epoch_does_not_drag_it(tiny_runs, tmp_path):
    """An epoch that spans a pause (a stopped process, a suspended machine) counts the pause in its seconds; the
    speed and epoch time shown are the median epoch's; a record without them (older rotnet) is skipped, not fatal."""
    import shutil

    folder = tmp_path / "resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", folder)
    first = json.loads((folder / "metrics.jsonl").read_text().splitlines()[0])
    speeds = ((1, 120.0, 400.0), (2, 118.0, 410.0), (3, 6.0, 8000.0))  # epoch 3 spans a pause
    lines = [first | {"epoch": e, "images_per_s": v, "seconds": s} for e, v, s in speeds]
    lines.append({k: v for k, v in first.items() if k not in ("images_per_s", "seconds")} | {"epoch": 4})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    fabricate(folder, tmp_path / "resnet18/rotation/seed1", test_acc=50.0, epochs=4)  # consistent again
    shutil.rmtree(folder)
    write_report(tmp_path)
    (run,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert run["images_per_s"] == 118.0 and run["epoch_seconds"] == 410.0


def test_the_pretraining_gain_pairs_seeds(tiny_runs, tmp_path):
    """From-rotation finished seeds 0 and 1, from-random only seed 0 (seed 1 failed or still trains): the gain is
    seed 0's difference, said to be seed 0's only; unpaired means would mix seed 1 into one side."""

    accuracies = {("full-from-rotation", 0): 50.0, ("full-from-rotation", 1): 60.0, ("full-from-random", 0): 45.0}
    for (experiment, seed), acc in accuracies.items():
        folder = tmp_path / f"resnet18/{experiment}/seed{seed}"
        fabricate(tiny_runs / "resnet18/rotation/seed0", folder, test_acc=acc, task="classification")
    report = write_report(tmp_path).read_text()
    rows = {(r["experiment"], r["arch"]): r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    row = rows[("full-from-rotation", "resnet18")]
    assert row["gain"] == 5.0 and row["gain_seeds"] == [0]
    assert row["reference_gain"] == pytest.approx(
        84.03 - 82.79
    )  # the reference report's own difference, to compare with
    assert "| +5.00 (seed 0 only; one seed: no interval; reference report +1.24) |" in report
    assert "| full-from-rotation | resnet18 | cifar10 | 50.00 (+5.00) | 60.00 |" in report  # each seed's, in words
    assert "| full-from-random | resnet18 | cifar10 | 45.00 | — |" in report
    import csv

    table = {r["experiment"]: r for r in csv.DictReader((tmp_path / "results.csv").open()) if r["arch"] == "resnet18"}
    assert {"seed0", "seed1", "gain_seed0", "gain_ci95_low"} <= set(table["full-from-rotation"])
    cells = table["full-from-rotation"]
    assert (cells["seed0"], cells["seed1"], cells["gain_seed0"], cells["gain_seed1"]) == ("50.0", "60.0", "5.0", "")
    assert cells["ours_std"] == "7.0711"  # two seeds, rounded for people; full-from-random has one, and no std:
    assert table["full-from-random"]["ours_std"] == "" and table["full-from-random"]["ours_mean"] == "45.0"


def test_a_plan_of_resnet18_lists_no_deeper_rows_as_not_run(runs, tmp_path):
    """The reference's ResNet34/50 rows are rows of the report only where those archs were run or planned."""
    import shutil

    shutil.copytree(runs, tmp_path, dirs_exist_ok=True)
    rows = json.loads((tmp_path / "results.json").read_text())["rows"] if write_report(tmp_path) else []
    assert {r["arch"] for r in rows} == {"resnet18"}
    assert {r["experiment"] for r in rows} >= {"rotation", "full-from-rotation"}  # the reference's, run or not


def test_a_single_seed_on_few_test_images_carries_its_interval_and_a_smoke_table_its_caveat(tiny_runs, tmp_path):
    """One seed's accuracy comes with its Wilson interval, a one-seed gain says why it has none, and a smoke table
    carries its preset's caveat."""
    accuracies = {"full-from-rotation": 50.0, "full-from-random": 37.5}
    for experiment, acc in accuracies.items():
        folder = tmp_path / f"resnet18/{experiment}/seed0"
        fabricate(tiny_runs / "resnet18/rotation/seed0", folder, test_acc=acc, task="classification")
        result = json.loads((folder / "result.json").read_text())
        k = round(acc * 16 / 100)  # 16 test images, as the tiny data has
        result["confusion"] = [[k, 16 - k], [0, 0]]
        result["class_names"] = ["a", "b"]
        (folder / "result.json").write_text(json.dumps(result))
        reseal(folder)
    (tmp_path / "reproduce.json").write_text(json.dumps({"preset": "smoke"}))
    report = write_report(tmp_path).read_text()
    rows = {r["experiment"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"] if r["n"]}
    lo, hi = rows["full-from-rotation"]["wilson95"]
    assert (round(lo, 1), round(hi, 1)) == (28.0, 72.0)  # 8 of 16
    assert "| 50.00 [28.0, 72.0] |" in report and "+12.50 (one seed: no interval; reference report +1.24)" in report
    assert "**Smoke preset: a check that everything runs. Its numbers mean little" in report
    from rotnet.report import summary

    said = summary(tmp_path)  # these runs are fabricated, not the smoke preset's: the caveat says so too
    assert "not a measurement of pretraining. Not every run is preset smoke's: resnet18/" in said


def test_reproduce_writes_a_report_with_every_row(reproduced):
    report = (reproduced / "report.md").read_text()
    for e in EXPERIMENTS:
        assert f"| {e} | resnet18 |" in report
    results = json.loads((reproduced / "results.json").read_text())
    rows = {(r["experiment"], r["arch"]): r for r in results["rows"]}
    for e in EXPERIMENTS:
        assert rows[(e, "resnet18")]["n"] == 2 and rows[(e, "resnet18")]["status"] == "ok"
    assert ("rotation", "resnet34") not in rows  # a ResNet18 plan: the reference's deeper rows are not its rows
    for png in ("curves", "seed_vs_rotnet", "confusion", "rotation_examples"):
        image = matplotlib.image.imread(reproduced / "plots" / f"{png}.png")
        assert image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 0.05  # a figure, not a blank
        assert f"plots/{png}.png" in report
    assert (reproduced / "results.csv").read_text().startswith("experiment,arch,data,reference")
    assert "## Provenance" in report and "differ from the official (warned)" in report


def test_report_marks_missing_and_partial_runs(reproduced, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(reproduced, root)
    shutil.rmtree(root / "resnet18/full-from-random/seed1")  # missing
    (root / "resnet18/layer4-from-random/seed1/result.json").unlink()  # partial: metrics but no result
    lines = (root / "resnet18/layer4-from-random/seed1/metrics.jsonl").read_text().splitlines()
    (root / "resnet18/layer4-from-random/seed1/metrics.jsonl").write_text(lines[0][:20])  # torn too
    (root / "resnet18/full-from-rotation/seed0/result.json").unlink()
    (root / "resnet18/full-from-rotation/seed0/failed.json").write_text('{"error": "non-finite loss"}')
    for folder in ("layer4-from-random/seed1", "full-from-rotation/seed0"):  # records as such runs leave them
        reseal(root / "resnet18" / folder)
    assert main(["report", str(root)]) == 0
    rows = {(r["experiment"], r["arch"]): r for r in json.loads((root / "results.json").read_text())["rows"]}
    assert rows[("full-from-random", "resnet18")]["status"] == "seed 1 not run"
    assert rows[("full-from-random", "resnet18")]["n"] == 1
    assert rows[("layer4-from-random", "resnet18")]["status"].startswith("seed 1 started")
    assert "seed 0 failed: non-finite loss" in rows[("full-from-rotation", "resnet18")]["status"]
    assert "| seed 1 not run |" in (root / "report.md").read_text()


@pytest.mark.parametrize("kept", [True, False])
def test_a_seed_an_earlier_plan_named_stays_not_run_after_a_later_plan(reproduced, fake_root, tmp_path, kept):
    """A first plan (seeds 0,1) whose seed 1 never ran, then a second plan on the same root (seed 0 alone): seed 1
    is still named "not run" (the report read the planned runs of the last plan only, so the row said "ok"). Its
    history is the real writer's; kept=False: a record from before plans kept their runs (no crash, last plan's)."""
    root = tmp_path / "copy"
    shutil.copytree(reproduced, root)
    shutil.rmtree(root / "resnet18/full-from-random/seed1")
    assert main(reproduce(root, fake_root, "--seeds", "0")) == 0
    log = json.loads((root / "reproduce.json").read_text())
    assert "resnet18/full-from-random/seed1" in log["earlier"][-1]["runs"]
    assert "resnet18/full-from-random/seed1" not in log["runs"]
    if not kept:
        for entry in log["earlier"]:
            entry.pop("runs", None)
        (root / "reproduce.json").write_text(json.dumps(log))
    assert main(["report", str(root)]) == 0
    rows = {(r["experiment"], r["arch"]): r for r in json.loads((root / "results.json").read_text())["rows"]}
    assert rows[("full-from-random", "resnet18")]["status"] == ("seed 1 not run" if kept else "ok")
    assert rows[("full-from-random", "resnet18")]["n"] == 1


def test_report_on_a_missing_folder_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "runs folder not found" in capsys.readouterr().err


@pytest.mark.parametrize("data", ["", "cifar100"])
def test_report_given_one_run_folder_names_its_runs_root(tiny_runs, tmp_path, capsys, data):
    """`rotnet report RUN` said the run "holds no rotnet runs"; it names the runs root above it, the data segment's
    level included (read from the run's record), and writes nothing."""
    root = tmp_path / "runs"
    run = root / data / "resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    if data:
        edit_json(
            run / "config.json", config=json.loads((run / "config.json").read_text())["config"] | {"dataset": data}
        )
    before = sorted(p.name for p in run.iterdir())
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rotnet: error: {run} is one run's folder; report its runs root: rotnet report {root}"]
    assert sorted(p.name for p in run.iterdir()) == before


@pytest.mark.parametrize("inside", ["checkpoints", "probe", "probe/deeper"])
def test_report_given_a_folder_inside_a_run_names_the_run_and_its_runs_root(tiny_runs, tmp_path, capsys, inside):
    """`rotnet report RUN/checkpoints` said the folder "holds no rotnet runs"; it names the run it lies in and the
    runs root to report, and writes nothing (layout.run_holding, as train's --runs-root inside a run)."""
    root = tmp_path / "runs"
    run = shutil.copytree(tiny_runs / "resnet18/rotation/seed0", root / "resnet18/rotation/seed0")
    (run / inside).mkdir(parents=True, exist_ok=True)
    before = sorted(run.rglob("*"))
    assert main(["report", str(run / inside)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    said = f"{run / inside} is a folder inside the run folder {run}; report its runs root: rotnet report {root}"
    assert err == [f"rotnet: error: {said}"]
    assert sorted(run.rglob("*")) == before


LOG_FIELDS = {  # each field of a plan's log a reader shows, and values of a kind rotnet never writes there
    **{k: ["x", float("nan"), True] for k in ("started", "finished", "wall_seconds")},
    "runs": ["resnet18/rotation/seed0", ["resnet18/rotation/seed0", 1], {}],  # not a list of run names
    **{k: [5, ["a"], None] for k in ("command", "git_commit", "preset", "rotnet_version", "torch", "device_name")},
}


@pytest.mark.parametrize("place", ["its own", "an earlier one"])
@pytest.mark.parametrize("field", list(LOG_FIELDS))
def test_a_plan_log_field_of_another_kind_reads_as_unknown_never_a_traceback(copy, place, field, capsys):
    """reproduce.json can be edited, or another tool's: `wall_seconds: "x"` was a TypeError in the report's
    provenance, `started: "x"` one in the log's merge. Every field is read through layout.plan_log and
    layout.invocations, which leave out what does not fit; the report still says what the runs say."""
    from rotnet.layout import invocations, plan_log

    good = {"command": "rotnet reproduce", "git_commit": "abc", "started": 1.0, "finished": 2.0, "wall_seconds": 1.0,
            "runs": ["resnet18/rotation/seed0"], "preset": "tiny", "rotnet_version": "0.7.0", "torch": "2",
            "device_name": "cpu"}  # fmt: skip
    for value in LOG_FIELDS[field]:
        entry = good | {field: value}
        log = entry if place == "its own" else good | {"started": 3.0, "earlier": [entry]}
        (copy / "reproduce.json").write_text(json.dumps(log))
        assert main(["report", str(copy)]) == 0, value
        assert "Traceback" not in capsys.readouterr().err
        read = plan_log(copy / "reproduce.json")
        first = invocations(read)[0]  # the entry that holds the value
        assert first[field] is None if field in first else place != "its own" or field not in read


@pytest.mark.parametrize(
    "preset, claimed, outcome",
    [
        ("quick", True, "refused"),  # the user's --preset names a protocol that made none of these runs
        ("paper", True, "refused"),  # nor the paper protocol: a tiny run must not be labeled the reference's
        ("TINY", True, "clean"),
        ("smoke", False, "noted"),  # reproduce.json's preset, but the runs were trained another way since
        ("TINY", False, "clean"),
    ],
)
def test_a_report_names_a_preset_only_for_the_runs_it_made(tiny_runs, tmp_path, capsys, preset, claimed, outcome):
    """`report --preset quick` on runs of 2 epochs and 80 images printed the quick preset's caveat ("6 rotation, 4
    transfer epochs on the full data") over them, and `--preset paper` titled them the reference's protocol."""
    from tests.helpers import TINY_PRESET

    preset = TINY_PRESET if preset == "TINY" else preset
    shutil.copytree(tiny_runs / "resnet18", tmp_path / "resnet18")  # a rotation run as the tiny preset makes it
    before = sorted(p.name for p in tmp_path.iterdir())
    if claimed:
        code = main(["report", str(tmp_path), "--preset", preset])
    else:
        (tmp_path / "reproduce.json").write_text(json.dumps({"preset": preset}))
        before, code = before + ["reproduce.json"], main(["report", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    if outcome == "refused":
        assert (
            code == 2
            and f"--preset {preset} did not make resnet18/rotation/seed0 (" in err
            and len(err.splitlines()) == 1
        ), err
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, not even the report's marker
        return
    assert code == 0, err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["preset"] == preset
    noted = f"Not every run is preset {preset}'s: resnet18/" in results["caveat"]
    assert noted == (outcome == "noted"), results["caveat"]
    assert noted == (f"Not every run is preset {preset}'s" in (tmp_path / "report.md").read_text())


@pytest.mark.parametrize("restarts, stopped", [(0, False), (2, False), (1, True)])
def test_a_transfer_run_whose_rotation_run_was_trained_again_says_so_and_still_verifies(
    tiny_five, tmp_path, fake_root, restarts, stopped, monkeypatch
):
    """`train rotation --restart --lr 0.01` beside finished transfer runs: the report showed the new rotation run
    and the transfers as one pipeline, without a word (the transfers had started from the run kept as seed0.old1),
    and `verify` of a transfer said "verify needs them" though the kept run holds its weights. Also while the new
    rotation run is unfinished (stopped after its first epoch): the report judged a source by its final weights only,
    so a transfer beside a partial rotation run read "ok"."""
    root = shutil.copytree(tiny_five, tmp_path / "runs")
    for lr in ("0.01", "0.02")[:restarts]:
        train = ("train", "rotation", "--restart", "--lr", lr)
        if stopped:
            assert partial(*train, root=root, data=fake_root, monkeypatch=monkeypatch) == 130
        else:
            assert cli(*train, root=root, data=fake_root) == 0
    write_report(root)
    rows = json.loads((root / "results.json").read_text())["rows"]
    status = {(r["experiment"], r["arch"]): r["status"] for r in rows}
    assert ("partial" in status[("rotation", "resnet18")]) == stopped
    said = "seed 0 started from rotation weights that its rotation run here no longer holds (trained again since)"
    for experiment in EXPERIMENTS:
        assert (said in status[(experiment, "resnet18")]) == (restarts > 0 and experiment.endswith("-from-rotation"))
    for experiment in ("layer4-from-rotation", "full-from-rotation"):
        run = root / "resnet18" / experiment / "seed0"
        assert main(["verify", str(run), "--data-root", str(fake_root), "--no-download", "--device", "cpu"]) == 0
        assert json.loads((run / "verify.json").read_text())["verdict"] == "verified"


def test_a_rotation_run_marked_failed_beside_its_result_still_holds_its_transfers_weights(tiny_five, tmp_path):
    """A plan that refused to reuse a finished rotation run marks it failed (failed.json beside its result); its
    weights are the ones its transfers started from, so no transfer is said to have started from others."""
    from rotnet.plan import mark_failed

    root = shutil.copytree(tiny_five, tmp_path / "runs")
    mark_failed(root / "resnet18/rotation/seed0", "its data changed since")
    write_report(root)
    rows = json.loads((root / "results.json").read_text())["rows"]
    assert not any("no longer holds" in r["status"] for r in rows), [r["status"] for r in rows]


def test_a_report_table_holds_every_cell_whatever_a_user_named(tiny_runs, tmp_path):
    """A run that failed on a folder named `my|photos` (reproduce records the error in its failed.json): the `|` in
    its status note ended the cell, shifting the note into a column of its own, as GitHub renders report.md."""
    from markdown_it import MarkdownIt

    from rotnet.plan import mark_failed

    runs = shutil.copytree(tiny_runs, tmp_path / "runs")
    mark_failed(runs / "resnet18/rotation/seed0", "cannot read /data/my|photos/cat.png")
    write_report(runs)
    tokens = MarkdownIt("commonmark").enable("table").parse((runs / "report.md").read_text())
    tables, cells, in_cell = [], [], False
    for t in tokens:
        if t.type == "thead_open":
            tables.append([])
        in_cell = t.type in ("th_open", "td_open") or (in_cell and t.type == "inline")
        if t.type == "inline" and in_cell:
            cells.append(t.content)
        elif t.type == "tr_close":
            tables[-1].append(cells)
            cells = []
    main = tables[0]
    assert all(len(row) == len(main[0]) for row in main), main
    assert any(row[0] == "rotation" and "my|photos" in row[-1] for row in main), main
