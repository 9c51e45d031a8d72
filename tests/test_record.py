"""A run is its sealed record: every file listed with its sha256 in manifest.json, and every reader (resume, reuse,
verify, report, export, probe, load_backbone) refuses or flags what does not match, what is missing, and a record
that disagrees with itself or with where it sits."""

import json
import shutil

import pytest

from rotnet.cli import main
from rotnet.errors import RotnetError
from rotnet.record import inspect, open_run
from tests.helpers import RUN, as_made_by_0_3, cli, drop_keys, edit_json, metrics, partial, reseal


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
    """A resealed result.json whose confusion was not a matrix of counts ended `rotnet report` in a traceback."""
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


def test_a_deleted_weights_file_is_incomplete(copy, capsys):
    folder = copy / RUN
    (folder / "model.safetensors").unlink()
    assert inspect(folder).status == "incomplete"
    assert main(["report", str(copy)]) == 0
    row = next(r for r in json.loads((copy / "results.json").read_text())["rows"] if r["experiment"] == "rotation")
    assert row["ours_mean"] is None and "incomplete" in row["status"]
    with pytest.raises(RotnetError, match="model.safetensors missing"):
        open_run(folder, "reuse")


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
    """A CIFAR-10 run copied under `stl10/` or `rotation@20pc/` was counted as that run in the report: every part of
    a run folder's place (data, arch, experiment and size, seed) is checked against its config.json."""
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
    """Without a manifest, config.json's epochs could be edited (20 -> 19) and the finished run still read as made
    with that schedule: result.json writes the epochs trained, and a run writes it only after its last planned one."""
    folder = as_made_by_0_3(copy / RUN)
    record = json.loads((folder / "config.json").read_text())
    record["config"]["epochs"] -= 1
    (folder / "config.json").write_text(json.dumps(record))
    seen = inspect(folder)
    assert seen.status == "inconsistent" and "epochs, config.json" in seen.problems[0]
    assert main(["report", str(copy)]) == 0
    row = next(r for r in json.loads((copy / "results.json").read_text())["rows"] if r["experiment"] == "rotation")
    assert row["ours_mean"] is None and "inconsistent" in row["status"]


def test_resume_refuses_a_tampered_partial_run(stopped, tmp_path, fake_root, capsys):
    folder = tmp_path / RUN
    lines = metrics(folder)
    lines[0]["train_loss"] = 0.001
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    capsys.readouterr()
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 2
    assert "cannot continue" in capsys.readouterr().err


def test_an_unfinished_transfer_run_resumes_only_from_its_own_rotation_weights(
    tiny_runs, tmp_path, fake_root, monkeypatch, capsys
):
    shutil.copytree(tiny_runs, tmp_path, dirs_exist_ok=True)
    args = ("train", "layer4-from-rotation")
    assert partial(*args, root=tmp_path, data=fake_root, monkeypatch=monkeypatch) == 130
    # The rotation run's weights change under it (as if trained again); its record is resealed to match, so only
    # the transfer run's own record (init_sha256) can tell.
    import torch

    from rotnet.checkpoint import load_tensors, save_tensors, sha256_file

    weights = tmp_path / RUN / "model.safetensors"
    tensors, meta = load_tensors(weights)
    tensors["fc.bias"] = tensors["fc.bias"] + torch.ones_like(tensors["fc.bias"])
    save_tensors(weights, tensors, meta)
    manifest = json.loads((tmp_path / RUN / "manifest.json").read_text())
    assert manifest["files"]["model.safetensors"] != sha256_file(weights)
    reseal(tmp_path / RUN)
    capsys.readouterr()
    assert cli(*args, root=tmp_path, data=fake_root) == 2
    assert "trained from other rotation weights" in capsys.readouterr().err


def test_a_partial_run_of_an_older_record_is_not_given_todays_defaults(stopped, tmp_path, fake_root, capsys):
    folder = tmp_path / RUN
    record = json.loads((folder / "config.json").read_text())
    del record["config"]["rotations_per_image"]
    (folder / "config.json").write_text(json.dumps(record))
    reseal(folder)
    capsys.readouterr()
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 2
    assert "does not record rotations_per_image" in capsys.readouterr().err


def test_resume_refuses_another_stream_contract(stopped, tmp_path, fake_root, monkeypatch, capsys):
    """A change of stream version, torch version or device kind mid-run would switch the run's streams silently."""
    import rotnet.run

    real = rotnet.run.stream_contract
    monkeypatch.setattr(rotnet.run, "stream_contract", lambda d: real(d) | {"torch": "9.9.9"})
    capsys.readouterr()
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 2
    err = capsys.readouterr().err
    assert "another random-stream contract (torch" in err and "-> 9.9.9" in err
    record = json.loads((tmp_path / RUN / "config.json").read_text())
    assert record["stream"] == real("cpu") and record["cpu"]["capability"]


def test_a_finished_record_missing_a_key_is_not_reused_as_if_it_had_todays_default(copy, fake_root, capsys):
    folder = copy / RUN
    record = json.loads((folder / "config.json").read_text())
    del record["config"]["freeze_bn"]
    (folder / "config.json").write_text(json.dumps(record))
    reseal(folder)
    assert cli("train", "rotation", root=copy, data=fake_root) == 2
    assert "freeze_bn: None -> False" in capsys.readouterr().err


def test_a_record_that_predates_a_key_reads_as_the_runs_before_it(copy):
    """0.1 records lack dataset, image_size, normalization and pretrain_dataset (and all before 0.5 lack kernels):
    they meant CIFAR-10 at 32 px with the seed's normalization and native kernels, which config.ADDED says
    explicitly (today's defaults are not consulted)."""
    import rotnet.config
    from rotnet.config import config_diff, from_dict, with_defaults
    from rotnet.experiments import resolve

    record = json.loads((copy / RUN / "config.json").read_text())["config"]
    old = {k: v for k, v in record.items() if k not in rotnet.config.ADDED}
    with pytest.raises(RotnetError, match="does not record dataset, image_size, kernels, normalization, pretrain_d"):
        from_dict(old, "config.json")
    assert from_dict(with_defaults(old), "config.json") == from_dict(record, "config.json")
    assert config_diff(old, resolve("rotation", epochs=2, batch_size=32, eval_batch_size=64).to_dict()) == []


def test_a_damaged_checkpoint_is_skipped_on_resume_not_held_against_the_record(stopped, tmp_path, fake_root, capsys):
    """Checkpoints are no claim: a damaged newest one falls back to the one before it, as a torn one always did."""
    folder = tmp_path / RUN
    newest = sorted((folder / "checkpoints").iterdir())[-1]
    newest.write_bytes(newest.read_bytes()[:-8] + b"\0" * 8)
    assert inspect(folder).status == "sealed"
    capsys.readouterr()
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 0
    assert f"skipping checkpoint {newest.name}: it differs from what rotnet wrote" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["metrics.jsonl", "result.json", "checkpoints/e0009-s000000.safetensors"])
def test_a_process_killed_mid_write_leaves_a_sealed_record(copy, monkeypatch, name):
    """Killed after the manifest listed a file's new sha256 and before the file was replaced (or first written):
    the record is still what rotnet wrote, old or new, never "tampered" (a run must resume after any SIGKILL)."""
    import rotnet.manifest
    from rotnet.manifest import Seal
    from rotnet.record import read_run

    folder = copy / RUN
    seal = Seal.resume(folder, read_run(folder))

    def killed(path, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(
        rotnet.manifest,
        "atomic_write",
        lambda p, d, **kw: killed(p, d) if p.name != "manifest.json" else real(p, d, **kw),
    )
    real = rotnet.files.atomic_write
    with pytest.raises(KeyboardInterrupt):
        seal.write(name, b"new bytes")
    assert inspect(folder).status == "sealed"


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
    """Deleting the manifest (and what else 0.4 adds) must not downgrade a record to the unchecked kind: the record
    then counted an edited 100% in the report."""
    folder = copy / RUN
    (folder / "manifest.json").unlink()
    edit(folder)
    assert inspect(folder).status == status
    edit_json(folder / "result.json", test_acc=100.0)
    assert inspect(folder).status != "unsealed"  # the edit is seen: missing seal or inconsistent
    assert main(["report", str(copy)]) == 0
    row = next(r for r in json.loads((copy / "results.json").read_text())["rows"] if r["experiment"] == "rotation")
    assert row["ours_mean"] is None


@pytest.mark.parametrize("old", [False, True])
def test_a_partial_run_without_its_seal_is_never_resumed_from_its_checkpoints(
    stopped, tmp_path, fake_root, old, capsys
):
    """A 0.4 partial run whose manifest and stream contract were deleted resumed from a doctored checkpoint and was
    resealed; an unsealed (0.3) partial run has checkpoints nothing vouches for either."""
    folder = tmp_path / RUN
    before = (folder / "metrics.jsonl").read_text()
    if old:
        as_made_by_0_3(folder)
    else:
        (folder / "manifest.json").unlink()
        drop_keys("stream")(folder)
    assert cli("train", "rotation", root=tmp_path, data=fake_root) == 2
    err = capsys.readouterr().err
    assert ("no readable checkpoint" if old else "manifest.json missing") in err
    assert (folder / "metrics.jsonl").read_text() == before and not (folder / "manifest.json").exists()
