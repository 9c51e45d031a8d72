"""Markdown for the report's tables."""

from __future__ import annotations


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table's lines."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
