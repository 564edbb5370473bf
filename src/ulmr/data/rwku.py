"""RWKU per-target files: a local directory holding ``<N>_<Name>/`` folders (names may contain commas), or the
hub dataset ``jinzhuoran/RWKU`` (one config per file kind, filtered to the target's subject)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError
from .records import read_jsonl

# part name -> (local file stem, hub config, required fields)
PARTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "forget_level1": ("forget_level1", "forget_level1", ("query", "answer")),
    "forget_level2": ("forget_level2", "forget_level2", ("query", "answer")),
    "forget_level3": ("forget_level3", "forget_level3", ("query", "answer", "type")),
    "neighbor_level1": ("neighbor_level1", "neighbor_level1", ("query", "answer")),
    "neighbor_level2": ("neighbor_level2", "neighbor_level2", ("query", "answer")),
    "forget_mia": ("forget_mia", "mia_forget", ("text",)),
    "retain_mia": ("retain_mia", "mia_retain", ("text",)),
    "mmlu": ("retain_mmlu", "utility_general", ("question", "choices", "answer")),
    "bbh": ("retain_bbh", "utility_reason", ("question", "answer", "cot")),
    "truthfulqa": ("truthful", "utility_truthfulness", ("question", "mc1_targets")),
    "triviaqa": ("triviaqa", "utility_factuality", ("question", "answers")),
    "fluency": ("fluency", "utility_fluency", ("instruction",)),
}
CORE_PARTS = ("forget_level1", "forget_level2", "forget_level3", "neighbor_level1", "neighbor_level2", "forget_mia", "retain_mia")


@dataclass
class RwkuTarget:
    """One unlearning target: its folder name, subject (e.g. 'Stephen King') and the loaded parts."""

    name: str
    subject: str
    parts: dict[str, list[dict]] = field(default_factory=dict)


def _check(rows: list[dict], where: str, fields: tuple[str, ...]) -> list[dict]:
    for n, row in enumerate(rows, 1):
        missing = [f for f in fields if not isinstance(row, dict) or f not in row]
        if missing:
            raise DataError(f"{where}:{n}: missing field '{missing[0]}'")
    if not rows:
        raise DataError(f"{where}: the set is empty")
    return rows


def target_dir(data: Path, target: int) -> Path:
    """The folder ``<target>_<Name>`` inside ``data`` (exactly one must match)."""
    if not data.is_dir():
        raise DataError(f"{data}: not an RWKU data directory")
    hits = [p for p in data.iterdir() if p.is_dir() and re.fullmatch(rf"{target}_.+", p.name)]
    if not hits:
        raise DataError(f"{data}: no folder for target {target} (expected '{target}_<Name>')")
    if len(hits) > 1:
        raise DataError(f"{data}: several folders for target {target}: {', '.join(sorted(p.name for p in hits))}")
    return hits[0]


def _hub_rows(hub_id: str, config: str) -> list[dict]:
    try:
        from datasets import load_dataset

        ds = load_dataset(hub_id, config)
        split = "test" if "test" in ds else next(iter(ds))
        return [dict(r) for r in ds[split]]
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{hub_id} ({config}): cannot load from the hub ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e


def load_rwku(data: str | Path, target: int, parts: tuple[str, ...] = CORE_PARTS) -> RwkuTarget:
    """Load ``parts`` (keys of :data:`PARTS`) of target number ``target`` (1-based, as in the folder names)."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ConfigError(f"unknown RWKU part(s): {', '.join(unknown)}")
    if target < 1:
        raise ConfigError(f"--target must be >= 1, got {target}")
    path = Path(str(data)).expanduser()
    if path.exists() or str(data).startswith((".", "/", "~")):
        folder = target_dir(path, target)
        loaded = {}
        for p in parts:
            stem, _, fields = PARTS[p]
            f = folder / f"{stem}.jsonl"
            if not f.exists():
                raise DataError(f"{f}: no such file")
            loaded[p] = _check(read_jsonl(f), str(f), fields)
        subject = next((r.get("subject") for rows in loaded.values() for r in rows if r.get("subject")), None)
        subject = subject or folder.name.split("_", 1)[1].replace("_", " ")
        return RwkuTarget(folder.name, subject, loaded)
    targets = _hub_rows(str(data), "forget_target")
    if target > len(targets):
        raise DataError(f"{data}: target {target} out of range (1-{len(targets)})")
    subject = targets[target - 1]["target"]
    loaded = {}
    for p in parts:
        _, config, fields = PARTS[p]
        rows = [r for r in _hub_rows(str(data), config) if r.get("subject") == subject]
        loaded[p] = _check(rows, f"{data}:{config}", fields)
    return RwkuTarget(f"{target}_{subject.replace(' ', '_')}", subject, loaded)
