"""How cost grows: ULMR and GradDiff against forget-set size, and training/scoring against model size.

Part 1 (``--sizes``): ``ulmr unlearn`` with each method's shipped defaults on the first N items of a TOFU forget
file, each run in its own process (wall time, stage times, peak RSS from ``getrusage``), then the exponent b of
wall time ~ N^b fitted by least squares on log-log axes.

Part 2 (``--model-sizes``): one AdamW step of answer NLL on batch 4 TOFU rows (median of ``--steps`` after a
warm-up) and the scoring of a fixed set of TOFU answers (gold, paraphrase, perturbations; no generation, since a
random model writes nothing the filters accept) for randomly initialised Llama models shaped like SmolLM2-135M and
SmolLM2-360M, and the exponent of time ~ parameters^b between them.

    python bench/growth.py --sizes 10,40,160 --out docs/results/perf_growth.json
    python bench/growth.py --sizes '' --model-sizes 135m,360m --out docs/results/perf_growth_models.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOFU = ROOT.parent / "shared" / "data" / "tofu"
# SmolLM2 shapes (hidden, intermediate, layers, heads, kv heads); vocabulary and the rest as the embedded model.
SHAPES = {"135m": (576, 1536, 30, 9, 3), "360m": (960, 2560, 32, 15, 5)}

CHILD = """
import json, resource, sys, time
from ulmr import unlearn
from ulmr.data.records import load_qa, save_qa
data, n, method, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
save_qa(out + ".forget.jsonl", load_qa(data)[:n])
t = time.perf_counter()
res = unlearn("smollm2-135m", out + ".forget.jsonl", out, method=method)
print(json.dumps({"wall_s": round(time.perf_counter() - t, 1), "timings_s": res.record["timings_s"],
                  "counts": res.record["counts"], "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y on log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def run_sizes(sizes: list[int], methods: list[str], data: str) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            for method in methods:
                out = subprocess.run([sys.executable, "-c", CHILD, data, str(n), method, f"{d}/{method}-{n}"],
                                     capture_output=True, text=True, env={**os.environ, "ULMR_QUIET": "1"})
                if out.returncode:
                    raise SystemExit(f"{method} at {n} items failed:\n{out.stderr[-3000:]}")
                row = {"items": n, "method": method, **json.loads(out.stdout.strip().splitlines()[-1])}
                rows.append(row)
                print(f"{method:9s} {n:4d} items: {row['wall_s']:8.1f} s, peak RSS {row['peak_rss_mb']} MB, "
                      f"stages {({k: round(v, 1) for k, v in row['timings_s'].items()})}", flush=True)
    fits = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        if len(mine) >= 2:
            fits[method] = {"wall_time_exponent": round(exponent([r["items"] for r in mine], [r["wall_s"] for r in mine]), 3),
                            "peak_rss_exponent": round(exponent([r["items"] for r in mine], [r["peak_rss_mb"] for r in mine]), 3)}
            print(f"{method}: wall time ~ items^{fits[method]['wall_time_exponent']}, "
                  f"peak RSS ~ items^{fits[method]['peak_rss_exponent']}")
    return {"runs": rows, "fits": fits}


def random_model(shape: str, tok):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, inter, layers, heads, kv = SHAPES[shape]
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, tie_word_embeddings=True, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg)


def run_models(shapes: list[str], steps: int, per_set: int) -> dict:
    import torch

    from ulmr.data.chat import IGNORE, ChatFormat, pad
    from ulmr.data.tofu import load_tofu
    from ulmr.eval.qa import QAItem, run_items
    from ulmr.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    cf = ChatFormat(tok)
    sets = load_tofu(TOFU, "forget01")
    items = [QAItem(it.question, it.answer, it.paraphrased, it.perturbed)
             for name in ("forget", "retain", "real_authors", "world_facts") for it in sets[name][:per_set]]
    encs = [cf.encode(it.question, it.answer) for it in items[:4]]
    batch = dict(input_ids=pad([e.input_ids for e in encs], tok.pad_token_id),
                 attention_mask=pad([[1] * len(e.input_ids) for e in encs], 0), labels=pad([e.labels for e in encs], IGNORE))
    rows = []
    for shape in shapes:
        model = random_model(shape, tok)
        params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        times = []
        for _ in range(steps + 1):
            t = time.perf_counter()
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        run_items(model, tok, items, batch_size=16, generate_answers=False)
        scoring = time.perf_counter() - t
        rows.append({"shape": shape, "parameters": params, "train_step_s": round(statistics.median(times[1:]), 2),
                     "train_tokens_per_step": int(batch["attention_mask"].sum()), "scoring_s": round(scoring, 1),
                     "scored_answers": sum(1 + (it.paraphrased is not None) + len(it.perturbed) for it in items)})
        print(json.dumps(rows[-1]), flush=True)
        del model, opt
    fits = {}
    if len(rows) >= 2:
        ps = [r["parameters"] for r in rows]
        fits = {"train_step_exponent": round(exponent(ps, [r["train_step_s"] for r in rows]), 3),
                "scoring_exponent": round(exponent(ps, [r["scoring_s"] for r in rows]), 3)}
        print(f"train step ~ parameters^{fits['train_step_exponent']}, scoring ~ parameters^{fits['scoring_exponent']}")
    return {"models": rows, "fits": fits}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,40,160", help="forget-set sizes ('' to skip part 1)")
    ap.add_argument("--methods", default="ulmr,graddiff")
    ap.add_argument("--data", default=str(TOFU / "forget10.jsonl"))
    ap.add_argument("--model-sizes", default="", help="e.g. 135m,360m ('' to skip part 2)")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per model size")
    ap.add_argument("--per-set", type=int, default=10, help="items per TOFU set scored per model size")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    result: dict = {"command": "python bench/growth.py " + " ".join(sys.argv[1:]),
                    "date": dt.datetime.now().isoformat(timespec="seconds"),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    if args.sizes:
        result["forget_set_sizes"] = run_sizes([int(s) for s in args.sizes.split(",")], args.methods.split(","), args.data)
    if args.model_sizes:
        result["model_sizes"] = run_models(args.model_sizes.split(","), args.steps, args.per_set)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
