"""RWKU's MIA statistic: mean over texts of each raw text's mean token NLL, x 100.

Texts are tokenised without a chat template (``ChatFormat.encode_text``: BOS as the tokenizer adds it, every
token labelled; the first token, which nothing predicts, is not scored). FM (forget members) should rise after unlearning; RM (retain members) should stay.
"""

from __future__ import annotations

from typing import Sequence

from ..data.chat import IGNORE, ChatFormat, Encoded
from ..inference import score


def mia_statistic(mean_nlls: Sequence[float]) -> float:
    """100 * mean_i(mean token NLL of text i)."""
    return 100.0 * sum(mean_nlls) / len(mean_nlls)


def text_nlls(model, tokenizer, texts: Sequence[str], batch_size: int = 8, description: str | None = None) -> list[float]:
    """Mean token NLL of each raw text (batched engine)."""
    cf = ChatFormat(tokenizer)
    # The first token has no prediction (nothing precedes it); unlabel it explicitly, as HF's shifted loss does,
    # so inference.score never sees a label at position 0.
    enc = [Encoded(e.input_ids, [IGNORE] + e.labels[1:], 0) for e in map(cf.encode_text, texts)]
    return [s.mean_nll for s in score(model, enc, tokenizer.pad_token_id, batch_size, description=description)]
