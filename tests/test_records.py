import json

import pytest

from ulmr.data.records import load_qa
from ulmr.errors import DataError


def test_reads_jsonl_json_csv(tmp_path):
    rows = [{"q": "A?", "a": "x"}, {"q": "B?", "a": "y"}]
    (tmp_path / "f.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "f.json").write_text(json.dumps(rows))
    (tmp_path / "f.csv").write_text("q,a\nA?,x\nB?,y\n")
    for name in ("f.jsonl", "f.json", "f.csv"):
        recs = load_qa(tmp_path / name, question_field="q", answer_field="a")
        assert [(r.question, r.answer) for r in recs] == [("A?", "x"), ("B?", "y")]


def test_missing_file():
    with pytest.raises(DataError, match="no such file"):
        load_qa("/nonexistent/forget.jsonl")


def test_malformed_line_names_line(tmp_path):
    p = tmp_path / "f.jsonl"
    p.write_text('{"question": "a", "answer": "b"}\n{"question": "broken"\n')
    with pytest.raises(DataError, match=r"f\.jsonl:2: malformed JSON"):
        load_qa(p)


def test_wrong_field_names_are_named(tmp_path):
    p = tmp_path / "f.jsonl"
    p.write_text('{"prompt": "a", "response": "b"}\n')
    with pytest.raises(DataError, match=r"f\.jsonl:1: missing field 'question' \(fields present: prompt, response\)"):
        load_qa(p)
    assert load_qa(p, question_field="prompt", answer_field="response")[0].answer == "b"


def test_empty_set(tmp_path):
    p = tmp_path / "f.jsonl"
    p.write_text("\n")
    with pytest.raises(DataError, match="empty"):
        load_qa(p)


def test_empty_field_value(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("question,answer\nA?,\n")
    with pytest.raises(DataError, match=r"f\.csv:2: field 'answer' is empty"):
        load_qa(p)


def test_unreadable_encoding(tmp_path):
    p = tmp_path / "f.jsonl"
    p.write_bytes(b'{"question": "\xff\xfe", "answer": "b"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        load_qa(p)


def test_duplicates_kept_once_with_warning(tmp_path, caplog):
    p = tmp_path / "f.jsonl"
    p.write_text('{"question": "a", "answer": "b"}\n{"question": "a", "answer": "b"}\n')
    assert len(load_qa(p)) == 1
    assert "duplicate" in caplog.text


def test_key_and_extra_fields(tmp_path):
    p = tmp_path / "f.jsonl"
    p.write_text('{"question": "a", "answer": "b c", "key": "c", "paraphrased_answer": "pa"}\n')
    r = load_qa(p)[0]
    assert r.key == ["c"] and r.extra == {"paraphrased_answer": "pa"}
