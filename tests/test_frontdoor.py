"""The newcomer's path: the Python API as the README shows it, loggers, export to a model hub, end-of-command
tables, and checkpoints that don't pile up."""

import json
import re
import shutil
from itertools import dropwhile, takewhile
from pathlib import Path

import pytest

from rotnet.cli import main
from rotnet.report import read_results
from tests.helpers import TINY_PRESET, cli, metrics, reseal

README = Path(__file__).parent.parent / "README.md"
RESULTS = README.parent / "docs/results"


def test_the_readme_python_example_runs(tmp_path, fake_root, monkeypatch, capsys):
    text = README.read_text()
    code = re.search(r"<!-- api-example.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROTNET_DATA", str(fake_root))
    exec(compile(code.replace('preset="smoke"', f'preset="{TINY_PRESET}"'), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "runs/smoke/resnet18/rotation/seed0" in out and re.search(r"predicted: (0|90|180|270)\n", out)


def test_load_backbone_is_plain_torchvision_with_the_runs_metadata(tiny_runs):
    import torchvision

    import rotnet

    model = rotnet.load_backbone(tiny_runs / "resnet18/rotation/seed0")
    assert type(model) is torchvision.models.ResNet and not model.training and model.fc.out_features == 4
    meta = rotnet.metadata(tiny_runs / "resnet18/rotation/seed0/model.safetensors")
    assert meta["arch"] == "resnet18" and meta["stem"] == "imagenet" and meta["task"] == "rotation"
    assert meta["normalization"] == {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.201]}
    assert meta["class_names"] == ["0", "90", "180", "270"] and meta["image_size"] == 32


@pytest.mark.parametrize("how", ["folder", "weights file"])
@pytest.mark.parametrize("reader", ["load_backbone", "metadata"])
def test_weights_inside_a_run_folder_are_read_only_through_its_record(tiny_runs, tmp_path, how, reader):
    """`load_backbone("RUN/model.safetensors")` skipped the record check that `load_backbone("RUN")` made, and
    `metadata` made none: a run whose result was edited loaded either way by its file's name."""
    import rotnet
    from rotnet.errors import RotnetError

    run = tmp_path / "resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    target = run if how == "folder" else run / "model.safetensors"
    getattr(rotnet, reader)(target)  # a sealed run loads
    result = json.loads((run / "result.json").read_text())
    (run / "result.json").write_text(json.dumps(result | {"test_acc": 99.0}))
    with pytest.raises(RotnetError, match="its record is tampered"):
        getattr(rotnet, reader)(target)
    loose = shutil.copy(run / "model.safetensors", tmp_path / "loose.safetensors")
    getattr(rotnet, reader)(loose)  # a weights file outside any run folder: its own checksum is what there is


def test_tensorboard_and_csv_hold_the_logged_scalars(tmp_path, fake_root, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import rotnet.loop

    monkeypatch.setattr(rotnet.loop, "SYNC_EVERY", 4)  # the step loss is logged at each flag read: steps 4 and 8
    args = ["--epochs", "2", "--batch-size", "20", "--set", "eval_batch_size=64"]  # 4 steps an epoch
    args += ["--logger", "tensorboard", "--logger", "csv", "--runs-root", str(tmp_path), "--data-root", str(fake_root)]
    assert main(["train", "rotation", *args]) == 0
    folder = tmp_path / "resnet18/rotation/seed0"
    history = metrics(folder)
    events = EventAccumulator(str(folder / "tensorboard")).Reload()
    for key in ("train_loss", "train_acc", "test_acc", "lr", "images_per_s"):
        logged = [(e.step, e.value) for e in events.Scalars(f"epoch/{key}")]
        assert logged == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in history], key
    assert [e.step for e in events.Scalars("step/loss")] == [4, 8]
    rows = (folder / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,lr,train_loss") and len(rows) == 1 + len(history)


def test_loggers_asked_of_a_finished_run_are_written_from_its_record(tiny_runs, tmp_path, fake_root, capsys):
    """`--logger tensorboard` on a finished run did nothing, silently."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    folder = tmp_path / "resnet18/rotation/seed0"
    assert cli("train", "rotation", "--logger", "tensorboard", "--logger", "csv", root=tmp_path, data=fake_root) == 0
    assert (
        "already finished; reusing it; wrote its tensorboard and csv logs from metrics.jsonl" in capsys.readouterr().out
    )
    history = metrics(folder)
    events = EventAccumulator(str(folder / "tensorboard")).Reload()
    logged = [(e.step, e.value) for e in events.Scalars("epoch/test_acc")]
    assert logged == [(r["epoch"], pytest.approx(r["test_acc"], rel=1e-6)) for r in history]
    assert len((folder / "metrics.csv").read_text().splitlines()) == 1 + len(history)
    assert cli("train", "rotation", "--logger", "csv", root=tmp_path, data=fake_root) == 0  # once, not again
    assert capsys.readouterr().out.rstrip().endswith("already finished; reusing it")


def test_wandb_asked_of_a_finished_run_reuses_it_and_says_nothing_was_sent(
    tiny_runs, tmp_path, fake_root, monkeypatch, capsys
):
    """A plan that reuses a finished run failed it for `--logger wandb` (exit 2), though nothing needed sending."""
    import rotnet.lifecycle

    monkeypatch.setattr(rotnet.lifecycle, "require_logger", lambda name: None)  # as where wandb is installed
    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    assert cli("train", "rotation", "--logger", "wandb", root=tmp_path, data=fake_root) == 0
    assert "reusing it; not sent to W&B, which takes a run while it trains" in capsys.readouterr().out


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_a_missing_logger_package_is_named_before_the_data_loads(tmp_path, fake_root, monkeypatch, capsys, logger):
    """A missing wandb or tensorboard was found only after the data loaded, leaving a started run folder."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == logger else real(name, *a))
    assert cli("train", "rotation", "--logger", logger, root=tmp_path / "runs", data=fake_root) == 2
    captured = capsys.readouterr()
    assert f"pip install 'rotnet[{logger}]'" in captured.err and captured.err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_the_csv_holds_every_epoch_record_and_every_column(tmp_path, fake_root):
    """metrics.csv is metrics.jsonl as a table: a column that first appears after epoch 1 (test accuracy with
    eval_every 2) is there, and each epoch has one row (the file is rewritten from the run's history, so a resume
    from an earlier checkpoint repeats none)."""
    import csv

    args = ["--epochs", "2", "--set", "eval_every=2", "--logger", "csv"]
    assert main(["train", "rotation", *args, "--runs-root", str(tmp_path), "--data-root", str(fake_root)]) == 0
    folder = tmp_path / "resnet18/rotation/seed0"
    history = metrics(folder)
    assert "test_acc" not in history[0] or history[0]["test_acc"] is None  # the case this test is about
    rows = list(csv.DictReader((folder / "metrics.csv").open()))
    assert len(rows) == len(history)
    for row, record in zip(rows, history, strict=True):
        numbers = {k: v for k, v in record.items() if isinstance(v, int | float)}
        assert {k: float(row[k]) for k in numbers} == pytest.approx(numbers) and "test_acc" in row


def test_report_and_export_do_not_load_torchvision(tiny_runs, tmp_path):
    """dispatch imported torchvision for every command: 2 s of a report's start, for nothing it draws."""
    import shutil
    import subprocess
    import sys

    shutil.copytree(tiny_runs, tmp_path / "runs")
    code = (
        "import sys; from rotnet.cli import main; "
        f"rcs = main(['report', {str(tmp_path / 'runs')!r}]), "
        f"main(['export', {str(tmp_path / 'runs/resnet18/rotation/seed0')!r}, {str(tmp_path / 'hub')!r}]); "
        "print(rcs, 'torchvision' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.splitlines()[-1] == "(0, 0) False", done.stdout + done.stderr


def test_export_writes_a_model_card_and_files_that_load_in_torchvision(tiny_runs, tmp_path, capsys):
    out = tmp_path / "hub"
    assert main(["export", str(tiny_runs / "resnet18/rotation/seed0"), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.md", "config.json", "metrics.jsonl", "model.safetensors", "result.json"]
    )
    card = (out / "README.md").read_text()
    front = card.split("---\n")[1]
    assert "library_name: pytorch" in front and "- cifar10" in front and "type: accuracy" in front
    acc = json.loads((out / "result.json").read_text())["test_acc"]
    assert f"value: {acc:.2f}" in front and "rotnet train rotation" in card
    snippet = card.split("```python\n")[1].split("```")[0]
    env = {}
    import os

    cwd = os.getcwd()
    os.chdir(out)
    try:
        exec(snippet, env)  # the card's own loading code, with plain torchvision and safetensors
    finally:
        os.chdir(cwd)
    assert env["model"].fc.out_features == 4
    assert main(["export", str(tiny_runs / "resnet18/rotation/seed0"), str(out)]) == 2  # never over a folder


def test_the_model_card_states_the_images_used_imports_only_what_it_uses_and_links_nowhere_false(
    tiny_runs, tmp_path, fake_root
):
    """The card said "on cifar10, 2 epochs" for a run on 2,000 of 50,000 images, imported safe_open without using
    it, and linked to a PyPI page rotnet does not have."""
    import ast

    assert cli("train", "rotation", "--train-per-class", "3", root=tmp_path / "runs", data=fake_root) == 0
    out = tmp_path / "hub"
    assert main(["export", str(tmp_path / "runs/resnet18/rotation@3pc/seed0"), str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "on 30 of the 80 training images of `cifar10`" in card
    snippet = card.split("```python\n")[1].split("```")[0]
    tree = ast.parse(snippet)
    imported = {
        a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names
    }
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert imported <= used, imported - used
    assert "](http" not in card  # no link: nothing to point at that is known to exist
    full = tmp_path / "hub2"
    assert main(["export", str(tiny_runs / "resnet18/rotation/seed0"), str(full)]) == 0
    assert "on the 80 training images of `cifar10`" in (full / "README.md").read_text()


@pytest.mark.parametrize("garbage", ["[1, 2]", '{"test_acc": "high"}'])
def test_export_of_a_run_with_a_garbage_result_is_one_line(tiny_runs, tmp_path, capsys, garbage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    (run / "result.json").write_text(garbage)
    assert main(["export", str(run), str(tmp_path / "hub")]) == 2
    err = capsys.readouterr().err
    assert "record is tampered: result.json differs from what rotnet wrote" in err and not (tmp_path / "hub").exists()
    reseal(run)  # past the seal (a forger's copy): still one line, and nothing exported
    assert main(["export", str(run), str(tmp_path / "hub")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inconsistent: result.json" in err and not (tmp_path / "hub").exists()


@pytest.mark.parametrize(
    "field", [{"test_images": "many"}, {"test_images": [1]}, {"test_images": {"n": 1}}, {"class_names": 7}]
)
def test_export_of_a_resealed_non_numeric_field_is_one_line_and_writes_nothing(tiny_runs, tmp_path, capsys, field):
    """`int(result["test_images"])` raised ValueError after the files were copied: a traceback and half an export."""
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    result = json.loads((run / "result.json").read_text()) | field
    (run / "result.json").write_text(json.dumps(result))
    reseal(run)
    assert main(["export", str(run), str(tmp_path / "out" / "hub")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rotnet: error:") and not (tmp_path / "out").exists()


def test_epoch_end_checkpoints_wait_for_the_interval(tmp_path, fake_root, monkeypatch):
    from rotnet.manifest import Seal

    saved = []
    real = Seal.write

    def spy(self, name, data):
        if name.startswith("checkpoints/"):
            saved.append((int(name[13:17]), int(name[19:25])))
        return real(self, name, data)

    monkeypatch.setattr(Seal, "write", spy)
    assert cli("train", "rotation", root=tmp_path / "a", data=fake_root) == 0  # 2 epochs in under 10 minutes
    assert saved == [] and len(metrics(tmp_path / "a/resnet18/rotation/seed0")) == 2
    assert not (tmp_path / "a/resnet18/rotation/seed0/checkpoints").exists()  # a finished run keeps its weights only
    assert cli("train", "rotation", "--checkpoint-minutes", "0", root=tmp_path / "b", data=fake_root) == 0
    assert saved == [(1, 0)]  # the last epoch's would be pruned at once: it is not written
    saved.clear()
    assert cli("train", "rotation", "--keep-checkpoints", "1", root=tmp_path / "c", data=fake_root) == 0
    assert saved == [(2, 0)] and len(list((tmp_path / "c/resnet18/rotation/seed0/checkpoints").iterdir())) == 1


def test_reproduce_ends_with_the_table_and_where_things_went(tiny_runs, tmp_path, fake_root, capsys):
    import shutil

    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    args = ["reproduce", "--preset", TINY_PRESET, "--runs-root", str(tmp_path), "--data-root", str(fake_root)]
    assert main([*args, "--no-download", "--experiments", "rotation"]) == 0  # one run: one job
    out = capsys.readouterr().out
    assert "| rotation | resnet18 | cifar10 |" in out and f"report: {tmp_path / 'report.md'}" in out
    assert "after 2 epochs" not in out  # reused, not retrained


def readme_table(heading: str) -> tuple[list[str], dict[str, list[str]]]:
    """The first markdown table after a README heading: its header, and first cell -> the other cells."""
    after = README.read_text().split(f"\n{heading}\n", 1)[1].splitlines()
    table = takewhile(lambda line: line.startswith("|"), dropwhile(lambda line: not line.startswith("|"), after))
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    return cells[0][1:], {row[0]: row[1:] for row in cells[2:]}


@pytest.mark.parametrize(
    "heading, folder, preset",
    [
        ("### The paper protocol on this machine's CPU (2 cores, fp32)", "paper-cpu", "paper"),
        ("### Quick preset on this machine's CPU (2 cores, fp32)", "quick-cpu", "quick"),
    ],
)
def test_the_readmes_results_tables_are_the_committed_reports_numbers(heading, folder, preset):
    """Numbers shown in the README come from the committed report of the protocol they claim (the paper table:
    every row finished at the reference report's epochs): the mean, ± the std where there are several seeds, each seed's
    value and the paired gain where the table shows them. A run made before sealed records is still counted."""
    results = read_results(RESULTS / folder / "results.json")  # committed by an older report: old row keys
    assert results["preset"] == preset
    rows = {
        r["experiment"]: r for r in results["rows"] if r["arch"] == "resnet18" and r.get("data", "cifar10") == "cifar10"
    }
    if preset == "paper":
        assert len(rows) == 5 and all(r["n"] and r["epochs"] == str(r["reference_epochs"]) for r in rows.values())
    header, table = readme_table(heading)
    assert set(table) == set(rows) - {e for e, r in rows.items() if r["ours_mean"] is None}
    for experiment, cells in table.items():
        row = rows[experiment]
        assert all(
            note == "ok" or note.endswith("unsealed (made before rotnet 0.4)") for note in row["status"].split("; ")
        )
        ours = f"{row['ours_mean']:.2f}" + (f" ± {row['ours_std']:.2f}" if row["n"] > 1 else "")
        assert cells[0] == f"{row['reference']:.2f}" and cells[1] == ours, (cells, ours)
        shown = dict(zip(header, cells, strict=True))
        if "each seed" in shown:
            values = [row["by_seed"][k] for k in sorted(row["by_seed"], key=int)]
            assert shown["each seed"] == " / ".join(f"{v:.2f}" for v in values)
        if row.get("gain") is not None and "pretraining gain, 95% interval" in shown:
            lo, hi = row["gain_ci95"]
            assert shown["pretraining gain, 95% interval"] == f"{row['gain']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


WITH_RECORDS = ("cross-dataset-cpu", "paper-cpu")  # the committed results whose run records are committed beside them
ROW_FACTS = ("experiment", "arch", "data", "n", "epochs", "reference", "ours_mean", "difference", "gain")
ROW_FACTS += ("by_seed", "gain_ci95")  # not written by reports before 0.4


@pytest.mark.parametrize("name", WITH_RECORDS)
def test_each_committed_results_json_follows_from_its_committed_run_records(name, tmp_path):
    """The README test ties the README to results.json; this ties results.json to the records beside it: `rotnet
    report` of a copy of runs/ gives the same rows (facts an older report did not write are not compared, nor the
    status, whose notes later versions added), so no committed number can stand apart from what its runs recorded."""
    with_records = {p.parent.name for p in RESULTS.glob("*/results.json") if (p.parent / "runs").is_dir()}
    assert with_records == set(WITH_RECORDS)  # a new folder with records is checked too, once it is named here
    folder = RESULTS / name
    root = tmp_path / "root"
    shutil.copytree(folder / "runs", root)
    shutil.copy(folder / "reproduce.json", root)
    committed = read_results(folder / "results.json")
    assert main(["report", str(root), "--preset", committed["preset"]]) == 0
    again = json.loads((root / "results.json").read_text())

    def key(r: dict) -> tuple:
        return r["experiment"], r["arch"], r.get("data")

    assert sorted(map(key, again["rows"])) == sorted(map(key, committed["rows"]))
    rows = {key(r): r for r in again["rows"]}
    for row in committed["rows"]:
        facts = [k for k in ROW_FACTS if k in row]
        assert {k: row[k] for k in facts} == {k: rows[key(row)][k] for k in facts}, key(row)


def test_a_run_says_its_plan_and_an_estimate_before_its_first_epoch(tmp_path, fake_root, capsys):
    """`rotnet train rotation` with the paper preset started 45 epochs without a word about what it would do."""
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 0  # 2 epochs of 80 images, batch 32
    lines = capsys.readouterr().out.splitlines()
    plan = f"{tmp_path / 'resnet18/rotation/seed0'}: 2 epochs (2 to go) of 80 images (3 steps of 32), tested on 16"
    assert lines[0].startswith(plan)
    estimate = r"resnet18 rotation: about \d+ s of training left at \d+ img/s \(timed over 3 steps.*"
    assert re.fullmatch(estimate, lines[1])
    assert lines[2].startswith("resnet18 rotation epoch 1/2")


def test_ci_runs_exactly_the_readmes_test_command():
    """CI ran lint first, so a lint failure meant the README's test command never ran; and the README's prose named
    "pytest options" before the command, which read as the command."""
    text = README.read_text()
    block = text.split("Run the tests", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].strip()
    assert "pytest" not in text.split("Run the tests", 1)[0].split("## Quick start", 1)[1]
    ci = (README.parent / ".ci/run").read_text().splitlines()
    install = next(i for i, line in enumerate(ci) if "pip install" in line)
    steps = [line for line in ci[install + 1 :] if line and not line.startswith(("export ", "#"))]
    assert steps[0] == block


def test_the_readme_is_a_page_a_user_plans_from_and_links_every_doc_once():
    """715 lines for users, developers and auditors at once; now the rest lives in docs/, each page linked from the
    README, every link resolving, and "seed" means a random seed only (the report is the reference report)."""
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    for link in links:
        assert (README.parent / link).exists(), link
    pages = {p.relative_to(README.parent).as_posix() for p in (README.parent / "docs").glob("*.md")}
    assert pages <= set(links), pages - set(links)
    assert all(links.count(p) == 1 for p in pages), [p for p in pages if links.count(p) != 1]
    for page in [README, *(README.parent / "docs").glob("*.md")]:
        words = page.read_text()
        assert "seed report" not in words and "the seed's" not in words, page
        for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", words):
            assert (page.parent / link).exists(), (page, link)


def test_the_quick_start_commands_run(tmp_path, fake_root, monkeypatch, capsys):
    """Each command of the quick-start block parses and resolves its plan; the smoke one runs to its table (on the
    tiny data: a few seconds), the hour-long ones are planned, not trained."""
    import shlex

    from rotnet.experiments import Protocol, load_preset, plan

    block = README.read_text().split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["rotnet", "reproduce"]] * 3
    for command in commands:
        preset = command[command.index("--preset") + 1] if "--preset" in command else "paper"
        assert load_preset(preset) and plan(["resnet18"], [0], []) and Protocol(preset).resolve("rotation")
    monkeypatch.setenv("ROTNET_DATA", str(fake_root))
    smoke = [*commands[0][1:], "--runs-root", str(tmp_path), "--no-download"]
    assert main(smoke) == 0
    out = capsys.readouterr().out
    assert "| full-from-rotation | resnet18 | cifar10, 200 per class |" in out
    assert "Smoke preset: a check that everything runs" in out
