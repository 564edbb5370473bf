"""Run the ``ulmr`` CLI with test hooks, so subprocess tests can kill it at a chosen point.

    python tests/scripts/ulmr_patched.py [hooks] -- <ulmr arguments>

Hooks (all optional):
  --gen-sleep S         sleep S seconds after every generation batch (a window to kill mid-generation)
  --step-sleep S        sleep S seconds before every optimizer step (a window to kill mid-training)
  --step-log FILE       append the trainer's global_step before every step (which steps this process ran)
  --save-signal FILE    in the final save, write the weights, create FILE, then sleep (kill mid-save)
  --save-sleep S        how long the save hook sleeps after the signal (default 60)
  --enospc-on-save      in the final save, write the weights, then fail with ENOSPC (disk full)

Everything else is the real CLI (``ulmr.cli.main``): same options, errors and exit codes.
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
from pathlib import Path


def _hook_generation(sleep_s: float) -> None:
    from ulmr.generate import backends

    orig = backends.LocalBackend.chat

    def chat(self, *args, **kwargs):
        out = orig(self, *args, **kwargs)
        time.sleep(sleep_s)
        return out

    backends.LocalBackend.chat = chat


def _hook_training(sleep_s: float, step_log: Path | None) -> None:
    from ulmr.training import trainer

    orig = trainer.UnlearnTrainer.training_step

    def training_step(self, *args, **kwargs):
        if step_log is not None:
            with open(step_log, "a", encoding="utf-8") as f:
                f.write(f"{self.state.global_step}\n")
        if sleep_s:
            time.sleep(sleep_s)
        return orig(self, *args, **kwargs)

    trainer.UnlearnTrainer.training_step = training_step


def _hook_save(signal: Path | None, sleep_s: float, enospc: bool) -> None:
    from ulmr import pipeline

    def save_model(model, tokenizer, out_dir) -> None:
        # Part of the files (the weights) are on disk when the interruption comes.
        model.save_pretrained(out_dir, safe_serialization=True)
        if enospc:
            raise OSError(errno.ENOSPC, "No space left on device")
        if signal is not None:
            signal.write_text("saving\n")
        time.sleep(sleep_s)
        tokenizer.save_pretrained(out_dir)

    pipeline.save_model = save_model


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser()
    p.add_argument("--gen-sleep", type=float, default=0.0)
    p.add_argument("--step-sleep", type=float, default=0.0)
    p.add_argument("--step-log", type=Path)
    p.add_argument("--save-signal", type=Path)
    p.add_argument("--save-sleep", type=float, default=60.0)
    p.add_argument("--enospc-on-save", action="store_true")
    hooks = p.parse_args(argv[:split])
    if hooks.gen_sleep:
        _hook_generation(hooks.gen_sleep)
    if hooks.step_sleep or hooks.step_log:
        _hook_training(hooks.step_sleep, hooks.step_log)
    if hooks.save_signal or hooks.enospc_on_save:
        _hook_save(hooks.save_signal, hooks.save_sleep, hooks.enospc_on_save)

    from ulmr.cli import main as cli_main

    cli_main(argv[split + 1 :])


if __name__ == "__main__":
    main()
