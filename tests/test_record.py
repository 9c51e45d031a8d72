"""A run is its sealed record: every file listed with its sha256 in manifest.json, and every reader (resume, reuse,
verify, report, export, probe, load_backbone) refuses or flags what does not match, what is missing, and a record
that disagrees with itself or with where it sits."""

import contextlib
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from rotnet.cli import main
from rotnet.errors import RotnetError
from rotnet.record import inspect, open_run
from tests.helpers import RUN, TINY, as_made_by_0_3, cli, drop_keys, edit_json, reseal


def test_a_finished_run_is_sealed_and_lists_every_file_it_wrote(tiny_runs):
    folder = tiny_runs / RUN
    listed = json.loads((folder / "manifest.json").read_text())["files"]
    assert set(listed) == {
        "config.json",
        "metrics.jsonl",
        "result.json",
        "model.safetensors",
        "examples.safetensors",
    } | {f"checkpoints/{p.name}" for p in (folder / "checkpoints").iterdir()}
    assert inspect(folder).status == "sealed"


def test_an_edited_result_is_tampered_in_the_report_and_refused_by_every_reader(copy, fake_root, capsys):
    folder = copy / RUN
    edit_json(folder / "result.json", test_acc=99.9)
    assert inspect(folder).status == "tampered"
    assert main(["report", str(copy)]) == 0
    row = next(r for r in json.loads((copy / "results.json").read_text())["rows"] if r["experiment"] == "rotation")
    assert row["ours_mean"] is None and "tampered" in row["status"] and "ok" not in row["status"]
    capsys.readouterr()
    assert main(["export", str(folder), str(copy / "out")]) == 2
    assert "tampered" in capsys.readouterr().err and not (copy / "out").exists()
    with pytest.raises(RotnetError, match="tampered"):
        import rotnet

        rotnet.load_backbone(folder)
    # reproduce's reuse and a transfer run's source
    assert cli("train", "rotation", root=copy, data=fake_root) == 2
    assert "record is tampered: result.json differs" in capsys.readouterr().err
    assert cli("train", "layer4-from-rotation", root=copy, data=fake_root) == 2
    assert "tampered" in capsys.readouterr().err


@pytest.mark.parametrize(
    "confusion",
    [
        [[1, 2], [3]],
        "12",
        [[1, "x"], [0, 1]],
        [[-1, 0], [0, 5]],
        [[True, 0], [0, 1]],
        [[9, 0, 0], [0, 9, 0], [0, 0, 9]],
    ],
)
def test_a_malformed_confusion_matrix_is_inconsistent_not_a_report_traceback(copy, capsys, confusion):
    """A resealed result.json whose confusion is not a matrix of counts is inconsistent, and `rotnet report` ends
    well."""
    folder = copy / RUN
    edit_json(folder / "result.json", confusion=confusion)
    reseal(folder)
    assert inspect(folder).status == "inconsistent"
    assert main(["report", str(copy)]) == 0
    row = next(r for r in json.loads((copy / "results.json").read_text())["rows"] if r["experiment"] == "rotation")
    assert "inconsistent" in row["status"]


def test_a_confusion_matrix_must_give_the_accuracy_it_stands_beside(copy):
    folder = copy / RUN
    m = json.loads((folder / "result.json").read_text())["confusion"]
    m[0][0], m[0][1] = m[0][0] + 1, m[0][1] - 1 if m[0][1] else m[0][1]  # one more right answer, or one more image
    edit_json(folder / "result.json", confusion=m)
    reseal(folder)
    seen = inspect(folder)
    assert seen.status == "inconsistent" and "confusion gives test_acc" in seen.problems[0]


def test_an_edited_result_resealed_still_disagrees_with_its_metrics(copy):
    """A forger who recomputes the manifest: the record must still agree with itself."""
    folder = copy / RUN
    edit_json(folder / "result.json", test_acc=99.9)
    reseal(folder)
    seen = inspect(folder)
    assert seen.status == "inconsistent" and "test_acc 99.9" in seen.problems[0]


@pytest.mark.parametrize(
    "deleted, counted",
    [
        (("model.safetensors",), True),  # a committed record: its numbers stand on config, metrics and result
        (("examples.safetensors",), True),
        (("model.safetensors", "examples.safetensors"), True),
        (("result.json",), False),  # a number's own file: the run reads as unfinished, so it is not counted
        (("metrics.jsonl",), False),  # (without config.json a folder is no run at all)
        (("manifest.json",), False),  # the seal: nothing vouches for the record any more
        (("manifest.json", "model.safetensors"), False),
    ],
)
def test_a_deleted_file_is_incomplete_and_counted_only_when_the_record_is_whole(copy, deleted, counted):
    """A run without its weights (results committed as records) still counts in the report, marked "record only";
    one without a record file or its manifest does not. Every command that needs the files refuses either."""
    folder = copy / RUN
    for name in deleted:
        (folder / name).unlink()
    assert inspect(folder).status in ("incomplete", "inconsistent")
    assert main(["report", str(copy)]) == 0
    row = next(r for r in json.loads((copy / "results.json").read_text())["rows"] if r["experiment"] == "rotation")
    if counted:
        assert row["n"] == 1 and row["ours_mean"] is not None
        assert row["status"] == f"seed 0 record only (no {', '.join(sorted(deleted))})"
    else:
        assert row["ours_mean"] is None and "ok" not in row["status"]
    said = "(a record kept without" if counted else "missing|incomplete|inconsistent|tampered"
    with pytest.raises(RotnetError, match=re.escape(said) if counted else said):
        open_run(folder, "reuse", need=("model.safetensors",))


def test_a_file_added_under_the_records_name_is_caught(copy):
    folder = copy / RUN
    (folder / "checkpoints" / "e0009-s000000.safetensors").write_bytes(b"planted")
    seen = inspect(folder)
    assert seen.status == "tampered" and "not in manifest.json" in seen.problems[0]


def test_a_record_in_another_runs_folder_is_inconsistent(copy):
    shutil.move(copy / RUN, copy / "resnet18/rotation/seed1")
    seen = inspect(copy / "resnet18/rotation/seed1")
    assert seen.status == "inconsistent" and "seed" in seen.problems[0]


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("resnet18/rotation/seed1", "seed"),
        ("resnet34/rotation/seed0", "arch"),
        ("resnet18/layer4-from-rotation/seed0", "experiment"),
        ("resnet18/rotation@20pc/seed0", "train_per_class"),  # a subset run's folder
        ("stl10/resnet18/rotation/seed0", "data"),  # another data folder of the same runs root
        ("cifar100-64px/resnet18/rotation/seed0", "data"),
    ],
)
def test_a_record_moved_to_where_another_run_belongs_is_inconsistent_and_not_counted(copy, where, said):
    """Every part of a run folder's place (data, arch, experiment and size, seed) is checked against its config.json:
    a CIFAR-10 run copied under `stl10/` or `rotation@20pc/` is not counted as that run."""
    from rotnet.report import collect

    shutil.move(copy / RUN, copy / where)
    found = {str(r["folder"].relative_to(copy)): r for r in collect(copy)}
    assert found[where]["status"] == "inconsistent" and f"says {said}" in found[where]["error"]


BAD = ["x", [1], None, -1]
RESULT_KEYS = ["test_acc", "epochs", "seed", "task", "train_seconds", "images_per_s", "test_images", "train_images",
               "world_size", "class_names", "dataset", "arch"]  # fmt: skip
CONFIG_KEYS = ["epochs", "lr", "batch_size", "stem", "dataset", "pretrain_dataset", "image_size", "train_per_class",
               "task", "normalization", "arch", "seed"]  # fmt: skip


def resealed_with(folder, name, key, value):
    record = json.loads((folder / name).read_text())
    (record["config"] if name == "config.json" else record)[key] = value
    (folder / name).write_text(json.dumps(record))
    reseal(folder)


@pytest.mark.parametrize("value", BAD, ids=repr)
@pytest.mark.parametrize(
    ("name", "key"), [("result.json", k) for k in RESULT_KEYS] + [("config.json", k) for k in CONFIG_KEYS]
)
def test_a_resealed_field_of_the_wrong_kind_is_inconsistent_never_a_readers_traceback(copy, name, key, value):
    """A forger can always reseal (the manifest is not a signature): a field the report formats, of the wrong kind,
    passed the checks and ended in a traceback (9 of 74 such edits before). The record's schema (schema.RESULT_FIELDS,
    a configuration rotnet could have run) says what each field must be; a record that passes it is one every
    reader can use."""
    folder = copy / RUN
    before = json.loads((folder / name).read_text())
    if (before["config"] if name == "config.json" else before).get(key) == value:
        pytest.skip("the record holds this value")
    resealed_with(folder, name, key, value)
    seen = inspect(folder)
    assert seen.status == "inconsistent" and key in seen.problems[0], seen


def test_a_report_of_resealed_wrong_fields_counts_none_of_them_and_ends_well(tiny_five, tmp_path, capsys):
    """The whole report (tables, sections, figures) over runs whose resealed fields are of the wrong kind."""
    from rotnet.cli import main

    root = shutil.copytree(tiny_five, tmp_path / "runs")
    resealed_with(root / "resnet18/rotation/seed0", "result.json", "test_images", "x")
    resealed_with(root / "resnet18/layer4-from-rotation/seed0", "config.json", "stem", [1])
    resealed_with(root / "resnet18/full-from-random/seed0", "result.json", "task", "rotation")
    edit_json(root / "resnet18/layer4-from-random/seed0/config.json", config={"stem": [1], "epochs": "x"})  # unsealed
    assert main(["report", str(root)]) == 0
    rows = {r["experiment"]: r for r in json.loads((root / "results.json").read_text())["rows"]}
    assert rows["rotation"]["n"] == 0 and rows["layer4-from-random"]["n"] == 0 and rows["full-from-rotation"]["n"] == 1
    assert "Traceback" not in capsys.readouterr().err


def test_an_edited_manifest_is_tampered(copy):
    path = copy / RUN / "manifest.json"
    doc = json.loads(path.read_text())
    doc["files"]["result.json"] = "0" * 64
    path.write_text(json.dumps(doc))
    assert inspect(copy / RUN).status == "tampered"


def test_an_unsealed_record_of_an_older_rotnet_is_read_but_still_checked_against_itself(copy):
    folder = as_made_by_0_3(copy / RUN)
    assert inspect(folder).status == "unsealed"
    edit_json(folder / "result.json", test_acc=99.9)
    assert inspect(folder).status == "inconsistent"


def test_an_unsealed_records_schedule_must_be_the_one_it_finished(copy, capsys):
    """An unsealed record whose config.json epochs disagree with the epochs its result.json says it trained is
    inconsistent."""
    folder = as_made_by_0_3(copy / RUN)
    record = json.loads((folder / "config.json").read_text())
    record["config"]["epochs"] -= 1
    (folder / "config.json").write_text(json.dumps(record))
    seen = inspect(folder)
    assert seen.status == "inconsistent" and "epochs, config.json" in seen.problems[0]
    assert main(["report", str(copy)]) == 0
    row = next(r for r in json.loads((copy / "results.json").read_text())["rows"] if r["experiment"] == "rotation")
    assert row["ours_mean"] is None and "inconsistent" in row["status"]


def test_a_record_that_predates_a_key_reads_as_the_runs_before_it(copy):
    """0.1 records lack dataset, image_size, normalization and pretrain_dataset (and all before 0.5 lack kernels):
    they meant CIFAR-10 at 32 px with the reference's normalization and native kernels, which config.ADDED says
    explicitly (today's defaults are not consulted)."""
    import rotnet.config
    from rotnet.config import config_diff, from_dict, with_defaults
    from rotnet.protocol import resolve

    record = json.loads((copy / RUN / "config.json").read_text())["config"]
    old = {k: v for k, v in record.items() if k not in rotnet.config.ADDED}
    with pytest.raises(RotnetError, match="does not record dataset, image_size, kernels, normalization, pretrain_d"):
        from_dict(old, "config.json")
    assert from_dict(with_defaults(old), "config.json") == from_dict(record, "config.json")
    assert config_diff(old, resolve("rotation", epochs=2, batch_size=32, eval_batch_size=64).to_dict()) == []


@pytest.mark.parametrize(
    ("edit", "status"),
    [
        (drop_keys(), "incomplete"),  # the seal alone deleted
        (drop_keys("stream"), "incomplete"),  # and the stream contract: config.json still names its (sealing) version
        (drop_keys("stream", "cpu"), "incomplete"),
        (drop_keys("stream", "cpu", "rotnet_version"), "incomplete"),  # no version: no rotnet wrote it
        (drop_keys("stream", "cpu", version="0.10.0"), "incomplete"),  # versions compare as numbers
        (drop_keys("stream", version="0.3.0"), "incomplete"),  # the CPU is recorded from 0.4 only
        (drop_keys("stream", "cpu", version="0.3.0"), "unsealed"),  # as rotnet 0.3 wrote it
    ],
)
def test_a_record_that_says_a_sealing_rotnet_made_it_is_never_read_as_unsealed(copy, edit, status):
    """A record that says a sealing rotnet (0.4 on) made it, with its manifest deleted, is never read as unsealed: an
    edit after that is still seen."""
    folder = copy / RUN
    (folder / "manifest.json").unlink()
    edit(folder)
    assert inspect(folder).status == status
    edit_json(folder / "result.json", test_acc=100.0)
    assert inspect(folder).status != "unsealed"  # the edit is seen: missing seal or inconsistent
    assert main(["report", str(copy)]) == 0
    row = next(r for r in json.loads((copy / "results.json").read_text())["rows"] if r["experiment"] == "rotation")
    assert row["ours_mean"] is None


OPENED: list[str] = []
COUNTING = [False]


WALKED: list[str] = [""]  # the folder the file layer's descriptor walk stands in (rotnet.files.open_dir)


def _count_opens(event: str, args: tuple) -> None:
    """Record each opened path; a name opened relative to a folder descriptor (the file layer opens one folder at a
    time with dir_fd, which the audit event does not carry) is joined to the folder the walk reached."""
    if not (COUNTING[0] and event == "open" and isinstance(args[0], str | bytes | os.PathLike)):
        return
    path, flags = os.fsdecode(args[0]), args[2] if len(args) > 2 and isinstance(args[2], int) else 0
    if os.path.isabs(path):
        if flags & os.O_DIRECTORY:
            WALKED[0] = path
        OPENED.append(path)
    elif flags & os.O_DIRECTORY and WALKED[0]:
        WALKED[0] = os.path.join(WALKED[0], path)
    else:
        OPENED.append(os.path.join(WALKED[0], path) if WALKED[0] else path)


sys.addaudithook(_count_opens)  # for this process's life (a hook cannot be removed); it counts only when asked


@contextlib.contextmanager
def counting():
    """Every file this process opens in the block (Python's audit events: open() and os.open())."""
    OPENED.clear()
    COUNTING[0] = True
    try:
        yield OPENED
    finally:
        COUNTING[0] = False


def opens(opened: list[str], path: Path) -> int:
    return sum(Path(p).resolve() == path.resolve() for p in opened if not p.endswith(".tmp"))


# (the command, the run folder whose record it reads, files of that run -> the most times each may be opened);
# "rotation" is the finished rotation run a transfer run starts from.
CASES = {
    "resume a stopped run": (
        ("train", "rotation"),
        "resnet18/rotation/seed0",
        {"config.json": 2, "manifest.json": 2},
    ),
    "reuse a finished run": (("train", "rotation"), "resnet18/rotation/seed0", {"config.json": 2, "manifest.json": 2}),
    "train a transfer run": (
        ("train", "layer4-from-rotation", "--epochs", "1"),
        "resnet18/rotation/seed0",
        {"model.safetensors": 1, "config.json": 1, "manifest.json": 1},
    ),
    "probe a finished run": (
        ("probe", "--epochs", "1"),
        "resnet18/rotation/seed0",
        {"config.json": 2, "manifest.json": 2},
    ),
    "verify a finished run": (("verify",), "resnet18/rotation/seed0", {"config.json": 2, "manifest.json": 2}),
    "export a finished run": (("export",), "resnet18/rotation/seed0", {"config.json": 2, "manifest.json": 2}),
}


@pytest.mark.parametrize("case", CASES)
def test_a_command_reads_each_record_file_at_most_as_often_as_it_must(
    case, tiny_partial, tiny_runs, fake_root, tmp_path
):
    """A command opens each record file of a run at most twice (once before its data loads, once more under its lock,
    since another process may have changed it in between), and a transfer run its rotation weights once."""
    args, folder, most = CASES[case]
    shutil.copytree(tiny_partial if case.startswith("resume") else tiny_runs, tmp_path, dirs_exist_ok=True)
    with counting() as opened:
        if args[0] == "export":
            assert main(["export", str(tmp_path / folder), str(tmp_path / "exported")]) == 0
        elif args[0] in ("probe", "verify"):  # a command on one run folder: no runs root, no training flags
            assert (
                main([args[0], str(tmp_path / folder), *args[1:], "--data-root", str(fake_root), "--no-download"]) == 0
            )
        else:
            assert cli(*args, root=tmp_path, data=fake_root) == 0
    counts = {name: opens(opened, tmp_path / folder / name) for name in most}
    assert all(counts[name] <= most[name] for name in most), counts
    assert counts["config.json"] >= 1  # the count sees the reads at all


def test_an_inconsistent_record_says_so_once(copy, capsys):
    """The status and the problem are one phrase: "its record is inconsistent: result.json says ...", in the report's
    row and in every refusal."""
    folder = copy / RUN
    edit_json(folder / "result.json", arch="resnet34")
    reseal(folder)  # past the seal: what is left to catch it is the record's disagreement with itself
    seen = inspect(folder)
    assert seen.status == "inconsistent" and seen.problems[0].startswith("result.json says arch")
    assert main(["report", str(copy)]) == 0
    row = next(r for r in json.loads((copy / "results.json").read_text())["rows"] if r["experiment"] == "rotation")
    assert (
        row["status"].startswith("seed 0 inconsistent: result.json says arch")
        and row["status"].count("inconsistent") == 1
    )
    with pytest.raises(RotnetError, match=r"its record is inconsistent: result.json says arch") as refused:
        open_run(folder, "reuse")
    assert str(refused.value).split("seed0: ", 1)[1].count("inconsistent") == 1  # (the tmp path says it too)


# Every way a user may spell the one run folder on the command line: the run is the folder it is, not the letters.
SPELLINGS = {
    "as found": lambda run: str(run),
    "with a trailing slash": lambda run: f"{run}/",
    "through .. in the run": lambda run: f"{run}/../{run.name}",
    "through .. above the arch": lambda run: str(run.parents[2] / run.parts[-3] / ".." / Path(*run.parts[-3:])),
    "relative to the run itself": lambda run: ".",
    "through a link the user made": lambda run: "mine",
}
# Every command that acts on one run folder the user names (each writes nothing but its own output).
NAMED_RUN = {
    "verify": lambda named, out, data: ["verify", named, "--data-root", str(data), "--no-download"],
    "probe": lambda named, out, data: ["probe", named, "--epochs", "1", "--data-root", str(data), "--no-download"],
    "export": lambda named, out, data: ["export", named, str(out)],
    "train --init FOLDER": lambda named, out, data: [
        "train", "full-from-rotation", "--init", named, "--runs-root", str(out), "--data-root", str(data),
        "--no-download", "--epochs", "1", "--batch-size", "32",
    ],
}  # fmt: skip


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("command", [*NAMED_RUN, "load_backbone"])
def test_a_run_named_in_any_spelling_is_the_same_run(tiny_runs, fake_root, tmp_path, monkeypatch, command, spelling):
    """A run's identity (the arch, experiment and seed its folder spells) is that of the folder it is: `seed0/../seed0`
    was 'inconsistent' (verify wrote "not verified" into a sound run's evidence), and `--init RUN` was no weights."""
    run = Path("runs") / RUN
    shutil.copytree(tiny_runs / RUN, tmp_path / run)
    (tmp_path / "mine").symlink_to(run, target_is_directory=True)
    monkeypatch.chdir(tmp_path / run if spelling == "relative to the run itself" else tmp_path)
    named, out = SPELLINGS[spelling](run), tmp_path / "out"
    if command == "load_backbone":
        import rotnet

        assert rotnet.load_backbone(named).fc.out_features == 4
        return
    assert main(NAMED_RUN[command](named, out, fake_root)) == 0
    if command == "verify":
        assert json.loads((tmp_path / run / "verify.json").read_text())["record"] == "sealed"


WEIGHTS_NAMED = {
    "train --init FOLDER": lambda run: ["train", "full-from-rotation", "--init", str(run)],
    "train --init FILE": lambda run: ["train", "full-from-rotation", "--init", str(run / "model.safetensors")],
    "load_backbone(FOLDER)": lambda run: run,
    "load_backbone(FILE)": lambda run: run / "model.safetensors",
}


@pytest.mark.parametrize("how", WEIGHTS_NAMED)
@pytest.mark.parametrize("edit", ["result edited", "weights swapped"])
def test_weights_named_inside_a_run_are_read_only_through_its_record(tiny_runs, fake_root, tmp_path, capsys, how, edit):
    """Rotation weights a user names, by their run folder or by the file, pass the run's record check wherever they
    are named: `--init RUN/model.safetensors` of an edited run trained from it."""
    import rotnet

    run = shutil.copytree(tiny_runs / RUN, tmp_path / "src" / RUN)
    if edit == "result edited":
        edit_json(run / "result.json", test_acc=99.0)
    else:  # another run's weights of the same shapes put in its place
        weights = run / "model.safetensors"
        tensors, meta = __import__("rotnet.checkpoint").checkpoint.load_tensors(weights)
        __import__("rotnet.checkpoint").checkpoint.save_tensors(weights, {k: v + 1 for k, v in tensors.items()}, meta)
    named = WEIGHTS_NAMED[how](run)
    if isinstance(named, Path):
        with pytest.raises(RotnetError, match="its record is tampered"):
            rotnet.load_backbone(named)
        return
    assert cli(*named, root=tmp_path / "runs", data=fake_root) == 2
    assert "its record is tampered" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("how", WEIGHTS_NAMED)
@pytest.mark.parametrize("folder", ["an export", "a hub folder with its own config.json", "a renamed run, edited"])
def test_weights_in_a_folder_that_is_no_run_are_read_by_their_own_checksum(
    tiny_runs, fake_root, tmp_path, capsys, how, folder
):
    """`rotnet export`'s folder (weights, config.json, result.json, no manifest: a copy for a model hub) and any folder
    whose config.json is not a run's were taken for a half-copied run: `load_backbone(EXPORT)` and `--init EXPORT`
    said "manifest.json missing". A run is a folder spelled ARCH/EXPERIMENT/seedN or one that holds its manifest, so
    a renamed copy of a run still passes its record (here edited, and refused)."""
    import rotnet

    named = tmp_path / "weights"
    if folder == "an export":
        assert main(["export", str(tiny_runs / RUN), str(named)]) == 0
    elif folder.startswith("a hub folder"):
        named.mkdir()
        shutil.copy(tiny_runs / RUN / "model.safetensors", named)
        (named / "config.json").write_text(json.dumps({"architectures": ["ResNet"], "num_labels": 4}))
    else:
        shutil.copytree(tiny_runs / RUN, named)
        edit_json(named / "result.json", test_acc=99.0)
    refused = folder.endswith("edited")
    target = WEIGHTS_NAMED[how](named)
    if isinstance(target, Path):
        if refused:
            with pytest.raises(RotnetError, match="its record is tampered"):
                rotnet.load_backbone(target)
        else:
            assert rotnet.load_backbone(target).fc.out_features == 4
        return
    capsys.readouterr()
    code = cli(*target, "--epochs", "1", root=tmp_path / "runs", data=fake_root)
    err = capsys.readouterr().err
    assert code == (2 if refused else 0), err
    assert ("its record is tampered" in err) == refused, err


@pytest.mark.parametrize("command", ["verify", "probe", "export"])
def test_an_export_named_as_a_run_is_refused_as_no_run_and_nothing_is_written_there(
    tiny_runs, fake_root, tmp_path, capsys, command
):
    """`rotnet verify EXPORT` wrote verify.json into the export, "not verified: the record is incomplete": evidence
    against a folder that by design holds the run's files without its record. Each command that takes a run now says
    the folder is none, and writes nothing there."""
    export = tmp_path / "hub"
    assert main(["export", str(tiny_runs / RUN), str(export)]) == 0
    before = sorted(p.name for p in export.iterdir())
    args = {
        "verify": ["verify", str(export), "--data-root", str(fake_root), "--no-download"],
        "probe": ["probe", str(export), "--epochs", "1", "--data-root", str(fake_root), "--no-download"],
        "export": ["export", str(export), str(tmp_path / "again")],
    }[command]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a rotnet run folder (a run's files without its manifest.json" in err[0], err
    assert sorted(p.name for p in export.iterdir()) == before and not (tmp_path / "again").exists()


# Every door to a run's weights (purpose as it says it) -> its command line (None: the Python API).
WEIGHT_DOORS = {
    "export": ("export", lambda run, root, data: ["export", str(run), str(root.parent / "hub")]),
    "probe": ("probe", lambda run, root, data: ["probe", str(run), "--epochs", "1", "--data-root", str(data),
                                                "--no-download", "--device", "cpu"]),
    "a transfer run's source": ("take rotation weights from", lambda run, root, data: [
        "train", "full-from-rotation", "--runs-root", str(root), "--data-root", str(data), "--no-download", *TINY]),
    "--init": ("take rotation weights from", lambda run, root, data: [
        "train", "full-from-rotation", "--init", str(run), "--runs-root", str(root.parent / "other"),
        "--data-root", str(data), "--no-download", *TINY]),
    "reuse": ("reuse", lambda run, root, data: [
        "train", "rotation", "--runs-root", str(root), "--data-root", str(data), "--no-download", *TINY]),
    "load_backbone": ("load weights from", None),
}  # fmt: skip


def refusal(door: str, run: Path, root: Path, data: Path) -> str:
    """The one error line a door to a run's weights gives (warnings aside)."""
    import rotnet

    _, line = WEIGHT_DOORS[door]
    if line is None:
        with pytest.raises(RotnetError) as e:
            rotnet.load_backbone(run)
        return f"rotnet: error: {e.value}"
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(line(run, root, data)) == 2
    (said,) = [x for x in err.getvalue().splitlines() if not x.startswith("rotnet: warning")]
    return said


@pytest.mark.parametrize("gone", [("model.safetensors",), ("model.safetensors", "examples.safetensors")])
@pytest.mark.parametrize("door", list(WEIGHT_DOORS))
def test_a_finished_run_kept_without_its_weights_is_said_so_by_every_door(door, gone, tiny_runs, fake_root, tmp_path):
    """A finished run whose record was kept without its weights (docs/results: "record only") was "not a finished
    rotnet run (no result.json and model.safetensors)" to export, "has no model.safetensors: the run has not
    finished" to probe, and to a transfer run "no rotation weights ...; make them with: rotnet train rotation", whose
    run then refused to reuse it ("model.safetensors missing"). Every door now says the one thing (`record.absence`)."""
    root = tmp_path / "runs"
    run = shutil.copytree(tiny_runs / "resnet18/rotation/seed0", root / "resnet18/rotation/seed0")
    for name in gone:
        (run / name).unlink()
    purpose, _ = WEIGHT_DOORS[door]
    files = " and ".join(sorted(gone)) + (" is not here (a record kept without it); put it back" if len(gone) == 1
                                          else " are not here (a record kept without them); put them back")  # fmt: skip
    assert (
        refusal(door, run, root, fake_root)
        == f"rotnet: error: cannot {purpose} {run}: the run finished, but its {files}"
    )


@pytest.mark.parametrize("door", ["export", "probe", "--init", "load_backbone"])
def test_an_unfinished_run_named_for_its_weights_is_said_to_be_unfinished(door, tiny_partial, fake_root, tmp_path):
    root = tmp_path / "runs"
    run = shutil.copytree(tiny_partial / "resnet18/rotation/seed0", root / "resnet18/rotation/seed0")
    purpose, _ = WEIGHT_DOORS[door]
    missing = "model.safetensors" if door in ("probe", "load_backbone") else "result.json, model.safetensors"
    said = f"rotnet: error: cannot {purpose} {run}: the run has not finished ({missing} missing)"
    assert refusal(door, run, root, fake_root) == said
