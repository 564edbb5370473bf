"""Report writing shared by every evaluator: per-item JSON, summary JSON, a Markdown table and a rich table."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table as RichTable

from ..atomic import write_json, write_text
from ..progress import console


@dataclass
class Table:
    """A results table: ``header`` names the columns, each row is already formatted text."""

    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def fmt(x: float | None, scale: float = 1.0, digits: int = 2) -> str:
    """Number as text ('-' for None/NaN); ``scale`` 100 turns a fraction into %."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    v = x * scale
    if v != 0 and abs(v) < 10 ** -digits:
        return f"{v:.2e}"
    return f"{v:.{digits}f}"


def slash(values: list[float | None], scale: float = 1.0) -> str:
    """'a / b / c' like the seed paper's tables."""
    return " / ".join(fmt(v, scale) for v in values)


def markdown(table: Table) -> str:
    """The table as GitHub Markdown, with its title and notes."""
    lines = [f"### {table.title}", "", "| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(r) + " |" for r in table.rows]
    if table.notes:
        lines += [""] + [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def print_table(table: Table) -> None:
    """Print the table to stderr with rich."""
    rt = RichTable(title=table.title, show_lines=False)
    for h in table.header:
        rt.add_column(h, overflow="fold")
    for r in table.rows:
        rt.add_row(*r)
    console.print(rt)
    for n in table.notes:
        console.print(f"  {n}", highlight=False)


def write_report(out_dir: str | Path, per_item: dict[str, Any], summary: dict[str, Any], table: Table,
                 show: bool = True) -> dict[str, Path]:
    """Write ``per_item.json``, ``summary.json`` and ``table.md`` atomically into ``out_dir``; print the table."""
    out = Path(out_dir)
    paths = {"per_item": out / "per_item.json", "summary": out / "summary.json", "table": out / "table.md"}
    write_json(paths["per_item"], per_item)
    write_json(paths["summary"], summary)
    write_text(paths["table"], markdown(table))
    if show:
        print_table(table)
        console.print(f"results written to {out}", highlight=False)
    return paths
