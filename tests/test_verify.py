"""`rotnet verify RUN`: re-training the first epochs reproduces metrics.jsonl exactly; a tampered line is caught."""

import json
import os
import shutil

import pytest

from rotnet.cli import main
from rotnet.verify import verifications
from tests.helpers import TINY_ARGS, as_made_by_0_3, cli, fabricate, images, reseal, save


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_five):
    """A rotation run that kept epoch 1's checkpoint and a layer4-from-rotation run from it: the session's, copied
    (verify writes verify.json beside them)."""
    root = tmp_path_factory.mktemp("runs")
    for experiment in ("rotation", "layer4-from-rotation"):
        shutil.copytree(tiny_five / "resnet18" / experiment, root / "resnet18" / experiment)
    return root


def newest(folder) -> dict:
    """The run's latest verification (each test's verify adds one beside those of the tests before it)."""
    return json.loads(verifications(folder)[-1].read_text())


def verify(folder, data, *extra):
    return main(["verify", str(folder), "--data-root", str(data), "--no-download", "--device", "cpu", *extra])


def test_verify_matches_a_run_and_writes_only_what_it_compared(runs, fake_root, capsys):
    folder = runs / "resnet18/rotation/seed0"
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if not p.name.startswith("verify")}
    assert verify(folder, fake_root, "--epochs", "2") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{folder}: re-training epochs 1-2 of 2 on cpu")  # says what it does before minutes of it
    after = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if not p.name.startswith("verify")}
    assert {k: v for k, v in after.items() if k != folder} == {k: v for k, v in before.items() if k != folder}
    assert "verified: epochs 1-2 re-trained and the final weights they make identical" in out
    assert "MISMATCH" not in out and "not re-trained" not in out
    assert "epoch 2 train_loss: recorded " in out and out.count("epoch 2 train_loss") == 1
    assert "final weights test_acc" in out and "final weights confusion" in out
    evidence = newest(folder)
    assert evidence["verdict"] == "verified" and evidence["exit_code"] == 0 and evidence["final_checked"]
    assert evidence["re_trained"] == [1, 2] and evidence["not_re_trained"] is None and evidence["final_re_made"]
    assert {c["field"] for c in evidence["comparisons"]} >= {"train_loss", "test_acc", "confusion", "lr"}
    assert all(c["match"] for c in evidence["comparisons"]) and evidence["stream"]["version"] >= 1
    assert evidence["same_machine"] is True and evidence["rotnet_commit"]


def test_verify_fails_an_edited_result_and_a_deleted_record_file(runs, fake_root, tmp_path, capsys):
    copy = tmp_path / "copy/resnet18/rotation/seed0"
    shutil.copytree(runs / "resnet18/rotation/seed0", copy)
    text = (copy / "result.json").read_text()
    (copy / "result.json").write_text(json.dumps(json.loads(text) | {"test_acc": 99.9}))
    assert verify(copy, fake_root) == 1
    assert "not verified: the record is tampered" in capsys.readouterr().out
    (copy / "result.json").write_text(text)
    (copy / "metrics.jsonl").unlink()
    assert verify(copy, fake_root) == 1
    out = capsys.readouterr().out
    assert "metrics.jsonl" in out and "not verified: the record is inconsistent" in out
    assert newest(copy)["verdict"] == "not verified"


@pytest.mark.parametrize("gone", [("model.safetensors",), ("model.safetensors", "examples.safetensors")])
def test_a_sealed_record_kept_without_its_weights_is_verified_as_far_as_it_goes(
    runs, fake_root, tmp_path, capsys, gone
):
    """A record committed without its weights (docs/results: the report's "record only") said "not verified: the
    record is incomplete" and wrote that beside the run's own verification; the report counts its numbers, so verify
    re-trains its epochs against them and says the final result was not checked (`Inspection.record_whole`)."""
    copy = tmp_path / "copy/resnet18/rotation/seed0"
    shutil.copytree(runs / "resnet18/rotation/seed0", copy)
    for name in gone:
        (copy / name).unlink()
    assert verify(copy, fake_root) == 0
    out = capsys.readouterr().out
    said = next(line for line in out.splitlines() if "a sealed record without its" in line)
    assert said.endswith(": its epochs can be re-trained") and all(name in said for name in gone), said
    assert "verified: epoch 1 re-trained identical; epoch 2 not re-trained (--all re-trains every epoch); the final " \
           "result not checked (no model.safetensors here)" in out  # fmt: skip
    evidence = newest(copy)
    assert (evidence["record"], evidence["verdict"], evidence["final_checked"]) == ("incomplete", "verified", False)


def test_verify_re_evaluates_the_final_weights(runs, fake_root, tmp_path, capsys):
    """The final weights are scored again and compared with result.json. Both sides are known by construction, not
    by what a tiny training happens to reach on this CPU: the record claims 100%, the weights put every image at 0
    degrees (25% of the four rotations exactly); the record is resealed, as a forger would."""
    import torch

    from rotnet.checkpoint import load_tensors, save_tensors

    copy = fabricate(runs / "resnet18/rotation/seed0", tmp_path / "copy/resnet18/rotation/seed0", test_acc=100.0)
    tensors, meta = load_tensors(copy / "model.safetensors")
    tensors["fc.weight"] = torch.zeros_like(tensors["fc.weight"])
    tensors["fc.bias"] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    save_tensors(copy / "model.safetensors", tensors, meta)
    reseal(copy)
    assert verify(copy, fake_root) == 1
    out = capsys.readouterr().out
    assert "final weights test_acc: recorded 100.0, re-run 25.0, MISMATCH by -75" in out
    assert "final weights confusion: recorded '(matrix)', re-run '(matrix)', MISMATCH" in out


def test_a_mismatch_on_another_cpu_is_inconclusive_and_on_the_same_one_a_failure(
    runs, fake_root, tmp_path, capsys, monkeypatch
):
    import rotnet.verify

    copy = tmp_path / "copy/resnet18/rotation/seed0"
    shutil.copytree(runs / "resnet18/rotation/seed0", copy)
    lines = [json.loads(x) for x in (copy / "metrics.jsonl").read_text().splitlines()]
    lines[0]["train_loss"] += 1e-9  # a last-bit difference, as another CPU's kernels give
    (copy / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    reseal(copy)
    assert verify(copy, fake_root) == 1
    assert "differ on the same machine" in capsys.readouterr().out
    other = rotnet.verify.cpu_identity() | {"model": "Another CPU", "capability": "AVX2"}
    monkeypatch.setattr(rotnet.verify, "cpu_identity", lambda: other)
    assert verify(copy, fake_root) == 3
    out = capsys.readouterr().out
    assert "inconclusive: 1 field(s) differ (at most: train_loss by 1e-09)" in out and "re-run on Another CPU" in out
    assert "To settle it: run verify on the machine that made the run, or train it with --kernels portable" in out
    assert "train_loss: recorded" in out and "MISMATCH by -1e-09" in out  # the size of each difference, not the word


def test_verify_refuses_another_stream_contract_and_a_record_missing_a_key(
    runs, fake_root, tmp_path, capsys, monkeypatch
):
    import rotnet.verify

    copy = tmp_path / "copy/resnet18/rotation/seed0"
    shutil.copytree(runs / "resnet18/rotation/seed0", copy)
    real = rotnet.verify.stream_contract
    monkeypatch.setattr(rotnet.verify, "stream_contract", lambda d: real(d) | {"version": 999})
    assert verify(copy, fake_root) == 2
    assert "another random-stream contract (version 1 -> 999)" in capsys.readouterr().err
    monkeypatch.undo()
    record = json.loads((copy / "config.json").read_text())
    del record["config"]["freeze_bn"]
    (copy / "config.json").write_text(json.dumps(record))
    reseal(copy)
    assert verify(copy, fake_root) == 2
    assert "does not record freeze_bn" in capsys.readouterr().err


@pytest.mark.parametrize("field", ["stream", "config"])
def test_a_record_edited_where_verify_reads_its_contract_fails_before_any_field_is_believed(
    field, runs, fake_root, tmp_path, capsys
):
    """verify checks the record before it reads the stream contract: an edited contract (or configuration) without a
    new seal is a failed verification, not "could not compare"."""
    copy = tmp_path / "copy/resnet18/rotation/seed0"
    shutil.copytree(runs / "resnet18/rotation/seed0", copy)
    record = json.loads((copy / "config.json").read_text())
    record[field] = record[field] | ({"version": 999} if field == "stream" else {"lr": 0.5})
    (copy / "config.json").write_text(json.dumps(record))
    assert verify(copy, fake_root) == 1
    assert "not verified: the record is tampered" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("device", "same", "kernels", "starts", "strict"),
    [
        ("cpu", True, "native", [{}], True),
        ("cpu", False, "native", [{}], False),
        ("cpu", None, "native", [{}], False),
        ("cpu", False, "portable", [{}], True),
        ("cuda", True, "native", [{"deterministic": True}], True),
        ("cuda", True, "native", [{"deterministic": False}], False),
        ("cuda", True, "native", [{}], False),  # made before rotnet recorded it: nothing made CUDA deterministic
        ("cuda", True, "native", [{"deterministic": True}, {"deterministic": False}], False),  # one resume was not
        ("cuda", False, "native", [{"deterministic": True}], False),  # another GPU model
    ],
)
def test_a_difference_fails_only_where_the_bits_were_promised_to_repeat(device, same, kernels, starts, strict):
    """A difference is a failure only where the bits were promised to repeat: on a CPU of the same identity, or on
    the same GPU model when every start of the run used deterministic algorithms."""
    import torch

    from rotnet.verify import strict as is_strict

    record = starts[0] | ({"resumes": starts[1:]} if len(starts) > 1 else {})
    assert is_strict(record, torch.device(device), same, kernels) is strict


@pytest.mark.parametrize(
    ("record", "worlds", "size", "strict"),
    [
        ({}, [1], 1, True),  # before torchrun support: one process
        ({"world_size": 1}, [1], 1, True),
        ({"world_size": 2}, [2], 2, True),
        ({"world_size": 2}, [2], 1, False),
        ({"world_size": 1, "resumes": [{"world_size": 1}, {"world_size": 1}]}, [1, 1, 1], 1, True),
        ({"world_size": 2, "resumes": [{"world_size": 1}]}, [2, 1], 1, False),  # resumed under another number
        ({"world_size": 2, "resumes": [{"world_size": 1}]}, [2, 1], 2, False),
        ({"world_size": 1, "resumes": [{}]}, [None, 1], 1, False),  # a resume that names none: its top level is
        ({"world_size": 1, "resumes": [{}, {}]}, [None, None, 1], 1, False),  # the last start's, the rest unknown
        ({"world_size": "2"}, [None], 1, False),  # what no rotnet writes: not believed
        ({"world_size": True}, [None], 1, False),
    ],
)
def test_a_difference_fails_only_under_the_number_of_processes_of_every_start(record, worlds, size, strict):
    """A step's sums depend on how many processes shared its batch: a difference fails a verification only when every
    start of the run had the re-run's number (CPU, same machine, native kernels: strict otherwise)."""
    import torch

    from rotnet.verify import recorded_worlds, world_caveat
    from rotnet.verify import strict as is_strict

    assert recorded_worlds(record) == worlds
    assert is_strict(record, torch.device("cpu"), True, "native", size) is strict
    assert bool(world_caveat(worlds, size)) is not strict


@pytest.mark.parametrize("named", ["by its path", "as . from inside it"])
def test_verify_a_transfer_run_from_a_copied_results_folder(runs, fake_root, tmp_path, monkeypatch, named):
    """Copied elsewhere (as docs/results/ holds them): the source weights are found beside it by their sha256,
    however the run is named (`.` looked for them in ./rotation/seed0)."""
    copy = tmp_path / "copy"
    shutil.copytree(runs, copy)
    shutil.rmtree(runs.parent / "gone", ignore_errors=True)
    record = json.loads((copy / "resnet18/layer4-from-rotation/seed0/config.json").read_text())
    record["init_weights"] = "/nonexistent/model.safetensors"
    (copy / "resnet18/layer4-from-rotation/seed0/config.json").write_text(json.dumps(record))
    reseal(copy / "resnet18/layer4-from-rotation/seed0")  # as a copy made with other paths would be sealed
    folder = copy / "resnet18/layer4-from-rotation/seed0"
    if named != "by its path":
        monkeypatch.chdir(folder)
        folder = "."
    assert verify(folder, fake_root) == 0


def test_verify_catches_a_tampered_metrics_line(runs, fake_root, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(runs / "resnet18/rotation/seed0", copy / "resnet18/rotation/seed0")
    path = copy / "resnet18/rotation/seed0/metrics.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    lines[0]["test_acc"] += 0.01
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    reseal(copy / "resnet18/rotation/seed0")  # past the seal: the re-run itself must catch it
    assert verify(copy / "resnet18/rotation/seed0", fake_root) == 1
    assert "epoch 1 test_acc" in capsys.readouterr().out.split("MISMATCH")[0].splitlines()[-1]


def test_verify_refuses_other_data(runs, tmp_path, capsys):
    from tests.conftest import write_fake_cifar

    other = write_fake_cifar(tmp_path / "other", seed=3)
    assert verify(runs / "resnet18/rotation/seed0", other) == 2
    assert "was trained on other data" in capsys.readouterr().err


def test_verify_re_trains_with_the_threads_the_run_recorded(fake_root, tmp_path, capsys):
    """A run `reproduce --jobs 2` trained on one thread verifies from a two-thread process (sums depend on threads)."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert cli("train", "rotation", root=tmp_path, data=fake_root) == 0
        torch.set_num_threads(2)
        record = json.loads((tmp_path / "resnet18/rotation/seed0/config.json").read_text())
        assert record["device_name"].endswith("(1 thread)")
        assert verify(tmp_path / "resnet18/rotation/seed0", fake_root, "--epochs", "2") == 0
        assert "re-trained on 1 thread, as recorded" in capsys.readouterr().out
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(before)


def test_verify_from_a_kept_checkpoint_checks_the_end_of_a_run(runs, fake_root, tmp_path, capsys):
    """--keep-epoch 1 kept epoch 1's checkpoint through the final prune: epoch 2 is re-trained from it alone."""
    folder = runs / "resnet18/rotation/seed0"
    assert (folder / "checkpoints/e0001-s000000.safetensors").is_file()
    assert verify(folder, fake_root, "--from-epoch", "2") == 0
    out = capsys.readouterr().out
    assert "re-training epoch 2 of 2 from the checkpoint of epoch 1" in out and "\nepoch 1 " not in out
    assert "epoch 2 train_loss: recorded" in out and newest(folder)["from_epoch"] == 2
    copy = tmp_path / "copy/resnet18/rotation/seed0"
    shutil.copytree(folder, copy)
    lines = [json.loads(x) for x in (copy / "metrics.jsonl").read_text().splitlines()]
    lines[1]["train_acc"] += 0.5
    (copy / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    reseal(copy)
    assert verify(copy, fake_root, "--from-epoch", "2") == 1
    assert "epoch 2 train_acc" in capsys.readouterr().out.split("MISMATCH")[0].splitlines()[-1]
    other = runs / "resnet18/layer4-from-rotation/seed0"  # kept no mid-run checkpoint
    assert verify(other, fake_root, "--from-epoch", "2") == 2
    assert "kept no checkpoint at the end of epoch 1" in capsys.readouterr().err


def test_a_committed_record_without_weights_says_what_it_lacks(runs, fake_root, tmp_path, capsys):
    """A committed record made before 0.4 (config, metrics, result; no weights, no manifest) is named for what it
    lacks, and only that."""
    folder = tmp_path / "resnet18/rotation/seed0"
    folder.mkdir(parents=True)
    for name in ("metrics.jsonl", "result.json"):
        shutil.copy(runs / "resnet18/rotation/seed0" / name, folder / name)
    shutil.copy(runs / "resnet18/rotation/seed0/config.json", folder / "config.json")
    as_made_by_0_3(folder)
    assert verify(folder, fake_root) == 0
    out = capsys.readouterr().out
    assert "no model.safetensors to re-evaluate: the final result was not checked" in out


def test_a_sealed_record_whose_manifest_was_deleted_is_incomplete_not_unsealed(runs, tmp_path):
    """A 0.4 record whose manifest.json was deleted is incomplete, not an old unsealed one, so later edits are still
    seen."""
    from rotnet.record import inspect

    folder = tmp_path / "run"
    shutil.copytree(runs / "resnet18/rotation/seed0", folder)
    (folder / "manifest.json").unlink()
    seen = inspect(folder)
    assert seen.status == "incomplete" and "manifest.json is missing" in seen.problems


def test_verify_says_which_epochs_it_did_not_re_train_and_ties_the_final_weights_to_the_last(
    runs, fake_root, tmp_path, capsys
):
    """Weights replaced by others that score the same (a BatchNorm counter changed: the predictions are identical by
    construction) and the record resealed: verify said "verified". The last epoch recorded the sha256 of the weights
    it made, so the file is compared to it; and by default verify says it did not re-train epoch 2."""
    from rotnet.checkpoint import load_tensors, save_tensors

    folder = runs / "resnet18/rotation/seed0"
    assert verify(folder, fake_root) == 0
    out = capsys.readouterr().out
    assert (
        "verified: epoch 1 re-trained, the final weights' accuracy and sha256 identical; epoch 2 not re-trained" in out
    )
    assert "(--all re-trains every epoch), so the final weights were not re-made" in out
    evidence = newest(folder)
    assert evidence["not_re_trained"] == "epoch 2" and not evidence["final_re_made"]
    copy = shutil.copytree(folder, tmp_path / "copy/resnet18/rotation/seed0")
    tensors, meta = load_tensors(copy / "model.safetensors")
    tensors["bn1.num_batches_tracked"] += 1
    save_tensors(copy / "model.safetensors", tensors, meta)
    reseal(copy)
    assert verify(copy, fake_root) == 1
    out = capsys.readouterr().out
    assert "final weights test_acc" in out and "final weights test_acc" not in out.split("MISMATCH")[0].split("\n")[-1]
    assert "final weights weights_sha256: recorded" in out.split("MISMATCH")[0].splitlines()[-1]


def test_verify_all_re_trains_every_epoch_and_catches_a_forged_later_one(runs, fake_root, tmp_path, capsys):
    """Epoch 2's line edited and the record resealed: the default check (epoch 1) cannot see it and says so; --all
    re-trains epoch 2 and finds it."""
    copy = shutil.copytree(runs / "resnet18/rotation/seed0", tmp_path / "copy/resnet18/rotation/seed0")
    lines = [json.loads(x) for x in (copy / "metrics.jsonl").read_text().splitlines()]
    lines[1]["train_loss"] *= 0.5
    (copy / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    reseal(copy)
    assert verify(copy, fake_root) == 0 and "epoch 2 not re-trained" in capsys.readouterr().out
    assert verify(copy, fake_root, "--all") == 1
    assert "epoch 2 train_loss" in capsys.readouterr().out.split("MISMATCH")[0].splitlines()[-1]
    assert verify(copy, fake_root, "--all", "--epochs", "2") == 2
    assert "give --epochs K or --all, not both" in capsys.readouterr().err


def test_every_verification_is_kept_none_replaces_an_earlier_one(runs, fake_root, tmp_path, capsys, monkeypatch):
    """Each verification goes to a new file (verify.json, verify-2.json, ...) with who, where and when: a verify on
    another CPU never overwrites the committed verdict of the machine that trained the run."""
    import rotnet.verify

    copy = shutil.copytree(runs / "resnet18/rotation/seed0", tmp_path / "copy/resnet18/rotation/seed0")
    for old in verifications(copy):  # the session's run, verified by the tests before this one
        old.unlink()
    assert verify(copy, fake_root) == 0
    first = (copy / "verify.json").read_text()
    lines = [json.loads(x) for x in (copy / "metrics.jsonl").read_text().splitlines()]
    lines[0]["train_loss"] += 1e-9
    (copy / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    reseal(copy)
    other = rotnet.verify.cpu_identity() | {"model": "Another CPU"}
    monkeypatch.setattr(rotnet.verify, "cpu_identity", lambda: other)
    assert verify(copy, fake_root) == 3
    monkeypatch.undo()
    assert verify(copy, fake_root) == 1
    out = capsys.readouterr().out
    assert "wrote verify-2.json, beside the 1 earlier" in out and "wrote verify-3.json, beside the 2 earlier" in out
    assert (copy / "verify.json").read_text() == first
    kept = [json.loads((copy / n).read_text()) for n in ("verify.json", "verify-2.json", "verify-3.json")]
    assert [k["verdict"] for k in kept] == ["verified", "inconclusive", "not verified"]
    assert all(k["when"] and k["who"] and k["host"] for k in kept)


def test_a_folder_run_verifies_after_its_folder_moved_and_only_on_the_same_images(tmp_path, fake_root, capsys):
    """A folder run could not be verified after the folder moved or on another machine: verify takes the folder's
    new place with --dataset PATH and compares the images by what they are, refusing other images by name."""
    import shutil

    import numpy as np

    from rotnet.cli import main

    save(tmp_path / "a/photos", images(40))
    runs = tmp_path / "runs"
    assert (
        main(["train", "rotation", "--dataset", str(tmp_path / "a/photos"), "--runs-root", str(runs), *TINY_ARGS]) == 0
    )
    run = runs / "photos/resnet18/rotation/seed0"
    shutil.move(tmp_path / "a", tmp_path / "b")
    capsys.readouterr()
    assert main(["verify", str(run)]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert main(["verify", str(run), "--dataset", str(tmp_path / "b/photos")]) == 0
    other = images(40, seed=1)
    other[:20] = np.asarray(images(40))[:20]
    save(tmp_path / "c/photos", other)
    capsys.readouterr()
    assert main(["verify", str(run), "--dataset", str(tmp_path / "c/photos")]) == 2
    assert "was trained on other data" in capsys.readouterr().err


@pytest.mark.parametrize("pretrain", ["cifar10", "photos"])
@pytest.mark.parametrize("how", ["named from another folder", "its runs root moved"])
def test_a_transfer_run_finds_its_rotation_weights_wherever_its_runs_root_is(
    tmp_path, fake_root, monkeypatch, pretrain, how
):
    """verify looked for a transfer's rotation weights at the path its record wrote (relative to the folder it was
    trained from) and beside it (same data segment): a transfer pretrained on other data (`--pretrain-dataset`,
    whose rotation run lies under another data segment) could not be verified from another folder or after its runs
    root moved ("verify needs them"). Its source is now the rotation run its record names, in its own runs root."""
    import numpy as np

    from tests.helpers import TINY_PRESET, write_folder

    photos = tmp_path / "photos"
    write_folder(photos, np.random.default_rng(0).integers(0, 256, (48, 3, 32, 32), dtype=np.uint8))
    monkeypatch.chdir(tmp_path)
    extra = ["--pretrain-dataset", str(photos)] if pretrain == "photos" else []
    common = ["--preset", TINY_PRESET, "--data-root", str(fake_root), "--no-download", "--jobs", "1"]
    plan = ["reproduce", "--experiments", "rotation,full-from-rotation", "--runs-root", "runs", *extra, *common]
    assert main(plan) == 0
    (elsewhere := tmp_path / "elsewhere").mkdir()
    if how == "its runs root moved":
        os.rename(tmp_path / "runs", elsewhere / "runs")
    else:
        monkeypatch.chdir(elsewhere)
    (run,) = (elsewhere if how == "its runs root moved" else tmp_path).glob("runs/**/full-from-rotation/seed0")
    assert verify(run, fake_root) == 0
    assert newest(run)["verdict"] == "verified"
