"""The QA record and its readers: JSON, JSONL, CSV or a hub dataset, validated with file/line/field errors."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..atomic import write_jsonl
from ..errors import DataError

log = logging.getLogger(__name__)

SUFFIXES = (".json", ".jsonl", ".csv")


@dataclass
class QARecord:
    """One question/answer pair. ``key`` (optional) lists the spans a negative response must not contain;
    ``preferred`` (optional) is the answer DPO prefers; ``extra`` keeps every other column of the row."""

    question: str
    answer: str
    key: list[str] | None = None
    preferred: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"question": self.question, "answer": self.answer}
        if self.key:
            d["key"] = self.key
        if self.preferred is not None:
            d["preferred"] = self.preferred
        d.update(self.extra)
        return d


def read_jsonl(path: str | Path, what: str = "") -> list[dict]:
    """Rows of a JSON Lines file; a missing file or malformed line is a one-line DataError naming the
    file and line. Lines split on '\\n' only: U+2028 inside a JSON string is text, not a line break."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file{f' ({what})' if what else ''}")
    return [row for _, row in _jsonl_rows(path, path.read_text(encoding="utf-8"))]


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, Any]]:
    rows = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: malformed JSON line ({e.msg})") from e
    return rows


def _read_rows(path: Path) -> list[tuple[int, Any]]:
    """Rows with their 1-based line (JSONL, CSV) or index (JSON array) numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from e
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_rows(path, text)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from e
        if isinstance(data, dict):
            # {"data": [...]} or a column-oriented {"question": [...], "answer": [...]}
            if "data" in data and isinstance(data["data"], list):
                data = data["data"]
            elif data and all(isinstance(v, list) for v in data.values()):
                n = len(next(iter(data.values())))
                data = [{k: v[i] for k, v in data.items()} for i in range(n)]
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON array of objects")
        return [(i + 1, r) for i, r in enumerate(data)]
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        return [(i + 2, dict(r)) for i, r in enumerate(reader)]  # line 1 is the header
    raise DataError(f"{path}: unsupported file type '{suffix}' (use {', '.join(SUFFIXES)} or a hub dataset id)")


def _read_hub(spec: str, split: str) -> list[tuple[int, Any]]:
    try:
        from datasets import load_dataset

        name, _, config = spec.partition(":")
        ds = load_dataset(name, config or None, split=split)
    except Exception as e:  # noqa: BLE001 - offline, unknown id, ...
        raise DataError(f"{spec}: not a local file, and the hub dataset could not be loaded ({str(e).splitlines()[0]})") from e
    return [(i + 1, dict(r)) for i, r in enumerate(ds)]


def _where(source: str, line: int, is_file: bool) -> str:
    return f"{source}:{line}" if is_file else f"{source} row {line}"


def _as_text(value: Any, where: str, name: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{name}' must be text, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field '{name}' is empty")
    return value.strip()


def parse_records(
    rows: Iterable[tuple[int, Any]],
    source: str,
    question_field: str = "question",
    answer_field: str = "answer",
    is_file: bool = True,
    dedupe: bool = True,
) -> list[QARecord]:
    """Validate raw rows into records; every error names the source, line and field."""
    out: list[QARecord] = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in rows:
        where = _where(source, line, is_file)
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object with fields '{question_field}' and '{answer_field}'")
        for name in (question_field, answer_field):
            if name not in row:
                have = ", ".join(sorted(map(str, row))) or "none"
                raise DataError(f"{where}: missing field '{name}' (fields present: {have}); set --{'question' if name == question_field else 'answer'}-field")
        q = _as_text(row[question_field], where, question_field)
        a = _as_text(row[answer_field], where, answer_field)
        key = row.get("key")
        if key is not None:
            key = [key] if isinstance(key, str) else key
            if not isinstance(key, list) or not all(isinstance(k, str) and k.strip() for k in key):
                raise DataError(f"{where}: field 'key' must be a string or a list of non-empty strings")
        preferred = row.get("preferred")
        if preferred is not None:
            preferred = _as_text(preferred, where, "preferred")
        extra = {k: v for k, v in row.items() if k not in (question_field, answer_field, "key", "preferred")}
        if dedupe and (q, a) in seen:
            log.warning("%s: duplicate of line %d (same question and answer); kept one", where, seen[(q, a)])
            continue
        seen[(q, a)] = line
        out.append(QARecord(q, a, key, preferred, extra))
    return out


def load_qa(
    source: str | Path,
    question_field: str = "question",
    answer_field: str = "answer",
    split: str = "train",
    allow_empty: bool = False,
    limit: int | None = None,
) -> list[QARecord]:
    """Read a QA set from a .json/.jsonl/.csv file or a hub dataset id (``name`` or ``name:config``)."""
    source = str(source)
    path = Path(source).expanduser()
    is_file = path.suffix.lower() in SUFFIXES or path.exists() or source.startswith((".", "/", "~"))
    if is_file:
        if not path.exists():
            raise DataError(f"{path}: no such file")
        if path.is_dir():
            raise DataError(f"{path}: is a directory, expected a .json, .jsonl or .csv file")
        rows = _read_rows(path)
    else:
        rows = _read_hub(source, split)
    records = parse_records(rows, str(path) if is_file else source, question_field, answer_field, is_file)
    if not records and not allow_empty:
        raise DataError(f"{source}: the set is empty (no question/answer rows)")
    return records[:limit] if limit else records


def save_qa(path: str | Path, records: Iterable[QARecord]) -> None:
    """Write records as JSONL (atomically)."""

    write_jsonl(path, [r.to_dict() for r in records])
