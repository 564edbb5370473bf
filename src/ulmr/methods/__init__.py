"""Unlearning losses, one per file, chosen by name from :mod:`.registry`.

=========  =====================================================  ============================  ======
name       loss                                                   defaults                      retain
=========  =====================================================  ============================  ======
ulmr       NLL(D_fr) + λ·NLL_r + γ·NPO(key span of y)**           λ=2, γ=0.1, lr by size*, 3ep  optional
ga         −NLL_f                                                 lr by size†, 3 epochs         unused
graddiff   −NLL_f + w·NLL_r                                       w=1, lr by size†, 3 epochs    required
kl         −NLL_f + w·KL(p_ref ‖ p_θ) on retain answer tokens     w=1, lr by size†, 3 epochs    required
dpo        −(2/β) log σ(β[Δ(refusal) − Δ(answer)]) + w·NLL_r      β=0.1, w=1, lr by size†, 3 ep optional
npo        −(2/β) log σ(−β Δ(answer)) + w·NLL_r                   β=0.1, w=1, lr by size†, 3 ep optional
retrain    NLL_r (forget rows ignored; start from the base model) lr 1e-5, 5 epochs             required
=========  =====================================================  ============================  ======

Δ(y) = log π_θ(y|x) − log π_ref(y|x), summed over answer tokens including EOS; NLL terms are token means
over the batch. *ULMR's lr without ``--lr``: 1e-4 below 0.5B parameters, 3e-5 below 3B, else 1e-5
(:data:`ulmr.methods.ulmr.LR_BY_SIZE`); †GA, GradDiff, KL, DPO, NPO: 5e-5 below 0.5B,
else 1e-5 (:data:`ulmr.methods.base.BASELINE_LR_BY_SIZE`). **γ (``--answer-weight``, default 0.2, β = 0.1): NPO on the key-span tokens
of the answer each D_fr row replaced (its ``original_answer``), found in the model's own answer to the row's
question (:mod:`ulmr.training.answer_text`); γ = 0 is the paper's plain SFT.

Adding a method: a file with a :class:`Method` subclass (its loss, its class-attribute defaults and what the
pipeline needs to know: display name, whether it generates D_fr, averages by default, starts from the base
model, which benchmarks run it) and one line in ``registry.METHODS``.
"""

from .base import Method
from .registry import METHODS, display_name, get_method, method_class, method_names

__all__ = ["METHODS", "Method", "display_name", "get_method", "method_class", "method_names"]
