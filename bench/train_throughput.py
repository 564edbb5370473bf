"""Throughput of the unlearning trainer against a bare PyTorch loop on the same batches.

Both train the same model (fresh copy per run) for the same steps on identical batches (the bare loop
replays the batches the trainer drew) with AdamW; the trainer runs the ``ulmr`` method without retain
rows, i.e. plain answer NLL, so the two do the same math. Reports medians over runs of total and answer
tokens per second and the overhead ratio (bare tokens/s ÷ trainer tokens/s; goal ≤ 1.10), prints a
table and writes docs/results/train_throughput.md.

usage: python bench/train_throughput.py [--model smollm2-135m] [--steps 20] [--runs 3] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ULMR_QUIET", "1")

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

import ulmr.train as train_mod  # noqa: E402
from ulmr.atomic import write_text  # noqa: E402
from ulmr.data.records import load_qa  # noqa: E402
from ulmr.models import load  # noqa: E402
from ulmr.train import TrainConfig, train_unlearn  # noqa: E402
from ulmr.training import data as tdata  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOFU = ROOT.parent / "shared" / "data" / "tofu" / "forget10.jsonl"


class StepTimer(TrainerCallback):
    """Wall-clock time at the end of every optimizer step (steady-state throughput skips step 1)."""

    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


class RecordingCollator(tdata.PartCollator):
    """The trainer's collator, remembering every batch it built so the bare loop can replay them."""

    batches: list[dict[str, torch.Tensor]] = []

    def __call__(self, rows):
        batch = super().__call__(rows)
        RecordingCollator.batches.append(batch)
        return batch


def counts(batches) -> tuple[int, int]:
    """(non-padding, answer) tokens of some batches."""
    total = sum(int(b["forget_attention_mask"].sum()) for b in batches)
    answer = sum(int((b["forget_labels"][:, 1:] != -100).sum()) for b in batches)
    return total, answer


def measure(start: float, ends: list[float], batches) -> dict[str, float]:
    """End-to-end seconds and tokens, and steady state: steps 2..N (no setup, no first-step warm-up)."""
    total, answer = counts(batches)
    s_total, s_answer = counts(batches[1:])
    return {"seconds": ends[-1] - start, "tokens": total, "answer": answer,
            "steady_seconds": ends[-1] - ends[0], "steady_tokens": s_total, "steady_answer": s_answer}


def run_trainer(base, tok, items, args) -> tuple[dict[str, float], list]:
    RecordingCollator.batches = []
    timer = StepTimer()
    cfg = TrainConfig(method="ulmr", epochs=1, max_steps=args.steps, batch_size=args.batch_size, lr=1e-5,
                      checkpoint_steps=0, logging_steps=args.steps, num_threads=args.threads)
    model = copy.deepcopy(base)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        res = train_unlearn(model, tok, items, None, cfg, Path(out), callbacks=[timer])
    batches = list(RecordingCollator.batches)[: args.steps]
    assert res.steps == args.steps and counts(batches)[0] == res.train_tokens
    return measure(start, timer.ends, batches), batches


def run_bare(base, batches, args) -> dict[str, float]:
    model = copy.deepcopy(base)
    model.train()
    start = time.perf_counter()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    ends = []
    for b in batches:
        out = model(input_ids=b["forget_input_ids"], attention_mask=b["forget_attention_mask"], labels=b["forget_labels"])
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ends.append(time.perf_counter())
    return measure(start, ends, batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "train_throughput.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    base, tok = load(args.model)
    items = load_qa(TOFU, limit=args.steps * args.batch_size)
    train_mod.PartCollator = RecordingCollator  # train_unlearn builds its collator from this name
    rows = {"trainer": [], "bare": []}
    for r in range(args.runs):
        m, batches = run_trainer(base, tok, items, args)
        rows["trainer"].append(m)
        rows["bare"].append(run_bare(base, batches, args))
        print(f"run {r + 1}: trainer {m['seconds']:.1f}s, bare {rows['bare'][-1]['seconds']:.1f}s", file=sys.stderr)

    def med(runs, num, den):
        return statistics.median(x[num] / x[den] for x in runs)

    table = [
        "| loop | median s (end to end) | tok/s total | tok/s answer | steady tok/s total | steady tok/s answer |",
        "|---|---|---|---|---|---|",
    ]
    for label, key in (("UnlearnTrainer (ulmr = answer NLL)", "trainer"), ("bare PyTorch loop", "bare")):
        runs = rows[key]
        table.append(
            f"| {label} | {statistics.median(x['seconds'] for x in runs):.1f} | {med(runs, 'tokens', 'seconds'):.1f} | "
            f"{med(runs, 'answer', 'seconds'):.1f} | {med(runs, 'steady_tokens', 'steady_seconds'):.1f} | "
            f"{med(runs, 'steady_answer', 'steady_seconds'):.1f} |"
        )
    ratio = med(rows["bare"], "tokens", "seconds") / med(rows["trainer"], "tokens", "seconds")
    steady = med(rows["bare"], "steady_tokens", "steady_seconds") / med(rows["trainer"], "steady_tokens", "steady_seconds")
    per_run = f"{rows['trainer'][0]['tokens']} tokens ({rows['trainer'][0]['answer']} answer) per run"
    summary = (f"Overhead ratio, bare tok/s ÷ trainer tok/s (goal ≤ 1.10): end to end **{ratio:.3f}**, "
               f"steady state (steps 2..{args.steps}) **{steady:.3f}**; {per_run}.")
    print("\n".join(table) + "\n\n" + summary)
    cmd = "python bench/train_throughput.py " + " ".join(sys.argv[1:])
    doc = f"""# Training throughput: UnlearnTrainer vs a bare PyTorch loop

- Command: `{cmd.strip()}`
- Date: {dt.datetime.now().isoformat(timespec="minutes")}
- Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} (CPU), {args.threads} threads
- Model: {args.model}; {args.steps} steps of batch {args.batch_size} (TOFU forget10 items), AdamW lr 1e-5,
  fresh model copy per run; medians of {args.runs} runs each, runs alternating.
- Both loops see identical batches (the bare loop replays the trainer's). The trainer computes the answer
  NLL with logits only over the answer window and clips gradients (HF default, max norm 1.0); the bare loop
  uses the model's own loss on full logits. End to end includes the trainer's setup (accelerate, optimizer,
  encoding); steady state counts steps 2..N only. Other jobs shared the CPU, so absolute numbers are noisy.

{chr(10).join(table)}

{summary}
"""
    write_text(args.out, doc)


if __name__ == "__main__":
    main()
