"""Markdown for the report (rotnet.markdown): tables, code spans and epoch lists written as spans (property tests;
tables and code spans read back by a CommonMark parser with GFM tables, as GitHub renders them)."""

from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from rotnet.markdown import code, markdown_table, spans

GFM = MarkdownIt("commonmark").enable("table")
# What a user may name: any printable text, `|`, backticks, backslashes and line breaks among it.
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from("|`\\\n"), max_size=30)


@given(st.lists(st.lists(TEXT, min_size=3, max_size=3), min_size=1, max_size=3))
def test_a_table_reads_back_as_the_cells_it_was_given(rows):
    """A `|` in a cell (a status note naming a folder `a|b`) ended the cell, shifting every column after it, and a
    line break ended the table."""
    header = ["a", "b", "c"]
    tokens = GFM.parse("\n".join(markdown_table(header, rows)))
    cells = [t.content for t in tokens if t.type == "inline"]
    assert len(cells) == 3 * (1 + len(rows))
    given_cells = [" ".join(str(c).split()) for row in rows for c in row]  # a line break reads as a space
    assert [" ".join(c.split()) for c in cells[3:]] == given_cells


@given(TEXT.map(lambda t: " ".join(t.split())).filter(bool))  # one line, as a command or path in the report is
def test_a_code_span_holds_any_text_whole(text):
    """A command naming a folder with a backtick closed the span early: the rest read as markdown."""
    inline = GFM.parseInline(f"run {code(text)} now")[0].children
    assert [(t.type, t.content) for t in inline] == [("text", "run "), ("code_inline", text), ("text", " now")]


def test_examples():
    assert markdown_table(["a"], [["x|y"]])[2] == "| x\\|y |" and code("a`b") == "``a`b``" and code("`a") == "`` `a ``"


def test_a_table_has_a_header_a_rule_and_one_line_per_row():
    table = markdown_table(["a", "b"], [[1, 2.5], ["x", None]])
    assert table == ["| a | b |", "|---|---|", "| 1 | 2.5 |", "| x | None |"]


def unspan(text: str) -> list[int]:
    out = []
    for part in filter(None, text.split(", ")):
        a, _, b = part.partition("-")
        out += range(int(a), int(b or a) + 1)
    return out


@given(st.sets(st.integers(1, 200)))
def test_spans_name_exactly_the_epochs_given_and_join_only_neighbours(epochs):
    epochs = sorted(epochs)
    text = spans(epochs)
    assert unspan(text) == epochs
    parts = text.split(", ") if text else []
    assert len(parts) == sum(1 for i, e in enumerate(epochs) if i == 0 or epochs[i - 1] != e - 1)


def test_spans_examples():
    assert spans([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10" and spans([]) == "" and spans([4]) == "4"
