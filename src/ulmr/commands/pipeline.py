"""``ulmr unlearn`` (all stages) and the stage commands ``generate``, ``train`` and ``merge``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..methods.registry import method_names
from ..methods.ulmr import ULMR
from ..progress import console, set_verbose
from .common import CONFIG_OPTION, build_config

# Options shared by unlearn and its stages, defined once.
MODEL = typer.Option("smollm2-135m", "--model", "-m", help="Hugging Face id, local HF directory, .gguf file, or 'smollm2-135m' (embedded).")
FORGET = typer.Option(..., "--forget", "-f", help="Forget set: .json/.jsonl/.csv file or hub dataset id (name[:config]).")
QFIELD = typer.Option("question", help="Name of the question column.")
AFIELD = typer.Option("answer", help="Name of the answer column.")
RETAIN = typer.Option(None, "--retain", "-r", help="Retain set (same formats); mixed into training with its true answers.")
ANCHOR = typer.Option("builtin", help="'builtin': general questions answered by the base model, minus those naming what the forget set names, as the retain set when no --retain is given (ulmr: also beside --retain); 'none': never.")
RECIPE = typer.Option("default", help="'paper': Shi et al.'s exact recipe (no anchor, no answer term, generation filters only for empty, identical and duplicate texts, k 2, alpha 0.5 unless given); 'default': this project's defaults (README: where the defaults deviate from the paper).")
FILTERS = typer.Option("full", help="Generation filters: 'full' (key span, entities, refusals: ulmr.generate.filters) or 'paper' (only empty, identical and duplicate texts).")
METHOD = typer.Option("ulmr", help=f"Unlearning method: {', '.join(method_names())}.")
REWRITES = typer.Option(2, "--num-rewrites", "-k", help="Rewrites per instruction (the paper: 2).")
MODE = typer.Option("refusal", help="Negative responses: 'refusal' or 'counterfactual' (plausible but wrong).")
REWRITE_PROMPT = typer.Option("rewrite", help="Rewrite prompt: built-in name or path to a YAML prompt file.")
NEG_PROMPT = typer.Option(None, help="Negative prompt: built-in name or YAML path (default: by --mode).")
BACKEND = typer.Option("local", help="Generator backend: 'local' (batched generate) or 'openai' (any OpenAI-compatible server).")
GENERATOR = typer.Option(None, help="Local generator model (default: the model being unlearned, as in the paper).")
GEN_DTYPE = typer.Option(None, help="dtype of the local generator: float32 (default, the model's), bfloat16 or float16; a copy is cast, training stays float32. bfloat16 made generation 1.5x faster on a CPU with avx512_bf16, with different rows (docs/performance.md).")
OAI_URL = typer.Option(None, help="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")
OAI_MODEL = typer.Option(None, help="Model name to request from the OpenAI-compatible server.")
KEY_ENV = typer.Option("OPENAI_API_KEY", help="Environment variable holding the API key (never logged or saved).")
TEMP = typer.Option(0.7, help="Sampling temperature of the generator (0 = greedy).")
GEN_TOKENS = typer.Option(64, help="Max new tokens per generated rewrite or negative response.")
GEN_BS = typer.Option(32, help="Generation batch size (local backend).")
ALPHA = typer.Option(None, help="Averaging weight a in p_u = a*p_f + (1-a)*p_base (0 < a <= 1), or 'auto' (sweep on held-out probes); default 0.5 for ulmr, no averaging for other methods.")
EXTRAP = typer.Option(False, help="Allow a > 1 (task-vector extrapolation).")
EPOCHS = typer.Option(None, help="Training epochs (default: the method's).")
LR = typer.Option(None, help="Learning rate (default: the method's; for ulmr by model size: 1e-4 below 0.5B parameters, 3e-5 below 3B, else 1e-5).")
RETAIN_W = typer.Option(None, help="Weight λ of the retain/anchor NLL term (default: the method's; 2 for ulmr, 1 for the others).")
RETAIN_LOSS = typer.Option(
    None, help="ulmr's retain/anchor term: 'nll' (default: NLL of the retain answers) or 'kl' (KL to the model before training at "
    "those answers' positions: keeps its distributions instead of training on one sampled answer; loads a second copy of the model).")
BETA = typer.Option(None, help="β of dpo / npo and of ulmr's --answer-weight term (default 0.1).")
ANSWER_W = typer.Option(
    None, help="ulmr only: weight γ of an NPO term (β from --beta, default 0.1) that lowers the key-span tokens of the answer each "
    f"D_fr row replaced (default {ULMR.default_answer_weight:g}; 0 gives the paper's plain SFT). Without it, held-out paraphrases of the forget "
    "questions kept far more of their answers at the same alpha: docs/results/example_set.md.")
ANSWER_SRC = typer.Option(
    "model", help="ulmr's answer term lowers the key span where the model itself says it: in its own greedy answer to each "
    "D_fr question ('model', generated once before training, cached in the training dir), or in the data's "
    "original answer ('data').")
BS = typer.Option(4, help="Per-device batch size.")
ACCUM = typer.Option(1, help="Gradient accumulation steps.")
MAX_STEPS = typer.Option(-1, help="Stop after this many optimizer steps (-1: by epochs).")
MAXLEN = typer.Option(512, help="Max tokens per example (longer answers are truncated, with a warning).")
GROUP = typer.Option(False, help="Batch training rows of similar length together: less padding, a different data order (see docs/performance.md).")
SEED = typer.Option(0, help="Random seed (generation sampling, data order, refusal draws).")
LORA = typer.Option(False, help="Train a LoRA adapter (peft) instead of all weights; averaging scales the adapter.")
LORA_R = typer.Option(8, help="LoRA rank.")
KEEP = typer.Option(False, help="Also keep the fine-tuned model p_f (or adapter) in OUT/finetuned, for `ulmr sweep`.")
OVERWRITE = typer.Option(False, help="Replace an existing output directory.")
FRESH = typer.Option(False, help="Ignore cached generations and checkpoints of an interrupted run; start over.")
TRC = typer.Option(False, help="Allow custom model code from the hub (off by default).")
PICKLE = typer.Option(False, help="Allow loading pickle (.bin) checkpoints; safetensors only by default.")
BASE = typer.Option(None, help="For methods that start from the base model (retrain): the base model, when --model is a fine-tuned target.")
OUT = typer.Option(..., "--out", "-o", help="Output model directory (weights, tokenizer, model card; nothing of the forget set). Run records (D_fr, probes, full run record) go to OUT.records beside it.")
VERIFY = typer.Option(False, "--verify", help="After saving, check whether the forgotten knowledge comes back (ulmr verify; report in OUT.records/verify, summary on the model card).")
CARD_EXAMPLES = typer.Option(False, "--card-include-examples", help="Show a few forget-set questions on the model card (OUT/README.md); by default it has only the forget set's hash and size.")
PROBE = typer.Option(None, help="Held-out QA file (paraphrased forget questions) for --alpha auto and --verify (default: the generated probe rewrites).")
VERBOSE = typer.Option(False, "--verbose", help="Show the Trainer's own log lines and progress bar, and transformers' info logs.")
CKPT_STEPS = typer.Option(None, help="Save a training checkpoint every N steps (default: one per epoch; 0: none); a rerun resumes from the last.")


def unlearn_cmd(
    ctx: typer.Context,
    model: str = MODEL, forget: str = FORGET, out: Path = OUT,
    question_field: str = QFIELD, answer_field: str = AFIELD,
    retain: Optional[str] = RETAIN, anchor: str = ANCHOR, method: str = METHOD, recipe: str = RECIPE, base: Optional[str] = BASE,
    num_rewrites: int = REWRITES, filters: str = FILTERS, mode: str = MODE, rewrite_prompt: str = REWRITE_PROMPT, negative_prompt: Optional[str] = NEG_PROMPT,
    backend: str = BACKEND, generator: Optional[str] = GENERATOR, generator_dtype: Optional[str] = GEN_DTYPE, openai_base_url: Optional[str] = OAI_URL,
    openai_model: Optional[str] = OAI_MODEL, api_key_env: str = KEY_ENV, temperature: float = TEMP,
    max_new_tokens: int = GEN_TOKENS, gen_batch_size: int = GEN_BS,
    alpha: Optional[str] = ALPHA, allow_extrapolation: bool = EXTRAP,
    epochs: Optional[float] = EPOCHS, lr: Optional[float] = LR, retain_weight: Optional[float] = RETAIN_W, retain_loss: Optional[str] = RETAIN_LOSS, answer_weight: Optional[float] = ANSWER_W, answer_source: str = ANSWER_SRC, beta: Optional[float] = BETA, batch_size: int = BS, grad_accum: int = ACCUM,
    max_steps: int = MAX_STEPS, max_length: int = MAXLEN, group_by_length: bool = GROUP, seed: int = SEED, lora: bool = LORA, lora_r: int = LORA_R,
    checkpoint_steps: Optional[int] = CKPT_STEPS, keep_finetuned: bool = KEEP, overwrite: bool = OVERWRITE, fresh: bool = FRESH,
    trust_remote_code: bool = TRC, allow_pickle: bool = PICKLE, verify: bool = VERIFY, probe: Optional[str] = PROBE,
    card_include_examples: bool = CARD_EXAMPLES,
    config: Optional[Path] = CONFIG_OPTION, verbose: bool = VERBOSE,
) -> None:
    """Unlearn a forget set: generate D_fr, fine-tune, average with the base, save (ULMR by default)."""
    from ..config import UnlearnConfig  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..pipeline import unlearn  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    set_verbose(verbose)
    cfg = build_config(UnlearnConfig, ctx, config, dict(locals()))
    result = unlearn(cfg)
    counts = result.record.get("counts", {})
    console.print(
        f"[green]unlearned model saved to[/green] {result.out}  "
        f"(method {cfg.method}, alpha {result.record.get('alpha')}, {counts.get('train_rows')} training rows, "
        f"{result.record.get('timings_s', {}).get('total')} s)"
    )
    print(result.out)


def generate_cmd(
    ctx: typer.Context,
    model: str = MODEL, forget: str = FORGET, out: Path = OUT,
    question_field: str = QFIELD, answer_field: str = AFIELD,
    num_rewrites: int = REWRITES, filters: str = FILTERS, mode: str = MODE, rewrite_prompt: str = REWRITE_PROMPT, negative_prompt: Optional[str] = NEG_PROMPT,
    backend: str = BACKEND, generator: Optional[str] = GENERATOR, generator_dtype: Optional[str] = GEN_DTYPE, openai_base_url: Optional[str] = OAI_URL,
    openai_model: Optional[str] = OAI_MODEL, api_key_env: str = KEY_ENV, temperature: float = TEMP,
    max_new_tokens: int = GEN_TOKENS, gen_batch_size: int = GEN_BS, seed: int = SEED,
    trust_remote_code: bool = TRC, config: Optional[Path] = CONFIG_OPTION,
) -> None:
    """Build the restructured forget set D_fr (rewrites + negative responses) into OUT/d_fr.jsonl.

    Resumable: rerunning the same command reuses finished rows (cache in OUT/generation_cache.jsonl)."""
    from ..atomic import write_json, write_jsonl  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..config import (  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
        BackendConfig,
        GenerateConfig,
        UnlearnConfig,
    )
    from ..data.records import load_qa  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..models import load  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..pipeline import make_backend, run_generation  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    cfg = build_config(UnlearnConfig, ctx, config, dict(locals()))
    records = load_qa(cfg.forget, cfg.question_field, cfg.answer_field)
    # make_backend loads a separate --generator itself; the model is needed only when it is the generator.
    own = cfg.backend == "local" and not (cfg.generator and cfg.generator != cfg.model)
    m, tok = load(cfg.model, trust_remote_code=cfg.trust_remote_code) if own else (None, None)
    backend = make_backend(cfg.stage(BackendConfig), m, tok, cfg.model, cfg.trust_remote_code, cfg.allow_pickle)
    res = run_generation(cfg.stage(GenerateConfig), records, backend, cfg.out)
    write_jsonl(cfg.out / "d_fr.jsonl", res.rows)
    write_jsonl(cfg.out / "probe.jsonl", res.probes)
    write_json(cfg.out / "generation_stats.json", res.stats)
    console.print(f"[green]D_fr:[/green] {len(res.rows)} rows -> {cfg.out / 'd_fr.jsonl'}; probes -> {cfg.out / 'probe.jsonl'}; stats {res.stats}")


def train_cmd(
    ctx: typer.Context,
    model: str = MODEL,
    forget: str = typer.Option(..., "--data", "--forget", "-f", help="Training forget-side data: D_fr (for ulmr) or the forget set."),
    out: Path = OUT, question_field: str = QFIELD, answer_field: str = AFIELD,
    retain: Optional[str] = RETAIN, anchor: str = ANCHOR, method: str = METHOD, base: Optional[str] = BASE,
    epochs: Optional[float] = EPOCHS, lr: Optional[float] = LR, retain_weight: Optional[float] = RETAIN_W, retain_loss: Optional[str] = RETAIN_LOSS, answer_weight: Optional[float] = ANSWER_W, answer_source: str = ANSWER_SRC, beta: Optional[float] = BETA, batch_size: int = BS, grad_accum: int = ACCUM,
    max_steps: int = MAX_STEPS, max_length: int = MAXLEN, group_by_length: bool = GROUP, seed: int = SEED, lora: bool = LORA, lora_r: int = LORA_R,
    checkpoint_steps: Optional[int] = CKPT_STEPS, overwrite: bool = OVERWRITE, fresh: bool = FRESH,
    trust_remote_code: bool = TRC, allow_pickle: bool = PICKLE, card_include_examples: bool = CARD_EXAMPLES,
    config: Optional[Path] = CONFIG_OPTION, verbose: bool = VERBOSE,
) -> None:
    """Fine-tune with any method on the given data and save p_f (no generation, no averaging)."""
    from ..config import UnlearnConfig  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast
    from ..pipeline import unlearn  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    set_verbose(verbose)
    cfg = build_config(UnlearnConfig, ctx, config, dict(locals()))
    # The data is used as given (D_fr is already restructured) and nothing is averaged: this saves p_f.
    result = unlearn(cfg, generate_dfr=False, average=False)
    console.print(f"[green]fine-tuned model saved to[/green] {result.out}")


def merge_cmd(
    base: str = typer.Option(..., "--base", help="The original model p_theta."),
    finetuned: str = typer.Option(..., "--finetuned", help="The fine-tuned model p_f (a directory, or a LoRA adapter directory)."),
    alpha: float = typer.Option(0.5, help="a in p_u = a*p_f + (1-a)*p_theta (0 < a <= 1)."),
    allow_extrapolation: bool = EXTRAP,
    out: Path = OUT, overwrite: bool = OVERWRITE,
) -> None:
    """Average parameters: p_u = a*p_f + (1-a)*p_theta, saved as a normal HF model directory."""
    from ..merge import merge_models  # deferred: loads torch/transformers; keeps `ulmr --help` and option errors fast

    out_dir = merge_models(base, finetuned, alpha, out, allow_extrapolation=allow_extrapolation, overwrite=overwrite)
    console.print(f"[green]averaged model saved to[/green] {out_dir}")


def register(app: typer.Typer) -> None:
    app.command("unlearn")(unlearn_cmd)
    app.command("generate")(generate_cmd)
    app.command("train")(train_cmd)
    app.command("merge")(merge_cmd)
