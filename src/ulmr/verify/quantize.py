"""Round-to-nearest weight quantisation in plain PyTorch (runs on CPU): does 4- or 8-bit rounding undo unlearning?

Group-wise symmetric RTN: each row of a Linear weight is cut into groups of ``group_size`` consecutive
input weights; a group's scale is ``max|w| / qmax`` with ``qmax = 2**(bits-1) - 1``, its weights become
``round(w / scale)`` clamped to ``[-qmax, qmax]`` and are stored back de-quantised (``q * scale``) in the
original dtype, so ``|w - q(w)| <= scale / 2``. Only ``nn.Linear`` weights are rounded; ``lm_head`` is
skipped by default because it is usually tied to the input embeddings (as in SmolLM2), and, as in common
RTN/GPTQ setups, kept in full precision.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

DEFAULT_SKIP = ("lm_head",)


def group_scales(w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Per-group scales of a 2-D weight, shape (rows, n_groups); a zero group gets scale 1 (it stays 0)."""
    qmax = 2 ** (bits - 1) - 1
    groups = _grouped(w.float(), group_size)
    scale = groups.abs().amax(-1) / qmax
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def _grouped(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """(rows, cols) -> (rows, n_groups, group_size), zero-padding the last group."""
    rows, cols = w.shape
    pad = (-cols) % group_size
    if pad:
        w = torch.nn.functional.pad(w, (0, pad))
    return w.reshape(rows, -1, group_size)


def quantize_tensor(w: torch.Tensor, bits: int = 4, group_size: int = 128) -> torch.Tensor:
    """De-quantised RTN copy of a 2-D weight: same shape and dtype, values on each group's grid."""
    if w.dim() != 2:
        raise ValueError(f"expected a 2-D weight, got shape {tuple(w.shape)}")
    qmax = 2 ** (bits - 1) - 1
    rows, cols = w.shape
    groups = _grouped(w.detach().float(), group_size)
    scale = group_scales(w.detach(), bits, group_size).unsqueeze(-1)
    q = torch.clamp(torch.round(groups / scale), -qmax, qmax) * scale
    return q.reshape(rows, -1)[:, :cols].to(w.dtype)


def quantize_model(model: nn.Module, bits: int = 4, group_size: int = 128, skip: tuple[str, ...] = DEFAULT_SKIP,
                   inplace: bool = False) -> nn.Module:
    """A copy of ``model`` (the model itself with ``inplace``) whose Linear weights are RTN-rounded."""
    target = model if inplace else copy.deepcopy(model)
    with torch.no_grad():
        for name, module in target.named_modules():
            if isinstance(module, nn.Linear) and not any(name == s or name.endswith("." + s) for s in skip):
                module.weight.copy_(quantize_tensor(module.weight, bits, group_size))
    return target
