"""TOFU evaluation sets from a local directory (``forgetXX_perturbed.jsonl`` ...) or the hub (``locuslab/TOFU``).

Every item becomes a :class:`TofuItem`: question, gold answer, the paraphrased answer (Forget/Retain only) and
the perturbed (wrong) answers (5 for Forget/Retain, 3 for Real Authors/World Facts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from ..errors import ConfigError, DataError
from .records import read_jsonl

ForgetSplit = Literal["forget01", "forget05", "forget10"]
FORGET_SPLITS: tuple[str, ...] = get_args(ForgetSplit)
SET_FILES = {
    "retain": "retain_perturbed",
    "real_authors": "real_authors_perturbed",
    "world_facts": "world_facts_perturbed",
}


@dataclass
class TofuItem:
    """One TOFU evaluation item."""

    question: str
    answer: str
    perturbed: list[str] = field(default_factory=list)
    paraphrased: str | None = None


def _parse(rows: list[dict], where: str, need_paraphrase: bool) -> list[TofuItem]:
    items = []
    for n, row in enumerate(rows, 1):
        loc = f"{where}:{n}"
        if not isinstance(row, dict):
            raise DataError(f"{loc}: expected a JSON object")
        for f in ("question", "answer", "perturbed_answer") + (("paraphrased_answer",) if need_paraphrase else ()):
            if f not in row:
                raise DataError(f"{loc}: missing field '{f}'")
        pert = row["perturbed_answer"]
        pert = [pert] if isinstance(pert, str) else pert
        if not isinstance(pert, list) or not pert or not all(isinstance(p, str) for p in pert):
            raise DataError(f"{loc}: field 'perturbed_answer' must be a non-empty list of strings")
        if not isinstance(row["question"], str) or not isinstance(row["answer"], str):
            raise DataError(f"{loc}: fields 'question' and 'answer' must be strings")
        items.append(TofuItem(row["question"], row["answer"], list(pert), row.get("paraphrased_answer") if need_paraphrase else None))
    if not items:
        raise DataError(f"{where}: the set is empty")
    return items


def _read_hub(hub_id: str, config: str) -> list[dict]:
    """Rows of ``hub_id`` config ``config`` (split 'train'), e.g. locuslab/TOFU forget01_perturbed."""
    try:
        from datasets import load_dataset

        ds = load_dataset(hub_id, config, split="train")
    except Exception as e:  # noqa: BLE001 - any hub failure is a data error for the user
        raise DataError(f"{hub_id} ({config}): cannot load from the hub ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
    return [dict(r) for r in ds]


def load_tofu(data: str | Path, forget_split: str) -> dict[str, list[TofuItem]]:
    """The four evaluation sets {'forget', 'retain', 'real_authors', 'world_facts'} from a directory or hub id."""
    if forget_split not in FORGET_SPLITS:
        raise ConfigError(f"--forget-split must be one of {', '.join(FORGET_SPLITS)}, got '{forget_split}'")
    files = {"forget": f"{forget_split}_perturbed", **SET_FILES}
    path = Path(str(data)).expanduser()
    local = path.exists() or str(data).startswith((".", "/", "~"))
    if local and not path.is_dir():
        raise DataError(f"{path}: not a TOFU data directory")
    out = {}
    for name, stem in files.items():
        if local:
            rows, where = read_jsonl(path / f"{stem}.jsonl", "expected a TOFU data directory"), str(path / f"{stem}.jsonl")
        else:
            rows, where = _read_hub(str(data), stem), f"{data}:{stem}"
        out[name] = _parse(rows, where, need_paraphrase=name in ("forget", "retain"))
    return out
