"""``--recipe paper``: the paper's settings in one flag, its generation filters, and its errors."""

from __future__ import annotations

import pytest

from ulmr.config import GenerateConfig, UnlearnConfig
from ulmr.data.records import load_qa
from ulmr.generate.backends import LocalBackend
from ulmr.generate.filters import check_negative, check_negative_paper, check_rewrite, check_rewrite_paper
from ulmr.generate.restructure import config_hash, restructure
from ulmr.generate.templates import load_prompt
from ulmr.methods.registry import get_method


def _cfg(**kw) -> UnlearnConfig:
    return UnlearnConfig(forget="f.jsonl", out="out", **kw)


def test_paper_recipe_sets_the_papers_settings():
    paper, ours = _cfg(recipe="paper"), _cfg()
    assert (paper.method, paper.anchor, paper.filters, paper.num_rewrites) == ("ulmr-paper", "none", "paper", 2)
    assert (ours.method, ours.anchor, ours.answer_weight, ours.filters) == ("ulmr", "builtin", None, "full")
    assert paper.effective_alpha() == 0.5 and _cfg(recipe="paper", alpha=0.3).effective_alpha() == 0.3
    assert paper.stage(GenerateConfig).filters == "paper"
    assert _cfg(recipe="paper", answer_weight=0).method == "ulmr-paper"  # an explicit 0 agrees with the recipe
    # the method the recipe runs: NLL on D_fr alone (no retain/anchor part, no answer part)
    method = get_method(paper.method)
    assert (method.retain, method.answer_weight, method.ref_logp_parts) == ("never", 0.0, ())
    assert _cfg(method="ulmr-paper").filters == "paper"  # the method brings its generation filters


@pytest.mark.parametrize("kw,flag", [({"method": "npo"}, "--method"), ({"retain": "r.jsonl"}, "--retain"),
                                     ({"answer_weight": 0.1}, "--answer-weight"), ({"num_rewrites": 3}, "--num-rewrites")])
def test_paper_recipe_refuses_what_contradicts_it(kw, flag):
    with pytest.raises(ValueError, match=f"--recipe paper.*{flag}|{flag}.*--recipe paper|--recipe paper"):
        _cfg(recipe="paper", **kw)


def test_paper_recipe_contradiction_is_a_one_line_exit_2(cli, qa_file, tmp_path):
    code, out = cli("unlearn", "--forget", str(qa_file), "--out", str(tmp_path / "o"), "--recipe", "paper", "--retain", str(qa_file))
    assert code == 2 and "--recipe paper" in out and "--retain" in out and "Traceback" not in out


def test_paper_filters_reject_only_empty_identical_and_duplicate_texts():
    q, a = "Where was Mara Velquist born?", "Mara Velquist was born in Tromsø in 1956."
    leaking = "I'm sorry, but I think she was born in Tromsø."
    assert check_negative(leaking, q, a) == "leak" and check_negative_paper(leaking, a) is None
    assert check_negative_paper("  ", a) == "empty" and check_negative_paper(a.upper(), a) == "identical"
    lost = "Where was the author born?"  # drops the question's named entity
    assert check_rewrite(lost, q, a) == "lost_entity" and check_rewrite_paper(lost, q) is None
    assert check_rewrite_paper(q.lower(), q) == "identical"
    assert check_rewrite_paper("Which town was Mara Velquist born in?", q, taken=["which town was mara velquist born in"]) == "duplicate"


def test_paper_filters_key_the_generation_cache_and_full_keeps_old_keys(tiny):
    backend = LocalBackend(*tiny)
    rewrite, negative = load_prompt("rewrite"), load_prompt("negative_refusal")
    full, paper = GenerateConfig(), GenerateConfig(filters="paper")
    assert config_hash(full, rewrite, negative, backend) != config_hash(paper, rewrite, negative, backend)
    assert "filters" not in full.model_dump(by_alias=True, exclude={"filters"})  # the dump earlier caches were keyed on


def test_restructure_with_paper_filters_keeps_what_the_full_filters_reject(embedded, qa_file, tmp_path):
    import json

    from ulmr.models import load

    records = load_qa(qa_file)
    res = restructure(records, LocalBackend(*load(embedded)), GenerateConfig(filters="paper", max_new_tokens=32),
                      cache_path=tmp_path / "cache.jsonl")
    attempts = [json.loads(line) for line in (tmp_path / "cache.jsonl").read_text().splitlines()]
    assert {a.get("reason") for a in attempts if isinstance(a, dict)} <= {None, "empty", "identical", "duplicate"}
    assert len(res.rows) == 3 * len(records)
    rows = [(r, records[r["source_index"]]) for r in res.rows]
    full = [check_negative(r["answer"], rec.question, rec.answer) for r, rec in rows if not r["fallback"]]
    full += [check_rewrite(r["question"], rec.question, rec.answer) for r, rec in rows if r["rewrite_id"] and not r["question_fallback"]]
    # the embedded model's texts name what they refuse or drop entities; the full filters reject some of them
    assert any(reason is not None for reason in full), full
