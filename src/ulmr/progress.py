"""Progress bars (rich) shared by every long stage; quiet when ULMR_QUIET=1 (tests).

Library chatter (the Trainer's raw log dicts and tqdm bar, transformers' own "Loading weights" /
"Writing model shards" bars) stays off unless ``--verbose`` (or ULMR_VERBOSE=1) asks for it.
"""

from __future__ import annotations

import logging
import os
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

T = TypeVar("T")
console = Console(stderr=True)


def quiet() -> bool:
    return os.environ.get("ULMR_QUIET") == "1"


def verbose() -> bool:
    """True when the libraries' own logs and bars are wanted (``--verbose``, or ULMR_VERBOSE=1)."""
    return os.environ.get("ULMR_VERBOSE") == "1"


def set_verbose(on: bool) -> None:
    """``--verbose``: the Trainer's info logs, log lines and tqdm bar, and transformers' bars come back.

    Kept in the environment (like ULMR_QUIET) so processes started by ``accelerate launch`` see it too."""
    if not on:
        return
    os.environ["ULMR_VERBOSE"] = "1"
    from transformers.utils import logging as hf_logging

    logging.getLogger("transformers.trainer").setLevel(logging.INFO)  # not all of transformers: config dumps
    hf_logging.enable_progress_bar()


def silence_libraries() -> None:
    """Turn off transformers' own tqdm bars (loading weights, writing model shards) and absl's info lines
    (rouge_score's "Using default tokenizer."); the hub's download bars stay as they were."""
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    hub_bars_off = are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # also turns the hub's off: restored below
    if not hub_bars_off:
        enable_progress_bars()
    logging.getLogger("absl").setLevel(logging.WARNING)


def progress_bar(*extra: ProgressColumn) -> Progress:
    """A rich Progress with description, bar, count and times (then any ``extra`` columns)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra,
        console=console,
        disable=quiet(),
        transient=False,
    )


class RateColumn(ProgressColumn):
    """Items per second, e.g. '1.52 it/s'."""

    def render(self, task: Task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:.2f} it/s")


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (``total`` in items)."""
    with progress_bar() as bar:
        task = bar.add_task(description, total=total)
        for x in items:
            yield x
            bar.advance(task)
