"""The sweep behind the demo's settings (docs/results/demo.md): train ULMR's p_f once on the demo forget
set with the given lr / λ / LoRA, then measure the demo's numbers at several α without writing models.

usage: python bench/demo_settings_sweep.py NAME LR EPOCHS ALPHAS [--retain-weight 2] [--retain-loss nll|kl] [--answer-weight G] [--answer-source model|data] [--beta B] [--seed S]
           [--method M] [--mode refusal|counterfactual] [--lora] [--dfr D_FR.jsonl] [--general]
       e.g. python bench/demo_settings_sweep.py lr1e-4 1e-4 3 0.4,0.5,0.6 --retain-weight 2
Reuse the D_fr of a first run (OUT/NAME.records/d_fr.jsonl) with --dfr so configurations differ in training only.
--auto also runs what `--alpha auto` runs (the sweep over ulmr.sweep.AUTO_ALPHAS on the run's held-out probe
rewrites and the built-in anchor) and reports the α it picks (with --dfr: the first run's probe.jsonl beside it).
--general also measures the example set's unrelated general questions (issue 2's second goal).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("ULMR_QUIET", "1")

from ulmr.anchor import anchor_set  # noqa: E402
from ulmr.config import UnlearnConfig  # noqa: E402
from ulmr.data.records import load_qa  # noqa: E402
from ulmr.demo import DEMO_MODEL, DEMO_SETS, RULES, demo_sets, measure  # noqa: E402
from ulmr.merge import Interpolator  # noqa: E402
from ulmr.models import base_weights_dir, cached_model_dir, load  # noqa: E402
from ulmr.paths import find_run_file, resources_dir  # noqa: E402
from ulmr.pipeline import unlearn  # noqa: E402
from ulmr.sweep import AUTO_ALPHAS, select_alpha, sweep  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("lr", type=float)
    ap.add_argument("epochs", type=float)
    ap.add_argument("alphas")
    ap.add_argument("--retain-weight", type=float, default=None)
    ap.add_argument("--retain-loss", default=None, choices=["nll", "kl"], help="ulmr's retain/anchor term")
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--dfr", default=None, help="an existing D_fr (skips generation)")
    ap.add_argument("--general", action="store_true", help="also measure resources/demo/general.jsonl")
    ap.add_argument("--answer-weight", type=float, default=None, help="ulmr's NPO term on the original answers")
    ap.add_argument("--answer-source", default="model", choices=["model", "data"], help="where the answer term finds the key span")
    ap.add_argument("--beta", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", default="ulmr")
    ap.add_argument("--mode", default="refusal", choices=["refusal", "counterfactual"])
    ap.add_argument("--auto", action="store_true", help="also report the α that --alpha auto picks")
    ap.add_argument("--out", default="/tmp/ulmr_demo_sweep")
    args = ap.parse_args()
    out = Path(args.out)
    sets = demo_sets()
    if args.general:
        sets["general"] = load_qa(resources_dir() / "demo" / "general.jsonl")
    model, tok = load(DEMO_MODEL)
    before, _ = measure(model, tok, sets)
    anchor = anchor_set(model, tok, cached_model_dir(DEMO_MODEL))[:32] if args.auto else []  # as choose_alpha takes it
    del model
    forget = args.dfr or str(resources_dir() / "demo" / DEMO_SETS["forget"])
    cfg = UnlearnConfig(model=DEMO_MODEL, forget=forget, out=out / args.name, method=args.method, mode=args.mode,
                        lr=args.lr, epochs=args.epochs, seed=args.seed, answer_weight=args.answer_weight, answer_source=args.answer_source,
                        beta=args.beta,
                        retain_weight=args.retain_weight, retain_loss=args.retain_loss, lora=args.lora, lora_r=16, alpha=0.5,
                        keep_finetuned=True, overwrite=True)
    unlearn(cfg, generate_dfr=args.dfr is None)
    ft = out / args.name / "finetuned"
    if (ft / "adapter_config.json").exists():
        from peft import PeftModel

        base, tok = load(DEMO_MODEL)
        model = PeftModel.from_pretrained(base, str(ft))
        interp = Interpolator(model)
    else:
        model, tok = load(str(ft))
        interp = Interpolator(model, base_weights_dir(DEMO_MODEL))
    results = {"before": before, "settings": vars(args), "points": {}}
    if args.auto:
        probe_file = find_run_file(out / args.name, "probe.jsonl") or (Path(args.dfr).with_name("probe.jsonl") if args.dfr else None)
        auto = sweep(model, tok, base_weights_dir(DEMO_MODEL), AUTO_ALPHAS, load_qa(probe_file), anchor)
        chosen, rule = select_alpha(auto)
        results["auto"] = {"chosen": chosen, "rule": rule, "curve": [p.as_dict() for p in auto]}
        print(f"--alpha auto would pick {chosen} ({rule})", flush=True)
    for a in (float(x) for x in args.alphas.split(",")):
        interp.set(a)
        after, _ = measure(model, tok, sets)
        checks = {name: bool(rule(before, after)) for name, rule in RULES}
        results["points"][a] = {"after": after, "checks": checks}
        print(f"alpha {a}: " + ", ".join(f"{k} {v * 100:.1f}" for k, v in after.items()), list(checks.values()), flush=True)
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
