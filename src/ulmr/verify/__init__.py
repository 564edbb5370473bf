"""``ulmr verify``: does the forgotten knowledge come back?

Measures forget-set knowledge (ROUGE-L recall, answer probability) of the base and the unlearned model
under paraphrases, RWKU-style adversarial prompts, a few steps of relearning and 4/8-bit quantisation, plus
over-refusal, and judges each against a stated threshold. One module per job:

- :mod:`.attacks` adversarial prompt templates, :mod:`.paraphrase` held-out rewrites,
  :mod:`.relearn` the relearning attack, :mod:`.quantize` RTN weight quantisation;
- :mod:`.scoring` recovery ratios and verdicts, :mod:`.report` tables, Markdown, PNG;
- :mod:`.run` :func:`verify`, :mod:`.hook` :func:`run_verify_after_unlearn` for ``ulmr unlearn --verify``.
"""

from .attacks import ATTACKS, attack_prompt, attack_records
from .config import VerifyConfig, make_config
from .hook import run_settings, run_verify_after_unlearn
from .quantize import quantize_model, quantize_tensor
from .relearn import relearn, split_halves
from .run import verify
from .scoring import knowledge_passes, recovery_ratio, refusal_passes

__all__ = [
    "ATTACKS", "attack_prompt", "attack_records", "VerifyConfig", "make_config", "run_settings",
    "run_verify_after_unlearn", "quantize_model", "quantize_tensor", "relearn", "split_halves", "verify",
    "knowledge_passes", "recovery_ratio", "refusal_passes",
]
