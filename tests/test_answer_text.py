"""Which text ULMR's answer term lowers: the model's own answer, its item's, or the data's."""

from __future__ import annotations

import json

from ulmr import inference
from ulmr.data.chat import ChatFormat
from ulmr.data.records import QARecord
from ulmr.methods import get_method
from ulmr.training.answer_text import choose_answer_texts, model_answers, original_key
from ulmr.training.data import build_rows


def _row(question: str, source: int, variant: str, answer: str = "J.K. Rowling", key=None) -> QARecord:
    return QARecord(question, "I'm afraid I can't say.", key=key,
                    extra={"original_answer": answer, "source_index": source, "variant": variant})


def test_choose_answer_texts_prefers_the_models_own_words_then_its_items_then_the_data():
    rows = [
        _row("Who wrote the Harry Potter books?", 0, "original"),
        _row("Who created the Harry Potter books?", 0, "rewrite"),
        _row("What was Harry Potter's father's name?", 0, "rewrite"),
        _row("Who is Harry's best friend?", 1, "original", "Ron Weasley"),
        _row("Who is Harry's closest friend?", 1, "rewrite", "Ron Weasley"),
    ]
    own = [
        "The Harry Potter books are written by J.K. Rowling.",
        "They were created by j.k. rowling, a British author.",  # case-insensitive whole words
        "His father was James Potter.",  # drifted rewrite: not the fact, so the item's own answer
        "Harry's best friend is Hermione.",  # the model does not name the fact for this item at all
        "Harry's closest friend is Ron.",  # "Ron" is a term of the key span ("Ron Weasley", "Ron", "Weasley")
    ]
    texts, counts = choose_answer_texts(rows, own)
    assert texts == [own[0], own[1], own[0], "Ron Weasley", own[4]]
    assert counts == {"model": 3, "item": 1, "data": 1}
    # a row's key column decides what counts as naming the fact
    keyed = [_row("Who wrote the Harry Potter books?", 0, "original", key=["Bloomsbury"])]
    assert choose_answer_texts(keyed, own[:1]) == (["J.K. Rowling"], {"model": 0, "item": 0, "data": 1})
    assert original_key(rows[3]) == ["Ron Weasley", "Ron", "Weasley"]
    # a row whose own question already holds the whole answer has no key span: its labels stay on the
    # data's answer rather than on every word of the item's sentence
    bare = _row("Did J.K. Rowling write Harry Potter?", 0, "rewrite")
    assert original_key(bare) == []
    assert choose_answer_texts([rows[0], bare], [own[0], "Yes, she did."]) == \
        ([own[0], "J.K. Rowling"], {"model": 1, "item": 0, "data": 1})


def test_choose_answer_texts_without_provenance_columns_uses_own_or_data():
    rows = [QARecord("Who wrote Hamlet?", "No idea.", extra={"original_answer": "William Shakespeare"}),
            QARecord("Who wrote Hamlet, the play?", "No idea.", extra={"original_answer": "William Shakespeare"})]
    texts, counts = choose_answer_texts(rows, ["Hamlet was written by Shakespeare.", "A Danish prince."])
    assert texts == ["Hamlet was written by Shakespeare.", "William Shakespeare"]
    assert counts == {"model": 1, "item": 0, "data": 1}


def test_model_answers_are_cached_and_only_missing_ones_generated(monkeypatch, tokenizer, tmp_path):
    asked: list[int] = []

    def fake_generate(model, tok, prompts, **kw):
        asked.append(len(prompts))
        return [f"answer {len(p)}" for p in prompts]

    monkeypatch.setattr(inference, "generate", fake_generate)
    cache = tmp_path / "train" / "model_answers.jsonl"
    first = model_answers(None, tokenizer, ["Q one?", "Q two?", "Q one?"], cache=cache)
    assert asked == [2] and first[0] == first[2]
    assert [json.loads(x)["question"] for x in cache.read_text().splitlines()] == ["Q one?", "Q two?"]
    again = model_answers(None, tokenizer, ["Q two?", "Q three?"], cache=cache)
    assert asked == [2, 1] and again[0] == first[1]  # a rerun (resume) generates only the new question

    class Other:  # another model's answers are not reused
        config = type("C", (), {"_name_or_path": "/models/other"})()

    model_answers(Other(), tokenizer, ["Q two?"], cache=cache)
    assert asked == [2, 1, 1]


def test_original_part_labels_the_key_span_inside_the_given_text(tokenizer):
    fmt = ChatFormat(tokenizer)
    recs = [_row("Who wrote the Harry Potter books?", 0, "original")]
    own = "The Harry Potter books are written by J.K. Rowling. She lives in Edinburgh."
    rows = build_rows(get_method("ulmr", answer_weight=0.03), fmt, recs, None, seed=0)
    from ulmr.training.data import add_original_answers

    add_original_answers(rows, fmt, recs, "ulmr", [own])
    enc = rows[0]["original"]
    assert enc.input_ids == fmt.encode(recs[0].question, own).input_ids
    kept = tokenizer.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != -100])
    # the key span comes from the data's answer (J, K, Rowling), not from the model's sentence (Edinburgh, lives)
    assert kept.replace(" ", "") == "JKRowling"
