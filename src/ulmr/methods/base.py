"""The method interface: a loss on one batch plus documented defaults, as class attributes."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch

from .common import Reference, has_part, part_nll

RetainUse = Literal["never", "optional", "required"]
RetainLoss = Literal["nll", "kl"]  # the forms a retain term takes: NLL of the retain answers, KL to the reference there

# The gradient baselines' learning rate by model size (parameters below the bound -> lr; above: the class's
# ``lr``, 1e-5, the rate of the TOFU/RWKU papers for 7B-8B models). For the 135M model 5e-5: at the TOFU mini
# bench's 2e-5 for 50 steps GA, NPO and DPO took forget ROUGE-L from 96.7 to 58, 57 and 35 (docs/results/tofu.md,
# equal-steps table), and RWKU's 1e-5 barely moved the model in 8 steps; 5e-5 over a method's 3 epochs goes past
# those points, so the curves protocol's points along the run span mild to strong forgetting. Not yet swept.
BASELINE_LR_BY_SIZE: tuple[tuple[float, float], ...] = ((5e8, 5e-5),)


class Method:
    """One unlearning loss. Subclasses set the class attributes and implement :meth:`loss`.

    Data needs, read by the trainer:
    ``uses_forget`` (False: rows come from the retain set only), ``retain`` (whether a retain row is
    paired to each row), ``needs_ref_model`` (a live reference on every step), ``ref_logp_parts``
    (parts whose reference sequence log-probs are precomputed once), ``needs_preferred`` (a preferred
    answer per forget item: the item's ``preferred`` or a drawn refusal), ``uses_original`` (part
    ``original``: the answer a D_fr row replaced, its ``original_answer`` column, while the instance's
    ``answer_weight`` is non-zero), ``retain_losses`` (the forms its retain term takes, ``--retain-loss``;
    the first is the default). Without ``--retain`` the pipeline loads the built-in anchor as the
    retain set for every method whose ``retain`` is not ``"never"``.

    Pipeline needs, read by ``ulmr unlearn``, ``ulmr compare`` and the benchmarks (no code outside
    :mod:`ulmr.methods` compares a method's name):
    ``display_name`` (its row in the benchmark tables), ``generates_dfr`` (it trains on D_fr, the rewrites
    and negative responses generated from the forget set, not on the forget set itself; the generation also
    yields the held-out probes), ``default_alpha`` (the averaging weight α used without ``--alpha``; None:
    no averaging unless asked; the benchmarks average exactly these methods, at their ``--alpha``),
    ``starts_from_base`` (training starts from ``--base`` when given, not from ``--model``; the TOFU
    bench's retain model is its run), ``benchmarks`` (the benchmark protocols that run it, by default and
    as allowed choices), ``generation_filters`` (the generation filters its D_fr is built with: ``"full"``
    or the paper's ``"paper"``, :mod:`ulmr.generate.filters`), ``anchor_with_retain`` (its recipe trains on the built-in anchor beside a given retain set, not only
    in its place), ``forget_only_in`` (protocols that run it without a retain set although it takes
    one elsewhere: RWKU's GA, NPO and DPO).
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    uses_forget: ClassVar[bool] = True
    retain: ClassVar[RetainUse] = "never"
    needs_ref_model: ClassVar[bool] = False
    ref_logp_parts: ClassVar[tuple[str, ...]] = ()
    needs_preferred: ClassVar[bool] = False
    retain_losses: ClassVar[tuple[RetainLoss, ...]] = ("nll",)  # the retain term's forms; the first is the default
    uses_original: ClassVar[bool] = False
    forget_nll_rises: ClassVar[bool] = True  # False where the forget answers are learned (ULMR's D_fr)
    # pipeline needs
    generates_dfr: ClassVar[bool] = False
    default_alpha: ClassVar[float | None] = None
    generation_filters: ClassVar[Literal["full", "paper"]] = "full"
    starts_from_base: ClassVar[bool] = False
    benchmarks: ClassVar[tuple[str, ...]] = ("tofu", "rwku")
    forget_only_in: ClassVar[tuple[str, ...]] = ()
    anchor_with_retain: ClassVar[bool] = False
    # documented defaults
    lr: ClassVar[float] = 1e-5
    lr_by_size: ClassVar[tuple[tuple[float, float], ...]] = ()  # (parameter bound, lr) pairs, smallest bound first
    epochs: ClassVar[float] = 3.0
    default_beta: ClassVar[float | None] = None
    default_retain_weight: ClassVar[float] = 1.0

    def __init__(self, beta: float | None = None, retain_weight: float | None = None):
        self.beta = self.default_beta if beta is None else beta
        self.retain_weight = self.default_retain_weight if retain_weight is None else retain_weight
        self.answer_weight = 0.0
        self.retain_loss = self.retain_losses[0]

    @classmethod
    def recipe(cls) -> dict[str, Any]:
        """Its documented defaults and data needs: every public class attribute of a plain type (not the display
        name or benchmark list). A stored benchmark result depends on these; a changed one reruns it."""
        out: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for k, v in vars(klass).items():
                if not k.startswith("_") and k not in ("display_name", "benchmarks") and isinstance(v, (bool, int, float, str, tuple, type(None))):
                    out[k] = v
        return out

    @classmethod
    def default_lr(cls, n_params: int) -> float:
        """The learning rate used when none is given: the first ``lr_by_size`` entry whose bound exceeds
        ``n_params``, else ``lr``."""
        return next((lr for bound, lr in cls.lr_by_size if n_params < bound), cls.lr)

    def loss(self, model, batch: dict, ref: Reference | None = None) -> torch.Tensor:
        raise NotImplementedError

    def retain_nll(self, model, batch: dict) -> torch.Tensor | float:
        """``retain_weight * NLL_r`` when the batch has a retain part and the weight is non-zero, else 0."""
        if self.retain_weight and has_part(batch, "retain"):
            return self.retain_weight * part_nll(model, batch, "retain")
        return 0.0
