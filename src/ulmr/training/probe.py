"""Per-epoch probe: answer NLL (and optionally greedy ROUGE-L recall) on a few forget and retain items.

Logged as ``probe_forget_nll`` / ``probe_retain_nll`` (``probe_*_rougeL``) in the log history, once
before training (epoch 0) and after every epoch. With ``keep_best``, the trainable weights of the best
epoch are restored at the end. Criterion: among the epochs whose forget NLL rose by at least
``min_forget_rise`` nats over the start (dropped for methods with ``forget_nll_rises = False``: ULMR,
whose forget answers are learned, and retrain), the one whose retain NLL increased least; the last
epoch when none qualifies. The start is measured when this call begins (after a resume: at the checkpoint).
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from transformers import TrainerCallback

from ..data.chat import ChatFormat
from ..data.records import QARecord
from ..inference import generate, score

log = logging.getLogger(__name__)


class EpochProbe(TrainerCallback):
    def __init__(
        self,
        fmt: ChatFormat,
        forget: Sequence[QARecord],
        retain: Sequence[QARecord],
        pad_id: int,
        rouge: bool = False,
        keep_best: bool = False,
        require_forget_rise: bool = True,
        min_forget_rise: float = 0.0,
    ):
        self.fmt, self.pad_id, self.rouge = fmt, pad_id, rouge
        self.sets = {name: list(items) for name, items in (("forget", forget), ("retain", retain)) if items}
        self.keep_best, self.require_rise, self.min_rise = keep_best, require_forget_rise, min_forget_rise
        self.start: dict[str, float] = {}
        self.best: tuple[float, float, dict[str, torch.Tensor]] | None = None  # (retain rise, epoch, weights)
        self.best_epoch: float | None = None

    def measure(self, model) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, items in self.sets.items():
            enc = [self.fmt.encode(r.question, r.answer) for r in items]
            scored = score(model, enc, self.pad_id, batch_size=len(enc))
            out[f"probe_{name}_nll"] = sum(s.mean_nll for s in scored) / len(scored)
            if self.rouge:
                out[f"probe_{name}_rougeL"] = self._rouge(model, items)
        return out

    def _rouge(self, model, items: Sequence[QARecord]) -> float:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        outs = generate(model, self.fmt.tok, [self.fmt.prompt_ids(r.question) for r in items], max_new_tokens=64)
        return sum(scorer.score(r.answer, o)["rougeL"].recall for r, o in zip(items, outs)) / len(items)

    def _record(self, state, model) -> dict[str, float]:
        values = self.measure(model)
        entry = {"epoch": round(state.epoch or 0.0, 4), "step": state.global_step, **values}
        state.log_history.append(entry)
        log.info("probe %s", entry)
        return values

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.start = self._record(state, model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        values = self._record(state, model)
        if not self.keep_best:
            return
        rise = values.get("probe_forget_nll", 0.0) - self.start.get("probe_forget_nll", 0.0)
        retain_rise = values.get("probe_retain_nll", 0.0) - self.start.get("probe_retain_nll", 0.0)
        if self.require_rise and rise < self.min_rise:
            return
        if self.best is None or retain_rise < self.best[0]:
            weights = {k: p.detach().cpu().clone() for k, p in model.named_parameters() if p.requires_grad}
            self.best = (retain_rise, state.epoch, weights)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not self.keep_best or self.best is None:
            return
        _, epoch, weights = self.best
        params = dict(model.named_parameters())
        with torch.no_grad():
            for k, w in weights.items():
                params[k].copy_(w.to(params[k].device))
        self.best_epoch = epoch
        log.info("kept the weights of epoch %s (best by the probe)", epoch)
