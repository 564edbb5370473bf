"""Parameter averaging: p_u = α·p_f + (1−α)·p_θ (the paper's step 6), for full weights and for LoRA.

Written as p_u = p_θ + α·(p_f − p_θ), the same formula covers task-vector extrapolation (α > 1), which is
allowed only when asked for. To save a model, base weights are streamed from the base model's safetensors
files one tensor at a time, so no second full model is held in memory (the sweep's :class:`Interpolator`
keeps both, to set any α again). For LoRA the update p_f − p_θ is the adapter's delta, so averaging is
scaling the adapter by α and merging it.

One formula (:func:`interpolate`), one tied-weight rule (:func:`paired_base_tensors`) and one LoRA
scaling (:func:`scale_adapters`) serve ``ulmr merge``, the pipeline (:func:`average_model`) and the α sweep
(:class:`Interpolator`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import safe_open
from transformers import PreTrainedModel

from .atomic import atomic_dir, write_json
from .card import merge_card, save_card
from .config import check_alpha
from .errors import ConfigError, ModelError
from .models import base_weights_dir, load, load_tokenizer

VARIANTS = ("linear",)


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


def interpolate(base: torch.Tensor, finetuned: torch.Tensor, alpha: float) -> torch.Tensor:
    """p_θ + α·(p_f − p_θ) for one tensor: computed in float32 on ``finetuned``'s device, returned in its dtype."""
    base = base.to(device=finetuned.device, dtype=torch.float32)
    return (base + alpha * (finetuned.float() - base)).to(finetuned.dtype)


def paired_base_tensors(model: PreTrainedModel, base_dir: str | Path) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (the model's tensor, its base tensor) for every weight saved in ``base_dir``, streamed.

    Tied weights (one tensor under two names, e.g. ``embed_tokens`` and a tied ``lm_head``) are one object
    in memory and are paired once, whichever of their names the base files hold. Raises a one-line error
    when a name or shape does not match, or (after the last pair) when a fine-tuned tensor has no base weight.
    """
    params = dict(model.state_dict(keep_vars=True))
    seen: set[int] = set()
    for name, base in iter_base_tensors(base_dir):
        p = params.get(name)
        if p is None:
            raise ModelError(f"cannot average: base weight '{name}' has no counterpart in the fine-tuned model (different architecture?)")
        if tuple(p.shape) != tuple(base.shape):
            raise ModelError(f"cannot average: '{name}' has shape {tuple(p.shape)} vs {tuple(base.shape)} in the base model")
        if id(p) in seen:
            continue
        seen.add(id(p))
        yield p, base
    missing = {id(t): name for name, t in params.items() if t.is_floating_point() and id(t) not in seen}
    if missing:
        raise ModelError(f"cannot average: {len(missing)} fine-tuned tensors are missing from the base model at {base_dir} "
                         f"(first: '{next(iter(missing.values()))}')")


@torch.no_grad()
def average_into(finetuned: PreTrainedModel, base_dir: str | Path, alpha: float) -> PreTrainedModel:
    """Overwrite ``finetuned``'s parameters in place with α·p_f + (1−α)·p_θ, p_θ read from ``base_dir``.

    Raises a one-line error when architectures or shapes differ.
    """
    for p, base in paired_base_tensors(finetuned, base_dir):
        p.data.copy_(interpolate(base, p.data, alpha))
    return finetuned


def lora_scalings(peft_model) -> list[tuple[Any, dict[str, float]]]:
    """Each LoRA layer of ``peft_model`` with a copy of its adapter scalings (their α = 1 values)."""
    from peft.tuners.lora import LoraLayer  # peft is optional: only LoRA runs need it

    return [(m, dict(m.scaling)) for m in peft_model.modules() if isinstance(m, LoraLayer)]


def scale_adapters(original: list[tuple[Any, dict[str, float]]], alpha: float) -> None:
    """Set every adapter's scaling to α × its original (from :func:`lora_scalings`): the model is p_θ + α·ΔW."""
    for layer, scalings in original:
        for name, s in scalings.items():
            layer.scaling[name] = s * alpha


@torch.no_grad()
def scale_lora(peft_model, alpha: float):
    """Average a LoRA model with its base: scale every adapter delta by α, then merge and unload.

    p_θ + α·ΔW is exactly α·(p_θ + ΔW) + (1−α)·p_θ, with no second copy of the model.
    """
    scale_adapters(lora_scalings(peft_model), alpha)
    return peft_model.merge_and_unload()


def average_model(model, alpha: float, base_dir: str | Path, lora: bool):
    """p_u = α·p_f + (1−α)·p_θ: in place from ``base_dir`` (full weights) or by scaling and merging the LoRA adapter."""
    if lora:
        return scale_lora(model, alpha)
    return average_into(model, base_dir, alpha)


class Interpolator:
    """Sets a model's weights to p_θ + α·(p_f − p_θ) for any α, in memory (the α sweep).

    Full weights keep a copy of p_f and the base weights (``base_dir``); a LoRA model (``base_dir`` unused)
    keeps its adapters' scalings and nothing is merged.
    """

    def __init__(self, finetuned, base_dir: str | Path | None = None):
        self.model = finetuned
        self.lora = hasattr(finetuned, "peft_config")
        if self.lora:
            self.scalings = lora_scalings(finetuned)
        else:
            self.pairs = [(p, p.detach().clone(), base) for p, base in paired_base_tensors(finetuned, base_dir)]

    @torch.no_grad()
    def set(self, alpha: float) -> None:
        if self.lora:
            scale_adapters(self.scalings, alpha)
            return
        for p, ft, base in self.pairs:
            p.data.copy_(interpolate(base, ft, alpha))


def merge_models(base: str, finetuned: str, alpha: float, out, allow_extrapolation: bool = False, overwrite: bool = False):
    """Load p_f (full model or LoRA adapter dir), average it with ``base`` and save to ``out`` atomically."""
    alpha = check_alpha(alpha, allow_extrapolation)
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"output directory {out} exists; pass --overwrite to replace it")
    fdir = Path(finetuned)
    if (fdir / "adapter_config.json").exists():
        from peft import PeftModel  # peft is optional: only LoRA adapters need it

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
        save_card(merge_card(out.name, base, alpha, base_weights_dir(base)), tmp)
    return out
