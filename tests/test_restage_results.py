"""tools/restage_results.py --add: a long run landing in docs/results plan by plan, as issue 32's does (one seed's
plan finishes and lands, the next plan on the same runs root reuses it and lands later)."""

import importlib.util
import json
from pathlib import Path

import pytest

from rotnet.layout import CONFIG, INVOCATION_KEYS, METRICS, RESULT, VERIFY

TOOL = Path(__file__).resolve().parent.parent / "tools/restage_results.py"


@pytest.fixture(scope="module")
def restage():
    spec = importlib.util.spec_from_file_location("restage_results", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plan(started: float, runs: list[str], earlier: list[dict] = ()) -> dict:
    """A plan's log as the runner writes it (its own keys, and every earlier invocation's)."""
    own = {
        "command": f"rotnet reproduce ({started})",
        "git_commit": "abc",
        "started": started,
        "finished": started + 1,
        "wall_seconds": 1.0,
        "runs": runs,
    }
    return own | {"preset": "paper", "earlier": [{k: e[k] for k in INVOCATION_KEYS} for e in earlier]}


def write_run(root: Path, relative: str, *, acc: str = "50.0", verify: bool = False) -> None:
    run = root / relative
    run.mkdir(parents=True)
    for name, text in [(CONFIG, "{}"), (METRICS, "{}\n"), (RESULT, f'{{"test_acc": {acc}}}')]:
        (run / name).write_text(text)
    if verify:
        (run / VERIFY).write_text('{"verified": true}')


def test_a_root_landed_after_each_of_its_plans_holds_every_invocation_once(restage, tmp_path):
    """Seeds 0-2 committed (one of their invocations by an older rotnet); the long run's root lands after its
    seed-3 plan, again while its seeds-3,4 plan runs (whose log holds the seed-3 plan as earlier), once more when
    that plan has finished, and again unchanged: every invocation once, oldest first, the last plan as it ended."""
    committed, root = tmp_path / "committed", tmp_path / "root"
    (committed / "runs").mkdir(parents=True)
    first = plan(100.0, ["resnet18/rotation/seed0"])
    first["earlier"] = [{"command": "rotnet reproduce (0.3.0)", "started": 50.0}]  # as rotnet 0.3 kept them
    (committed / "reproduce.json").write_text(json.dumps(first))
    write_run(root, "resnet18/rotation/seed3")
    seed3 = plan(200.0, ["resnet18/rotation/seed3"])
    (root / "reproduce.json").write_text(json.dumps(seed3))
    assert restage.add_runs(committed, root) == 1
    both = plan(300.0, ["resnet18/rotation/seed3", "resnet18/rotation/seed4"], earlier=[seed3])
    running = {k: v for k, v in both.items() if k not in ("finished", "wall_seconds")}
    (root / "reproduce.json").write_text(json.dumps(running))
    assert restage.add_runs(committed, root) == 0  # seed 3 is there already; seed 4 has not finished
    write_run(root, "resnet18/rotation/seed4")
    (root / "reproduce.json").write_text(json.dumps(both))
    assert restage.add_runs(committed, root) == 1
    landed = (committed / "reproduce.json").read_text()
    assert restage.add_runs(committed, root) == 0 and (committed / "reproduce.json").read_text() == landed
    log = json.loads(landed)
    assert log["started"] == 300.0 and log["finished"] == 301.0
    assert [e["started"] for e in log["earlier"]] == [50.0, 100.0, 200.0]
    assert log["earlier"][0] == first["earlier"][0]  # copied as stored
    assert sorted(p.parent.name for p in (committed / "runs").glob("*/*/seed*/result.json")) == ["seed3", "seed4"]


@pytest.mark.parametrize(
    "later, refused",
    [
        ("verify", False),  # its verify.json made after it landed: added beside the committed record
        ("same", False),  # nothing new: nothing copied, nothing refused
        ("other result", True),  # another run's record under the same name: never replaced
    ],
)
def test_a_landed_run_gains_the_files_made_since_and_is_never_replaced(restage, tmp_path, later, refused):
    committed, root = tmp_path / "committed", tmp_path / "root"
    (committed / "runs").mkdir(parents=True)
    (committed / "reproduce.json").write_text(json.dumps(plan(100.0, [])))
    (root).mkdir()
    (root / "reproduce.json").write_text(json.dumps(plan(200.0, ["resnet18/rotation/seed3"])))
    write_run(committed / "runs", "resnet18/rotation/seed3")
    write_run(
        root, "resnet18/rotation/seed3", acc="51.0" if later == "other result" else "50.0", verify=later == "verify"
    )
    if refused:
        with pytest.raises(SystemExit, match="already committed with other files"):
            restage.add_runs(committed, root)
        assert json.loads((committed / "runs/resnet18/rotation/seed3" / RESULT).read_text())["test_acc"] == 50.0
        return
    assert restage.add_runs(committed, root) == 0
    assert (committed / "runs/resnet18/rotation/seed3" / VERIFY).is_file() == (later == "verify")


@pytest.mark.parametrize("log", [None, "{not json", "[]"])
def test_a_root_without_a_readable_plan_log_is_refused_before_anything_is_copied(restage, tmp_path, log):
    committed, root = tmp_path / "committed", tmp_path / "root"
    (committed / "runs").mkdir(parents=True)
    (committed / "reproduce.json").write_text(json.dumps(plan(100.0, [])))
    write_run(root, "resnet18/rotation/seed3")
    if log is not None:
        (root / "reproduce.json").write_text(log)
    with pytest.raises(SystemExit, match="holds no readable reproduce.json"):
        restage.add_runs(committed, root)
    assert list((committed / "runs").iterdir()) == []
