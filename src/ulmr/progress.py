"""Progress bars (rich) shared by every long stage; quiet when ULMR_QUIET=1 (tests)."""

from __future__ import annotations

import os
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")
console = Console(stderr=True)


def quiet() -> bool:
    return os.environ.get("ULMR_QUIET") == "1"


def progress_bar() -> Progress:
    """A rich Progress with description, bar, count and times."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet(),
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (``total`` in items)."""
    with progress_bar() as bar:
        task = bar.add_task(description, total=total)
        for x in items:
            yield x
            bar.advance(task)
