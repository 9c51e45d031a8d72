"""Markdown for the report's tables, and for text a user chose (paths, commands) set in it."""

from __future__ import annotations

import re


def cell(value: object) -> str:
    """A table cell's text: a `|` in it (a folder named `a|b` in a status note) ends the cell and shifts every
    column after it, and a line break ends the table, unless escaped."""
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def code(text: object) -> str:
    """Text as a code span, whatever backticks it holds (a path named with one closed a single-backtick span early):
    fenced by one more backtick than its longest run, as CommonMark reads it."""
    text = str(text).replace("\n", " ")
    fence = "`" * (1 + max((len(run) for run in re.findall("`+", text)), default=0))
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table's lines."""
    out = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(map(cell, row)) + " |" for row in rows]


def spans(epochs: list[int]) -> str:
    """[1, 2, 3, 7, 9, 10] -> "1-3, 7, 9-10"."""
    out, start = [], None
    for i, e in enumerate(epochs):
        start = e if start is None else start
        if i + 1 == len(epochs) or epochs[i + 1] != e + 1:
            out.append(f"{start}" if start == e else f"{start}-{e}")
            start = None
    return ", ".join(out)
