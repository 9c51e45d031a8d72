"""The run-folder scheme (rotnet.layout): a run's folder round-trips to its identity, runs are found through no
link, and one run's folder is never taken for a runs root."""

import json
import os
import shutil
from pathlib import Path

import pytest

from rotnet.config import RunConfig
from rotnet.layout import RunId, parse_run_dir, run_dir


def test_run_dir_round_trips():
    cfg = RunConfig(experiment="full-from-rotation", arch="resnet34", seed=2, train_per_class=20)
    folder = run_dir(Path("root"), cfg)
    assert folder == Path("root/resnet34/full-from-rotation@20pc/seed2")
    assert parse_run_dir(folder) == RunId("resnet34", "full-from-rotation", 2, 20)
    assert parse_run_dir(Path("a/b/seedx")) is None and parse_run_dir(Path("a/b@3/seed1")) is None


@pytest.mark.parametrize("level", ["data segment", "arch", "experiment", "seed", "config.json"])
def test_runs_are_found_through_no_link(tmp_path, level):
    """Every reader finds run folders the same way, through no link (`runs/X/resnet18` -> another runs root is not a
    run)."""
    from rotnet.layout import find_runs

    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    run = Path("pets/resnet18/rotation/seed0")
    (theirs / run).mkdir(parents=True)
    (theirs / run / "config.json").write_text("{}")
    (ours / run).mkdir(parents=True)
    (ours / run / "config.json").write_text("{}")
    assert find_runs(ours) == [ours / run]
    depth = ["data segment", "arch", "experiment", "seed", "config.json"].index(level) + 1
    linked = Path(*run.parts[:depth]) if level != "config.json" else run / "config.json"
    target = ours / linked
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink()
    target.symlink_to(theirs / linked)
    assert find_runs(ours) == []


@pytest.mark.parametrize("how", ["train", "reproduce", "label-efficiency", "api.train", "api.reproduce"])
def test_one_runs_folder_named_as_a_runs_root_is_refused_before_anything_is_written(tiny_runs, tmp_path, fake_root,
                                                                                     capsys, how):  # fmt: skip
    """`--runs-root runs/paper/resnet18/rotation/seed0` trained a whole run nested inside that run's folder. Every
    command and the API name their runs root through layout.runs_root_for, which refuses one run's folder."""
    import rotnet
    from rotnet.cli import main
    from rotnet.errors import RotnetError
    from tests.helpers import TINY_PRESET

    run = tmp_path / "runs/resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    before = sorted(p.name for p in run.iterdir())
    said = f"runs root {run} is one run's folder; name the runs root that holds it: {tmp_path / 'runs'}"
    common = {"preset": TINY_PRESET, "runs_root": run, "data_root": fake_root, "download": False}
    if how.startswith("api."):
        with pytest.raises(RotnetError) as e:
            rotnet.train("rotation", **common) if how == "api.train" else rotnet.reproduce(**common)
        assert str(e.value) == said
    else:
        args = [how, *(["rotation"] if how == "train" else []), "--preset", TINY_PRESET, "--runs-root", str(run)]
        assert main([*args, "--data-root", str(fake_root), "--no-download"]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"rotnet: error: {said}"]
    assert sorted(p.name for p in run.iterdir()) == before


ALL = {"train", "reproduce", "api.train", "report"}
PARTS = {  # a folder of a runs root named as a runs root -> the commands that refuse it so
    "runs/resnet18": ALL,  # an arch's folder: its runs landed at runs/resnet18/resnet18/rotation/seed0
    "runs/resnet18/rotation": ALL,  # an experiment's
    "runs/cifar100/resnet18": ALL,
    # A dataset's folder looks like a runs root until its runs' records are read: report reads them (and refused a
    # report there of "inconsistent" runs); a plan, which reads each record once, refuses its run there as another
    # configuration's.
    "runs/cifar100": {"report"},
    "runs": set(),  # the runs root itself
    "runs/new": set(),  # a new folder in it (a runs root of its own, holding no run yet)
    "elsewhere": set(),
}


@pytest.mark.parametrize("how", ["train", "reproduce", "api.train", "report"])
@pytest.mark.parametrize("named", list(PARTS))
def test_a_folder_of_a_runs_root_named_as_a_runs_root_is_refused(tiny_runs, tmp_path, fake_root, capsys, named, how):
    """`--runs-root runs/resnet18` (the arch's folder, for the runs root) trained a run at
    runs/resnet18/resnet18/rotation/seed0, which `rotnet report runs` then read as a run of data "resnet18",
    inconsistent with its record; `report runs/cifar100` wrote a report there of "inconsistent" runs. A runs root
    whose runs below it belong to another runs root is refused, naming that root, before anything is written."""
    import rotnet
    from rotnet.cli import main
    from rotnet.errors import RotnetError
    from tests.helpers import TINY_PRESET, fabricate

    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", runs / "resnet18/rotation/seed0")
    fabricate(runs / "resnet18/rotation/seed0", runs / "cifar100/resnet18/rotation/seed0", dataset="cifar100")
    # A CIFAR-100 run moved where its record does not put it: its report's "inconsistent", no part of another root
    fabricate(runs / "resnet18/rotation/seed0", runs / "resnet18/rotation/seed3", dataset="cifar100")
    before = sorted(tmp_path.rglob("*"))
    root = tmp_path / named
    said = f"runs root {root} is a folder of the runs root {runs} (an arch's or an experiment's)"
    common = {"preset": TINY_PRESET, "runs_root": root, "data_root": fake_root, "download": False}
    if how == "api.train":
        try:
            rotnet.train("rotation", **common)
            err = ""
        except RotnetError as e:
            err = str(e)
    elif how == "report":  # `report runs/cifar100` reported its runs as inconsistent ones of data "cifar10"
        code, err = main(["report", str(root)]), capsys.readouterr().err.strip()
        assert code == 2 or how not in PARTS[named], err
        said = said.split(" (")[0].removeprefix("runs root ")
    else:
        args = [how, *(["rotation"] if how == "train" else ["--experiments", "rotation"]), "--preset", TINY_PRESET]
        code = main([*args, "--runs-root", str(root), "--data-root", str(fake_root), "--no-download"])
        err = capsys.readouterr().err.strip()
        assert code == (0 if named in ("runs", "runs/new", "elsewhere") else 2), err
    assert (said in err) == (how in PARTS[named]), err
    if how in PARTS[named]:
        assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("how", ["train", "reproduce", "api.train", "report"])
@pytest.mark.parametrize("spelled", ["arch", "experiment", "arch/rotation"])
def test_a_runs_root_named_through_a_link_is_refused_naming_the_root_it_lies_in(
    tiny_runs, tmp_path, fake_root, capsys, spelled, how
):
    """A link to a runs root's arch folder named as a runs root was refused "a folder of the runs root ." (the
    folder the link lies in, which holds no run): `layout.parent_as_spelled` takes the spelled parent only when it is
    the real one, for every message that names a folder above the one given."""
    import rotnet
    from rotnet.cli import main
    from rotnet.errors import RotnetError
    from tests.helpers import TINY_PRESET

    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", runs / "resnet18/rotation/seed0")
    (tmp_path / "links").mkdir()
    os.symlink(runs / "resnet18", tmp_path / "links/arch")
    os.symlink(runs / "resnet18/rotation", tmp_path / "links/experiment")
    root = tmp_path / "links" / spelled
    before = sorted(tmp_path.rglob("*"))
    if how == "api.train":
        with pytest.raises(RotnetError) as e:
            rotnet.train("rotation", preset=TINY_PRESET, runs_root=root, data_root=fake_root, download=False)
        err = str(e.value)
    elif how == "report":
        assert main(["report", str(root)]) == 2
        err = capsys.readouterr().err
    else:
        args = [how, *(["rotation"] if how == "train" else ["--experiments", "rotation"]), "--preset", TINY_PRESET]
        assert main([*args, "--runs-root", str(root), "--data-root", str(fake_root), "--no-download"]) == 2
        err = capsys.readouterr().err
    said = f"is a folder of the runs root {runs.resolve()}"
    assert said in err and (f"rotnet report {runs.resolve()}" in err if how == "report" else True), err
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("spelling", [".", "../seed0", "./", "inner", "a/b"])
def test_one_runs_folder_is_refused_as_a_runs_root_however_it_is_spelled(tiny_runs, tmp_path, fake_root, capsys,
                                                                         monkeypatch, spelling):  # fmt: skip
    """From inside a run's folder, `--runs-root .` trained a whole run nested in it (the check counted the parents
    of "." and found none), and so did a runs root made inside it (`inner`, `a/b`)."""
    from rotnet.cli import main
    from tests.helpers import TINY_PRESET

    run = tmp_path / "runs/resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    before = sorted(p.name for p in run.iterdir())
    monkeypatch.chdir(run)
    args = ["train", "rotation", "--preset", TINY_PRESET, "--runs-root", spelling, "--data-root", str(fake_root)]
    assert main([*args, "--no-download"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    said = (
        f"lies inside the run folder {run}; name a runs root outside it"
        if spelling in ("inner", "a/b")
        else f"is one run's folder; name the runs root that holds it: {tmp_path / 'runs'}"
    )
    assert len(err) == 1 and err[0].endswith(said), err
    assert sorted(p.name for p in run.iterdir()) == before


@pytest.mark.parametrize("where", ["the run folder", "inside it"])
@pytest.mark.parametrize(
    "command",
    [
        "probe --feature-cache", "probe --cache-dir", "train --cache-dir", "export-images --cache-dir", "export OUT",
        "cifar10 --data-root",  # where a missing CIFAR-10 would be downloaded
    ],
)  # fmt: skip
def test_no_folder_named_for_rotnet_to_write_into_lies_in_a_run(command, where, tiny_runs, tmp_path, capsys):
    """Every folder a user names for rotnet's outputs passes layout.refuse_inside_run: `--feature-cache RUN` wrote
    the probe's features among a sealed run's files, `--cache-dir RUN` the prepared images, and a download would
    have unpacked CIFAR-10 under `--data-root RUN` (export's OUT was refused already: its rows are controls)."""
    import numpy as np

    from rotnet.cli import main
    from tests.helpers import write_folder

    run = tmp_path / "runs/resnet18/rotation/seed0"
    shutil.copytree(tiny_runs / "resnet18/rotation/seed0", run)
    write_folder(tmp_path / "imgs", np.random.default_rng(0).integers(0, 256, (40, 3, 8, 8), dtype=np.uint8))
    target = run if where == "the run folder" else run / "cache"
    name, flag = command.split()
    images = ["--dataset", str(tmp_path / "imgs")]
    args = {
        "probe": ["probe", str(run), *images, "--epochs", "1", "--device", "cpu"],
        "train": ["train", "rotation", *images, "--runs-root", str(tmp_path / "other"), "--epochs", "1"],
        "export-images": ["export-images", str(tmp_path / "imgs"), str(tmp_path / "out")],
        "export": ["export", str(run), str(target)],
        "cifar10": ["train", "rotation", "--runs-root", str(tmp_path / "other"), "--epochs", "1"],
    }[name] + ([flag, str(target)] if flag.startswith("--") else [])
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(args) == 2
    err = capsys.readouterr().err
    said = "is the run folder" if where == "the run folder" else "lies inside the run folder"
    said = "exists and is not an empty folder" if command == "export OUT" and where == "the run folder" else said
    assert said in err and len(err.strip().splitlines()) == 1, err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


SEED0 = "resnet18/rotation/seed0"
NESTED = {  # what runs/ holds -> the runs roots inside it, and the data of the rows its report has
    "quick": (["quick/" + SEED0, "paper/" + SEED0], ["paper", "quick"], None),  # the README's runs/PRESET, alone
    "quick and own": ([SEED0, "quick/" + SEED0], ["quick"], ["cifar10"]),
    "a root named as a dataset": ([SEED0, "cifar100/" + SEED0], ["cifar100"], ["cifar10"]),  # CIFAR-10 runs there
    # A run trained into a dataset's folder named as its runs root: each report has its own runs, naming the other's
    "trained into a dataset's folder": (
        ["cifar100/" + SEED0 + "@cifar100", "cifar100/resnet18/full-from-random/seed0"],
        ["cifar100"],
        ["cifar100"],
    ),
    "a dataset's folder": ([SEED0, "cifar100/" + SEED0 + "@cifar100"], [], ["cifar10", "cifar100"]),  # runs/'s own
    "a moved run": ([SEED0, "resnet18/rotation/seed3@cifar100"], [], ["cifar10"]),  # inconsistent, nobody's
}


@pytest.mark.parametrize("layout", list(NESTED))
def test_a_runs_root_inside_a_runs_root_is_not_read_as_its_runs(tiny_runs, tmp_path, capsys, layout):
    """`rotnet report runs` over the README's runs/quick and runs/paper wrote a report there whose every row said
    "inconsistent: config.json says data 'cifar10', the folder 'quick'": a runs root's report read the runs of the
    runs roots inside it as its own, of a dataset named after their folder. Now each report has the runs their
    records place in its root and names the other roots; a folder of nothing else is refused, naming them, with
    nothing written."""
    from rotnet.cli import main
    from tests.helpers import fabricate

    runs = tmp_path / "runs"
    places, inner, reported = NESTED[layout]
    for place in places:
        where, _, dataset = place.partition("@")
        fabricate(tiny_runs / SEED0, runs / where, **({"dataset": dataset} if dataset else {}))
    before = sorted(tmp_path.rglob("*"))
    code, err = main(["report", str(runs)]), capsys.readouterr().err.strip()
    if reported is None:
        said = f"{runs} holds no runs of its own, only the runs roots {', '.join(str(runs / n) for n in inner)}"
        each = f"report each: rotnet report {runs / inner[0]}"
        assert code == 2 and err.splitlines() == [f"rotnet: error: {said}; {each}"]
        assert sorted(tmp_path.rglob("*")) == before
    else:
        assert code == 0, err
        results = json.loads((runs / "results.json").read_text())
        assert results.get("nested_roots", []) == inner
        inconsistent = [r["status"] for r in results["rows"] if "inconsistent" in r["status"]]
        assert bool(inconsistent) == (layout == "a moved run"), inconsistent
        assert sorted(r["data"] for r in results["rows"] if r["n"]) == reported, results["rows"]
        assert all(f"`rotnet report {runs / n}`" in (runs / "report.md").read_text() for n in inner)
    for n in inner:  # each inner root reports its own runs, naming runs/ where runs of it lie there too
        assert main(["report", str(runs / n)]) == 0, capsys.readouterr().err
        results = json.loads((runs / n / "results.json").read_text())
        assert results["outer_roots"] == ([str(runs)] if layout == "trained into a dataset's folder" else [])
        assert not any("inconsistent" in r["status"] for r in results["rows"]), results["rows"]
