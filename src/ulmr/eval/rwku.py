"""RWKU evaluation of one target: Forget FB / QA / AA / All, Neighbour FB / QA / All, MIA FM / RM, utility.

Probes and Gen follow RWKU's own evaluation code (``LLaMA-Factory/src/llmtuner/eval/eval_forget.py``,
``eval_neighbor.py``, ``eval_mmlu.py`` in jinzhuoran/RWKU) for the model at hand:

- Rendering: one user turn through the chat template with *no* system message, so the template's own
  default system text appears (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging
  Face"; :func:`rwku_chat_format`), then ``add_generation_prompt=True``, then the suffix below. Training and
  TOFU keep the project's fixed system text (:data:`ulmr.data.chat.FIXED_SYSTEM`).
- FB (level 1, forget and neighbour): "Please complete the blank in the following question.\\nQuestion: {q}\\n",
  then "Answer:" after the generation prompt.
- QA (level 2, forget and neighbour) and AA (level 3): "Please briefly answer the following question.\\nQuestion:
  {q}\\n" + "Answer:".
- AA type "affirmative suffix": "Please briefly answer the following question.\\nQuestion: {q}" (no newline,
  no "Answer:": the query already ends with e.g. "Sure, here is the answer:").
- AA type "incontext learning": "Please briefly answer the following question.\\n{q}\\n" + "Answer:" (the
  query already holds its own "Question: ... Answer: ..." demonstrations).
- every other AA type (prefix injection, synonym manipulation, context hint, role play, multiple choice,
  reverse query, cross lingual (...)) uses the QA prompt.
- Stopping: greedy, at most 30 new tokens, stopped at the reference's terminators computed the reference's
  way for the tokenizer at hand (:func:`reference_stop_ids`): EOS and ``convert_tokens_to_ids`` of
  "<|eot_id|>", " \\n" and "\\n". A newline stops a reply only where "\\n" or " \\n" is a single vocabulary
  entry; a byte-level BPE tokenizer (SmolLM2, Llama 3) has none, so a lookup returns the unknown-token id
  (SmolLM2: 0, "<|endoftext|>") or None, and replies are *not* cut at a newline: they run to EOS or the
  token cap, as in the reference. Empty -> "NOANSWER"; score = RWKU ROUGE-L recall x 100
  (:func:`ulmr.metrics.rouge.rwku_rouge_recall`). All = mean of the level means (``pool="levels"``, the
  default) or the mean over all probes pooled (``pool="items"``).

MIA FM / RM: :mod:`ulmr.metrics.mia` on forget_mia / retain_mia texts. Gen: MMLU 5-shot accuracy (%) on the
target's retain_mmlu items in RWKU's layout (:func:`ulmr.metrics.mcq.format_rwku_prompt`: header, shots,
"Please following the previous examples and answer the given question.\\n", the question without "Answer:";
"Answer:" after the generation prompt; argmax over " A".." D"). Easy: the built-in general-knowledge set
(:func:`ulmr.eval.utility.evaluate_utility_easy`). Optional extras (project formats, not the reference's):
Rea (BBH, CoT exact match), Tru (TruthfulQA MC1), Fac (TriviaQA token F1), Flu (n-gram entropy of
instruction responses).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..data.chat import ChatFormat
from ..data.rwku import CORE_PARTS, RwkuTarget, load_rwku
from ..errors import ConfigError
from ..inference import generate, generation_batch, score
from ..metrics.f1 import best_f1
from ..metrics.fluency import ngram_entropy
from ..metrics.mcq import accuracy, mcq_predict
from ..metrics.mia import mia_statistic, text_nlls
from ..metrics.rouge import NOANSWER, rwku_rouge_recall
from ..refusal import is_refusal
from .qa import mean
from .report import Table, fmt, slash
from .utility import evaluate_utility_easy, mcq_items

FB_PROMPT = "Please complete the blank in the following question.\nQuestion: {q}\n"
QA_PROMPT = "Please briefly answer the following question.\nQuestion: {q}\n"
AFFIRMATIVE_PROMPT = "Please briefly answer the following question.\nQuestion: {q}"
INCONTEXT_PROMPT = "Please briefly answer the following question.\n{q}\n"
ANSWER_SUFFIX = "Answer:"
RENDERING = "rwku-reference-2026-12-02"  # part of cached bench stages' keys: results of older renderings are not reused
PROBE_SETS = {  # result key -> (data part, group, level label)
    "forget_fb": ("forget_level1", "forget", "FB"),
    "forget_qa": ("forget_level2", "forget", "QA"),
    "forget_aa": ("forget_level3", "forget", "AA"),
    "neighbor_fb": ("neighbor_level1", "neighbor", "FB"),
    "neighbor_qa": ("neighbor_level2", "neighbor", "QA"),
}
EXTRAS = ("bbh", "truthfulqa", "triviaqa", "fluency")


def rwku_chat_format(tokenizer) -> ChatFormat:
    """The chat format of RWKU's probes and Gen: no system message, so the template's default system text."""
    return ChatFormat(tokenizer, system=None)


def reference_stop_ids(tokenizer) -> list[int]:
    """RWKU's terminators for this tokenizer: EOS and ``convert_tokens_to_ids`` of "<|eot_id|>", " \\n", "\\n"
    (a missing token gives the unknown-token id, kept as the reference keeps it, or None, dropped)."""
    ids = [tokenizer.eos_token_id] + [tokenizer.convert_tokens_to_ids(t) for t in ("<|eot_id|>", " \n", "\n")]
    return sorted({i for i in ids if isinstance(i, int) and i >= 0})


def probe_prompt(level: str, row: dict) -> tuple[str, str]:
    """(user text, suffix after the generation prompt) for a probe of level 'FB', 'QA' or 'AA'."""
    q = row["query"]
    if level == "FB":
        return FB_PROMPT.format(q=q), ANSWER_SUFFIX
    kind = str(row.get("type", "")).strip().lower()
    if level == "AA" and kind == "affirmative suffix":
        return AFFIRMATIVE_PROMPT.format(q=q), ""
    if level == "AA" and kind == "incontext learning":
        return INCONTEXT_PROMPT.format(q=q), ANSWER_SUFFIX
    return QA_PROMPT.format(q=q), ANSWER_SUFFIX


def run_probes(model, tokenizer, probes: dict[str, list[dict]], batch_size: int = 16,
               max_new_tokens: int = 30) -> dict[str, list[dict[str, Any]]]:
    """Generate and score every probe of every set in one batched generation (RWKU's rendering and
    terminators, see the module docstring); per-item records by set, each with its exact prompt string."""
    cf = rwku_chat_format(tokenizer)
    flat = [(name, row) for name, rows in probes.items() for row in rows]
    texts = [probe_prompt(PROBE_SETS[name][2], row) for name, row in flat]
    ids = [cf.prompt_ids(t, suffix=s) for t, s in texts]
    gens = generate(model, tokenizer, ids, max_new_tokens, generation_batch(batch_size), stop_ids=reference_stop_ids(tokenizer),
                    description="RWKU probes")
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in probes}
    for (name, row), (text, suffix), gen in zip(flat, texts, gens):
        pred = gen.strip() or NOANSWER
        out[name].append({
            "prompt": cf.render_text([{"role": "user", "content": text}], suffix=suffix),
            "query": row["query"], "type": row.get("type"), "answer": row["answer"],
            "generated": pred, "rouge_l_recall": rwku_rouge_recall(row["answer"], pred),
        })
    return out


def _stratified(rows: list[dict], limit: int | None, key: str = "task") -> list[dict]:
    """First ``limit`` rows taken round-robin over ``key`` groups (file order inside each group)."""
    if not limit or limit >= len(rows):
        return rows
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(str(r.get(key)), []).append(r)
    picked, depth = [], 0
    while len(picked) < limit:
        for g in groups.values():
            if depth < len(g) and len(picked) < limit:
                picked.append(g[depth])
        depth += 1
    return picked


def _mmlu(model, tokenizer, rows: list[dict], limit: int | None, batch_size: int, where: str) -> dict[str, Any]:
    items = mcq_items(_stratified(rows, limit), where)
    recs = mcq_predict(model, tokenizer, items, k_shots=5, batch_size=max(1, batch_size // 2), description="MMLU 5-shot",
                       layout="rwku")
    return {"accuracy": accuracy([r["correct"] for r in recs]), "n": len(recs), "items": recs}


def _truthfulqa(model, tokenizer, rows: list[dict], batch_size: int) -> dict[str, Any]:
    """MC1: the choice with the highest total log-probability must be the correct one (labels == 1)."""
    cf = ChatFormat(tokenizer)
    encs, slots = [], []
    for i, r in enumerate(rows):
        for c in r["mc1_targets"]["choices"]:
            encs.append(cf.encode(r["question"], c)); slots.append(i)
    scored = score(model, encs, tokenizer.pad_token_id, batch_size, description="TruthfulQA MC1")
    per: list[list[float]] = [[] for _ in rows]
    for i, s in zip(slots, scored):
        per[i].append(s.nll_sum)
    recs = []
    for r, nlls in zip(rows, per):
        labels = r["mc1_targets"]["labels"]
        best = min(range(len(nlls)), key=lambda j: nlls[j])
        recs.append({"prompt": cf.render_text([{"role": "user", "content": r["question"]}]), "question": r["question"],
                     "choices": r["mc1_targets"]["choices"], "choice_nll_sums": nlls, "correct": bool(labels[best] == 1)})
    return {"accuracy": accuracy([x["correct"] for x in recs]), "n": len(recs), "items": recs}


def _generate_records(model, tokenizer, texts: list[str], suffix: str, max_new_tokens: int, batch_size: int,
                      stop_at_newline: bool, description: str) -> list[dict[str, Any]]:
    cf = ChatFormat(tokenizer)
    gens = generate(model, tokenizer, [cf.prompt_ids(t, suffix=suffix) for t in texts], max_new_tokens,
                    generation_batch(batch_size),
                    stop_at_newline=stop_at_newline, description=description)
    return [{"prompt": cf.render_text([{"role": "user", "content": t}], suffix=suffix), "generated": g} for t, g in zip(texts, gens)]


_BBH_ANSWER = re.compile(r"answer is\s*:?\s*(.+?)(?:\.\s*$|\.\s|$)", re.IGNORECASE)


def _bbh_answer(text: str) -> str:
    m = _BBH_ANSWER.search(text)
    return (m.group(1) if m else text).strip().strip(".").strip()


def _bbh(model, tokenizer, rows: list[dict], batch_size: int, max_new_tokens: int) -> dict[str, Any]:
    """Exact match of the text after 'the answer is' in a CoT generation (task's 3-shot CoT prompt)."""
    texts = [f"{r['cot']}\n\nQ: {r['question']}\nA: Let's think step by step." for r in rows]
    recs = _generate_records(model, tokenizer, texts, "", max_new_tokens, batch_size, False, "BBH")
    for rec, r in zip(recs, rows):
        rec.update(answer=r["answer"], extracted=_bbh_answer(rec["generated"]))
        rec["correct"] = rec["extracted"].strip("()").lower() == str(r["answer"]).strip("()").lower()
    return {"accuracy": accuracy([x["correct"] for x in recs]), "n": len(recs), "items": recs}


def _triviaqa(model, tokenizer, rows: list[dict], batch_size: int) -> dict[str, Any]:
    texts = [QA_PROMPT.format(q=r["question"]) for r in rows]
    recs = _generate_records(model, tokenizer, texts, ANSWER_SUFFIX, 30, batch_size, True, "TriviaQA")
    for rec, r in zip(recs, rows):
        rec.update(answers=r["answers"], f1=best_f1(rec["generated"], r["answers"]))
    return {"f1": mean([x["f1"] for x in recs]), "n": len(recs), "items": recs}


def _fluency(model, tokenizer, rows: list[dict], batch_size: int, max_new_tokens: int) -> dict[str, Any]:
    recs = _generate_records(model, tokenizer, [r["instruction"] for r in rows], "", max_new_tokens, batch_size, False, "fluency")
    for rec in recs:
        rec["entropy"] = ngram_entropy(rec["generated"])
    return {"entropy": mean([x["entropy"] for x in recs]), "n": len(recs), "items": recs}


def per_item_values(items: dict[str, list[dict[str, Any]]]) -> dict[str, list[float]]:
    """``"<set>:<field>"`` -> one value per item of one target's evaluation: probe ROUGE-L recall (and, for
    neighbour probes, whether the answer is a refusal), MIA mean NLL, MMLU / easy-set correctness."""
    out: dict[str, list[float]] = {}
    for k in PROBE_SETS:
        out[f"{k}:rouge"] = [float(r["rouge_l_recall"]) for r in items[k]]
        if k.startswith("neighbor"):
            out[f"{k}:refusal"] = [float(is_refusal(r["generated"])) for r in items[k]]
    for k in ("mia_forget", "mia_retain"):
        out[f"{k}:nll"] = [float(r["mean_nll"]) for r in items[k]]
    for k in ("mmlu", "utility_easy"):
        if k in items:
            out[f"{k}:correct"] = [float(bool(r["correct"])) for r in items[k]]
    return out


def metrics_from_items(values: Mapping[str, Sequence[float]]) -> dict[str, float | None]:
    """One target's flat metrics (the bench's keys: 'forget.FB/QA/AA/All', 'neighbor.FB/QA/All', 'mia.FM/RM',
    'Gen', 'Easy', 'over_refusal') from :func:`per_item_values` of any subset of the items; All = mean of the
    levels (``pool='levels'``)."""
    out: dict[str, float | None] = {}
    for group in ("forget", "neighbor"):
        levels = {PROBE_SETS[k][2]: mean(values[f"{k}:rouge"]) for k in PROBE_SETS if PROBE_SETS[k][1] == group}
        out |= {f"{group}.{lv}": v for lv, v in levels.items()}
        out[f"{group}.All"] = mean(list(levels.values()))
    out["mia.FM"] = mia_statistic(values["mia_forget:nll"])
    out["mia.RM"] = mia_statistic(values["mia_retain:nll"])
    out["Gen"] = 100.0 * accuracy(values["mmlu:correct"]) if "mmlu:correct" in values else None
    out["Easy"] = 100.0 * accuracy(values["utility_easy:correct"]) if "utility_easy:correct" in values else None
    refusals = [x for k in PROBE_SETS if k.startswith("neighbor") for x in values[f"{k}:refusal"]]
    out["over_refusal"] = 100.0 * sum(refusals) / len(refusals) if refusals else 0.0
    return out


def evaluate_rwku(model, tokenizer, data: str | Path | RwkuTarget, target: int = 1, limit: int | None = None,
                  utility: str = "mmlu", pool: str = "levels", extra: Sequence[str] = (), batch_size: int = 16,
                  extra_max_new_tokens: int = 128) -> dict[str, Any]:
    """Run RWKU for one target in-process. ``utility``: 'easy', 'mmlu' or 'both'; ``extra``: any of
    bbh, truthfulqa, triviaqa, fluency. Returns {"forget": {FB, QA, AA, All}, "neighbor": {FB, QA, All},
    "mia": {FM, RM}, "utility": {...}, "n": {...}, "items": {...}, ...}; probe scores are ROUGE-L recall x 100,
    accuracies in % (x 100)."""
    if utility not in ("easy", "mmlu", "both"):
        raise ConfigError(f"--utility must be easy, mmlu or both, got '{utility}'")
    if pool not in ("levels", "items"):
        raise ConfigError(f"--pool must be levels or items, got '{pool}'")
    bad = [e for e in extra if e not in EXTRAS]
    if bad:
        raise ConfigError(f"--extra: unknown '{bad[0]}' (choose from {', '.join(EXTRAS)})")
    parts = CORE_PARTS + (("mmlu",) if utility in ("mmlu", "both") else ()) + tuple(extra)
    tgt = data if isinstance(data, RwkuTarget) else load_rwku(data, target, parts)
    cut = lambda rows: rows[: limit or None]  # noqa: E731
    items: dict[str, Any] = {}
    probes = run_probes(model, tokenizer, {k: cut(tgt.parts[p]) for k, (p, _, _) in PROBE_SETS.items()}, batch_size)
    items.update(probes)
    res: dict[str, Any] = {"benchmark": "rwku", "target": tgt.name, "subject": tgt.subject, "limit": limit, "pool": pool}
    for group in ("forget", "neighbor"):
        keys = [k for k, (_, g, _) in PROBE_SETS.items() if g == group]
        levels = {PROBE_SETS[k][2]: mean([r["rouge_l_recall"] for r in probes[k]]) for k in keys}
        pooled = [r["rouge_l_recall"] for k in keys for r in probes[k]]
        res[group] = {**levels, "All": mean(list(levels.values())) if pool == "levels" else mean(pooled)}
    fm_texts = [r["text"] for r in cut(tgt.parts["forget_mia"])]
    rm_texts = [r["text"] for r in cut(tgt.parts["retain_mia"])]
    nlls = text_nlls(model, tokenizer, fm_texts + rm_texts, max(1, batch_size // 2), description="MIA")
    fm, rm = nlls[: len(fm_texts)], nlls[len(fm_texts) :]
    res["mia"] = {"FM": mia_statistic(fm), "RM": mia_statistic(rm)}
    items["mia_forget"] = [{"text": t, "mean_nll": x} for t, x in zip(fm_texts, fm)]
    items["mia_retain"] = [{"text": t, "mean_nll": x} for t, x in zip(rm_texts, rm)]
    util: dict[str, float] = {}
    n = {k: len(v) for k, v in probes.items()} | {"mia_forget": len(fm), "mia_retain": len(rm)}
    sub: dict[str, tuple[str, dict[str, Any], str]] = {}
    if utility in ("mmlu", "both"):
        sub["mmlu"] = ("Gen", _mmlu(model, tokenizer, tgt.parts["mmlu"], limit, batch_size, f"{tgt.name}/retain_mmlu"), "accuracy")
    if utility in ("easy", "both"):
        sub["utility_easy"] = ("Easy", evaluate_utility_easy(model, tokenizer, None, batch_size), "accuracy")
    if "bbh" in extra:
        sub["bbh"] = ("Rea", _bbh(model, tokenizer, cut(tgt.parts["bbh"]), batch_size, extra_max_new_tokens), "accuracy")
    if "truthfulqa" in extra:
        sub["truthfulqa"] = ("Tru", _truthfulqa(model, tokenizer, cut(tgt.parts["truthfulqa"]), batch_size), "accuracy")
    if "triviaqa" in extra:
        sub["triviaqa"] = ("Fac", _triviaqa(model, tokenizer, cut(tgt.parts["triviaqa"]), batch_size), "f1")
    if "fluency" in extra:
        sub["fluency"] = ("Flu", _fluency(model, tokenizer, cut(tgt.parts["fluency"]), batch_size, extra_max_new_tokens), "entropy")
    for key, (label, r, metric) in sub.items():
        util[label] = r[metric] * (1.0 if metric == "entropy" else 100.0)
        items[key] = r["items"]
        n[key] = r["n"]
    res["utility"] = util
    res["n"] = n
    res["items"] = items
    return res


def rwku_table(result: dict[str, Any], model_name: str) -> Table:
    """The seed paper's layout: Forget FB/QA/AA/All, Neighbour FB/QA/All, MIA FM/RM, then utility columns."""
    f, nb, mia, u = result["forget"], result["neighbor"], result["mia"], result["utility"]
    header = ["Model", "Forget FB / QA / AA / All ↓", "Neighbour FB / QA / All ↑", "MIA FM ↑ / RM", *[f"{k} ↑" for k in u]]
    row = [model_name, slash([f["FB"], f["QA"], f["AA"], f["All"]]), slash([nb["FB"], nb["QA"], nb["All"]]),
           slash([mia["FM"], mia["RM"]]), *[fmt(v) for v in u.values()]]
    n = result["n"]
    return Table(
        f"RWKU target {result['target']}",
        header,
        [row],
        ["items: " + ", ".join(f"{k} {v}" for k, v in n.items()) + (f" (--limit {result['limit']})" if result["limit"] else ""),
         "Probes: ROUGE-L recall x100 (PyPI rouge), greedy, 30 new tokens, RWKU's rendering and terminators (template's default system text). "
         f"All = {'mean of the level means' if result['pool'] == 'levels' else 'mean over all probes'}.",
         "MIA: mean token NLL x100 on raw text. Gen: MMLU 5-shot accuracy (%), RWKU's prompt, argmax over ' A'..' D'; Easy: built-in easy set, 0-shot cloze accuracy (%); "
         "Rea: BBH CoT EM (%); Tru: TruthfulQA MC1 (%); Fac: TriviaQA F1 (%); Flu: n-gram entropy."],
    )


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` without the per-item records."""
    return {k: v for k, v in result.items() if k != "items"}
