"""The ``ulmr`` command line: a thin typer app; each command group lives in ``ulmr/commands/<name>.py``
and exposes ``register(app)``. Errors from bad input print one line and exit 2 (``--debug`` for traces)."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer
from pydantic import ValidationError

from .errors import UlmrError, validation_message
from .progress import console, silence_libraries, verbose

COMMAND_MODULES = ["pipeline", "demo", "sweep", "verify", "bench", "evaluate", "compare"]

app = typer.Typer(
    name="ulmr",
    help="Unlearning for LLMs: ULMR (negative responses + parameter averaging), baselines, TOFU/RWKU evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"ulmr.commands.{_name}").register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app, turning user errors into one line on stderr and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if debug else "%(message)s",
    )
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub", "datasets", "transformers", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not debug else logging.INFO)
    # The hub's "Retrying in 1s" warnings: a failed download ends in one error line of ours instead.
    logging.getLogger("huggingface_hub.utils._http").setLevel(logging.INFO if debug else logging.ERROR)
    if not (debug or verbose()):
        silence_libraries()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(args=argv, standalone_mode=True)
    except UlmrError as e:
        if debug:
            raise
        console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except ValidationError as e:
        # One that no command turned into a ConfigError: still one line naming the option, exit 2.
        if debug:
            raise
        console.print(f"[red]error:[/red] {validation_message(e)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except SystemExit as e:
        # typer/click raise SystemExit; unwrap UlmrError raised inside standalone mode
        raise e


if __name__ == "__main__":
    main()
