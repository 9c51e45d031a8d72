"""End to end, as a newcomer meets rotnet: the README's commands and Python example run, its tables are the committed
reports' numbers, each committed results.json follows from its run records, and CI runs the README's test command."""

import re
import shutil
from itertools import dropwhile, takewhile
from pathlib import Path

import pytest

from rotnet.cli import main
from rotnet.report import read_results
from tests.helpers import TINY_PRESET

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
        ("### The paper protocol on a 2-core CPU (fp32)", "paper-cpu", "paper"),
        ("### Quick preset on a 2-core CPU (fp32)", "quick-cpu", "quick"),
    ],
)
def test_the_readmes_results_tables_are_the_committed_reports_numbers(heading, folder, preset):
    """Numbers shown in the README come from the committed report of the protocol they claim (the paper table:
    every row finished at the reference report's epochs): the mean, ± the std where there are several seeds, each seed's
    value and the paired gain where the table shows them. A run made before sealed records is still counted. A row
    of another arch than ResNet18 (the reference's deeper models) is named "EXPERIMENT (ResNetNN)"; every row the
    report has a number for is in the table."""
    results = read_results(RESULTS / folder / "results.json")  # committed by an older report: old row keys
    assert results["preset"] == preset
    rows = {
        (r["experiment"], r["arch"]): r for r in results["rows"] if r.get("data", "cifar10") == "cifar10"
    }  # fmt: skip
    if preset == "paper":  # ResNet18's five rows all run; a deeper row lands when its run finishes
        assert [r["n"] > 0 for (_, arch), r in rows.items() if arch == "resnet18"] == [True] * 5
        assert all(r["epochs"] == str(r["reference_epochs"]) for r in rows.values() if r["n"])
    header, shown_rows = readme_table(heading)
    named = {re.fullmatch(r"(.+?)(?: \((ResNet\d+)\))?", name).groups(): cells for name, cells in shown_rows.items()}
    table = {(experiment, (arch or "resnet18").lower()): cells for (experiment, arch), cells in named.items()}
    assert set(table) == {k for k, r in rows.items() if r["ours_mean"] is not None}
    for key, cells in table.items():
        row = rows[key]
        assert all(
            note == "ok" or note.endswith(("unsealed (made before rotnet 0.4)", "record only (no model.safetensors)"))
            for note in row["status"].split("; ")
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


def test_every_figure_in_the_readmes_paper_findings_is_one_the_report_computed():
    """The findings under the paper table are written by hand; each number of two decimals in that section (a mean, a
    gain, an interval's end, a gain at some epoch, a deeper model's difference) must be one results.json holds, so
    that a remade report cannot leave the prose behind it; and each finding's figures must come from the rows it
    names (a whole-network figure quoted in the layer4 finding fails)."""
    section = README.read_text().split("\n### The paper protocol on a 2-core CPU (fp32)\n", 1)[1]
    section = section.split("\n### ", 1)[0]
    results = read_results(RESULTS / "paper-cpu/results.json")

    def figures(*xs) -> set[str]:
        found: set[str] = set()

        def walk(x) -> None:
            if isinstance(x, int | float) and not isinstance(x, bool):
                found.add(f"{abs(x):.2f}")
            for v in x.values() if isinstance(x, dict) else x if isinstance(x, list) else ():
                walk(v)

        walk(list(xs))
        return found

    def said(text: str) -> list[str]:
        return re.findall(r"(?<![\d.])\d+\.\d\d(?!\d)", text)

    rows, deeper = results["rows"], results.get("deeper", [])
    assert len(said(section)) > 20 and [x for x in said(section) if x not in figures(rows, deeper)] == []
    names = {"layer4": "layer4", "whole": "full", "rotation": "rotation", "resnet34": None, "resnet50": None}
    bullets = "- " + section.split("\n\n- ", 1)[1].split("\n\n", 1)[0]
    findings = re.findall(r"^- (.+?)(?=^- |\Z)", bullets, re.M | re.S)
    assert len(findings) >= 3
    for finding in findings:
        named = {v for k, v in names.items() if k in finding.lower()}
        own = figures([r for r in rows if any(n and r["experiment"].startswith(n) for n in named)],
                      deeper if None in named else [])  # fmt: skip
        assert [x for x in said(finding) if x not in own] == [], finding[:60]


WITH_RECORDS = ("cross-dataset-cpu", "paper-cpu")  # the committed results whose run records are committed beside them


@pytest.mark.plots
@pytest.mark.parametrize("name", WITH_RECORDS)
def test_each_committed_report_is_what_todays_rotnet_makes_of_its_committed_records(name, tmp_path):
    """The README test ties the README to results.json; this ties each committed report to the records beside it:
    `rotnet report` of a copy of runs/ and reproduce.json writes the same report.md, results.json and results.csv
    and the same plots, so no committed number or word stands apart from its runs or from today's rotnet."""
    with_records = {p.parent.name for p in RESULTS.glob("*/results.json") if (p.parent / "runs").is_dir()}
    assert with_records == set(WITH_RECORDS)  # a new folder with records is checked too, once it is named here
    folder = RESULTS / name
    root = tmp_path / "root"
    shutil.copytree(folder / "runs", root)
    shutil.copy(folder / "reproduce.json", root)
    assert main(["report", str(root)]) == 0
    stale = [
        n for n in ("report.md", "results.json", "results.csv") if (root / n).read_text() != (folder / n).read_text()
    ]
    stale += (
        ["plots/"]
        if {p.name for p in (root / "plots").iterdir()} != {p.name for p in (folder / "plots").iterdir()}
        else []
    )
    assert not stale, (
        f"{', '.join(stale)} of docs/results/{name} differ; remake: python tools/restage_results.py {name}"
    )


def test_ci_runs_exactly_the_readmes_test_command():
    """CI runs the README's test command first and exactly, and the README names that command before anything that
    could be read as one."""
    text = README.read_text()
    block = text.split("Run the tests", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].strip()
    assert "pytest" not in text.split("Run the tests", 1)[0].split("## Quick start", 1)[1]
    ci = (README.parent / ".ci/run").read_text().splitlines()
    install = next(i for i, line in enumerate(ci) if "pip install" in line)
    steps = [line for line in ci[install + 1 :] if line and not line.startswith(("export ", "#"))]
    assert steps[0] == block


def anchors(page: Path) -> set[str]:
    """The #fragments GitHub gives a markdown page's headings (outside code blocks): lower case, punctuation but
    '-' and '_' dropped, spaces as '-', a repeated heading's with -1, -2, ..."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
    return {slug if not n else f"{slug}-{n}" for slug, count in seen.items() for n in range(count + 1)}


def test_every_link_between_the_docs_lands_on_a_page_and_a_heading_it_has():
    """A heading renamed (the results' "this machine's CPU", once their runs came from two CPUs) leaves every link to
    it pointing nowhere; GitHub then opens the page at its top, silently."""
    pages = [README, *README.parent.glob("docs/**/*.md")]
    assert len(pages) > 10
    for page in pages:
        for target, fragment in re.findall(r"\]\(([^)#:\s]*)#([^)\s]+)\)", page.read_text()):
            linked = page.parent / target if target else page
            assert linked.exists(), (page, target)
            assert linked.suffix != ".md" or fragment in anchors(linked), (page, target, fragment)


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

    from rotnet.experiments import plan
    from rotnet.protocol import Protocol, load_preset

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


def test_the_readmes_compute_is_the_committed_reports():
    """The README's core-hours for the paper table are results.json's `compute`, both ways of counting."""
    spent = read_results(RESULTS / "paper-cpu/results.json")["compute"]
    said = re.search(r"Compute, from the report: ([\d.]+) core-hours .*?; ([\d.]+) by the seconds", README.read_text())
    assert said and said.groups() == (f"{spent['core_hours_median']:.1f}", f"{spent['core_hours_recorded']:.1f}")
