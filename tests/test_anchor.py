"""The built-in anchor: questions that name what is forgotten or evaluated are left out."""

from __future__ import annotations

from ulmr import pipeline
from ulmr.anchor import anchor_questions, without_shared_entities
from ulmr.config import UnlearnConfig
from ulmr.data.records import QARecord


def _anchor() -> list[QARecord]:
    return [QARecord(q, "an answer.") for q in anchor_questions()]


def test_questions_naming_a_forget_or_evaluation_entity_are_dropped():
    anchor = _anchor()
    kept = without_shared_entities(anchor, ["Which author wrote the classic novel 'Don Quixote'? Miguel de Cervantes",
                                            "What is the capital of Spain? Madrid"])
    dropped = {r.question for r in anchor} - {r.question for r in kept}
    assert dropped == {"Who wrote the novel Don Quixote?", "What is the capital of Spain?"}
    assert "Who wrote The Adventures of Tom Sawyer?" in {r.question for r in kept}
    # names match whatever their case; a word written only in lower case is not a name
    assert len(without_shared_entities(anchor, ["tell me about DON QUIXOTE"])) == len(anchor) - 1
    assert len(without_shared_entities(anchor, ["the capital of a spain-like country"])) == len(anchor)
    assert without_shared_entities(anchor, []) == anchor


def test_unlearn_anchor_leaves_out_what_the_forget_set_names(monkeypatch):
    monkeypatch.setattr(pipeline, "anchor_set", lambda *a, **kw: _anchor())
    cfg = UnlearnConfig(forget="f.jsonl", out="o")
    forget = [QARecord("Who translated Frankenstein into French?", "Mara Velquist did, in 1987.")]
    retain, source = pipeline.load_retain(cfg, None, None, "m", forget=forget)
    assert source == "builtin-anchor"
    questions = {r.question for r in retain}
    assert "Who wrote Frankenstein?" not in questions and "Translate 'thank you' into French." not in questions
    assert len(retain) == len(_anchor()) - 2


def test_ulmr_keeps_the_anchor_beside_a_given_retain_set(monkeypatch, tmp_path):
    """ULMR's recipe (anchor_with_retain): --retain rows + the anchor; other methods: --retain alone; --anchor none: never."""
    monkeypatch.setattr(pipeline, "anchor_set", lambda *a, **kw: _anchor())
    retain_file = tmp_path / "r.jsonl"
    retain_file.write_text('{"question": "Who is Mara Velquist?", "answer": "A novelist."}\n', encoding="utf-8")
    load = lambda **kw: pipeline.load_retain(UnlearnConfig(forget="f.jsonl", out="o", retain=str(retain_file), **kw), None, None, "m")  # noqa: E731
    rows, source = load()
    assert source == "user+builtin-anchor" and rows[0].question == "Who is Mara Velquist?" and len(rows) == 1 + len(_anchor())
    assert load(method="graddiff") == (load(method="graddiff")[0], "user") and len(load(method="graddiff")[0]) == 1
    assert load(anchor="none")[1] == "user" and len(load(anchor="none")[0]) == 1
