"""bench/rwku_alpha_auto.py: the neighbourhood candidate's entity choice and row filter (pure functions)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "bench" / "rwku_alpha_auto.py"


@pytest.fixture(scope="module")
def ablation() -> dict:
    return runpy.run_path(str(SCRIPT), run_name="ablation")


def _rows() -> list[dict]:
    original = [
        {"variant": "original", "question": "Where was Ada Quill born?", "answer": "She was born in a village near Paris.",
         "original_answer": "Ada Quill was born near Paris."},
        {"variant": "original", "question": "Which prize did Ada Quill win?", "answer": "She won the Quill Medal and admired the Mona Lisa.",
         "original_answer": "She admired the Mona Lisa and the Mona Lisa Gallery."},
    ]
    rewrites = [
        {"variant": "rewrite", "question": "What painting did Ada Quill copy?", "answer": "She copied the Mona Lisa with Lisa Brandt.",
         "original_answer": "The Mona Lisa, in the Louvre Museum."},
    ]
    return original + rewrites


def test_entities_skip_the_subject_and_keep_one_per_family(ablation):
    subject = ablation["subject_words"](_rows(), "Ada Quill")
    entities = ablation["neighbourhood_entities"](_rows(), subject, 10)
    assert entities[0] == "Mona Lisa"  # named most often
    assert "Paris" in entities and "Louvre Museum" in entities
    # the subject's name, a run sharing its words, and runs sharing a word with a more frequent one are left out
    assert not {"Ada Quill", "Quill Medal", "Lisa Brandt", "Mona Lisa Gallery"} & set(entities)
    assert ablation["neighbourhood_entities"](_rows(), subject, 1) == ["Mona Lisa"]


def test_subject_words_take_the_name_and_entities_of_most_forget_questions(ablation):
    rows = _rows() + [{"variant": "original", "question": "When did Ada Quill visit Rome?", "answer": "In spring."}]
    words = ablation["subject_words"](rows, "Franklin D. Roosevelt")
    assert {"franklin", "d", "roosevelt", "ada", "quill"} <= words
    assert "rome" not in words  # in one of three forget questions


def test_neighbourhood_answers_that_name_the_subject_or_repeat_are_dropped(ablation):
    keep, subject = ablation["keep_neighbourhood_answer"], {"ada", "quill"}
    q = "Tell me about Mona Lisa."
    assert keep(q, "Mona Lisa is a portrait painted in Florence in the sixteenth century.", subject)
    assert not keep(q, "Mona Lisa was admired by Ada Quill throughout her long life.", subject)
    assert not keep(q, "Mona Lisa is famous.", subject)  # under six words
    assert not keep(q, "Mona Lisa is the Mona Lisa of the Mona Lisa museum.", subject)


def test_first_sentence(ablation):
    first = ablation["first_sentence"]
    assert first("The Renaissance was a movement. It spanned centuries.") == "The Renaissance was a movement."
    assert first("An answer cut before its end") == "An answer cut before its end"
