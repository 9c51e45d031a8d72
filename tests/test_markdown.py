"""Markdown for the report (rotnet.markdown): tables, and epoch lists written as spans (a property test)."""

from hypothesis import given
from hypothesis import strategies as st

from rotnet.markdown import markdown_table, spans


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
