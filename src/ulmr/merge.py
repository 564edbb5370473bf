"""Parameter averaging: p_u = α·p_f + (1−α)·p_θ (the paper's step 6), for full weights and for LoRA.

Written as p_u = p_θ + α·(p_f − p_θ), the same formula covers task-vector extrapolation (α > 1), which is
allowed only when asked for. Base weights are streamed from the base model's safetensors files one
tensor at a time, so no second full model is held in memory. For LoRA the update p_f − p_θ is the
adapter's delta, so averaging is scaling the adapter by α and merging it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open
from transformers import PreTrainedModel

from .errors import ConfigError, ModelError

VARIANTS = ("linear",)


def check_alpha(alpha: float, allow_extrapolation: bool = False, allow_zero: bool = False) -> float:
    """Validate α: 0 < α ≤ 1 (0 ≤ α with ``allow_zero``), α > 1 only with ``allow_extrapolation``."""
    if alpha is None or isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or math.isnan(alpha):
        raise ConfigError(f"--alpha must be a number, got {alpha!r}")
    low_ok = alpha >= 0 if allow_zero else alpha > 0
    if not low_ok:
        raise ConfigError(f"--alpha {alpha} is out of range: need {'0 <=' if allow_zero else '0 <'} alpha <= 1")
    if alpha > 1 and not allow_extrapolation:
        raise ConfigError(f"--alpha {alpha} > 1 extrapolates the task vector; pass --allow-extrapolation to allow it")
    return float(alpha)


def _safetensor_files(model_dir: str | Path) -> list[Path]:
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model_dir / s for s in shards]
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{model_dir}: no safetensors weights to average with")
    return files


def iter_base_tensors(model_dir: str | Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor) of a saved model, one tensor at a time."""
    for f in _safetensor_files(model_dir):
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():
                yield name, st.get_tensor(name)


@torch.no_grad()
def average_into(finetuned: PreTrainedModel, base_dir: str | Path, alpha: float) -> PreTrainedModel:
    """Overwrite ``finetuned``'s parameters in place with α·p_f + (1−α)·p_θ, p_θ read from ``base_dir``.

    Raises a one-line error when architectures or shapes differ.
    """
    params = dict(finetuned.state_dict(keep_vars=True))
    seen: set[int] = set()
    matched = 0
    for name, base in iter_base_tensors(base_dir):
        p = params.get(name)
        if p is None:
            raise ModelError(f"cannot average: base weight '{name}' has no counterpart in the fine-tuned model (different architecture?)")
        if tuple(p.shape) != tuple(base.shape):
            raise ModelError(f"cannot average: '{name}' has shape {tuple(p.shape)} vs {tuple(base.shape)} in the base model")
        if id(p) in seen:  # tied weights appear once in memory
            continue
        seen.add(id(p))
        base = base.to(device=p.device, dtype=torch.float32)
        merged = base + alpha * (p.data.float() - base)
        p.data.copy_(merged.to(p.dtype))
        matched += 1
    missing = len({id(t) for t in params.values() if t.is_floating_point()}) - matched
    if missing > 0:
        raise ModelError(f"cannot average: {missing} fine-tuned tensors are missing from the base model at {base_dir}")
    return finetuned


@torch.no_grad()
def average_state_dicts(base: dict[str, torch.Tensor], finetuned: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """p_u = p_θ + α·(p_f − p_θ) for two in-memory state dicts (used by the α sweep)."""
    if base.keys() != finetuned.keys():
        diff = sorted(set(base) ^ set(finetuned))[:3]
        raise ModelError(f"cannot average: parameter names differ ({', '.join(diff)} ...)")
    out = {}
    for name, b in base.items():
        f = finetuned[name]
        if b.shape != f.shape:
            raise ModelError(f"cannot average: '{name}' has shape {tuple(f.shape)} vs {tuple(b.shape)} in the base model")
        out[name] = (b.float() + alpha * (f.float() - b.float())).to(f.dtype) if f.is_floating_point() else f
    return out


@torch.no_grad()
def scale_lora(peft_model, alpha: float):
    """Average a LoRA model with its base: scale every adapter delta by α, then merge and unload.

    p_θ + α·ΔW is exactly α·(p_θ + ΔW) + (1−α)·p_θ, with no second copy of the model.
    """
    from peft.tuners.lora import LoraLayer

    for module in peft_model.modules():
        if isinstance(module, LoraLayer):
            for name in list(module.scaling):
                module.scaling[name] = module.scaling[name] * alpha
    return peft_model.merge_and_unload()


def merge_models(base: str, finetuned: str, alpha: float, out, allow_extrapolation: bool = False, overwrite: bool = False):
    """Load p_f (full model or LoRA adapter dir), average it with ``base`` and save to ``out`` atomically."""
    from pathlib import Path

    from .atomic import atomic_dir, write_json
    from .models import load, load_tokenizer

    alpha = check_alpha(alpha, allow_extrapolation)
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"output directory {out} exists; pass --overwrite to replace it")
    from .pipeline import base_weights_dir

    fdir = Path(finetuned)
    if (fdir / "adapter_config.json").exists():
        from peft import PeftModel

        model, tok = load(base)
        merged = scale_lora(PeftModel.from_pretrained(model, str(fdir)), alpha)
    else:
        model, _ = load(finetuned)
        tok = load_tokenizer(base)
        merged = average_into(model, base_weights_dir(base), alpha)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json(tmp / "ulmr_merge.json", {"base": base, "finetuned": str(finetuned), "alpha": alpha, "variant": "linear"})
    return out
