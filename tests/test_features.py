"""Features through their public entry points on the tiny model (1-2 steps each): the ``ulmr train`` stage,
``--keep-finetuned``, ``--lora`` through ``ulmr unlearn``, flags over a YAML ``--config``, ULMR under
``accelerate launch``, ``ulmr.evaluate`` and the demo's PASS/FAIL rules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scripts.robust import assert_one_line_error

RETAIN = [{"question": "What is the capital of France?", "answer": "Paris is the capital of France."},
          {"question": "How many legs has a spider?", "answer": "A spider has eight legs."}]


def _qa(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def _close(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=lambda m: f"{name}: {m}")


def test_train_stage_saves_p_f_and_keep_finetuned_keeps_that_p_f(cli, tiny_model_dir, qa_file, tmp_path, one_thread):
    """`ulmr train` saves p_f itself (no generation, no averaging); `ulmr unlearn --keep-finetuned` with the same
    settings keeps the same p_f in OUT/finetuned and saves p_u = 0.5 p_f + 0.5 p_base."""
    common = ["--model", str(tiny_model_dir), "--method", "graddiff", "--retain", str(_qa(tmp_path / "r.jsonl", RETAIN)),
              "--max-steps", "2", "--batch-size", "2", "--lr", "1e-3", "--checkpoint-steps", "0"]
    code, err = cli("train", "--data", str(qa_file), "--out", str(tmp_path / "pf"), *common)
    assert code == 0, err
    base, pf = _weights(tiny_model_dir), _weights(tmp_path / "pf")
    rec = json.loads((tmp_path / "pf" / "ulmr_run.json").read_text())
    assert rec["alpha"] is None and rec["training"]["steps"] == 2 and rec["counts"]["d_fr_rows"] == 0
    assert not (tmp_path / "pf" / "d_fr.jsonl").exists() and not (tmp_path / "pf" / "finetuned").exists()
    assert pf.keys() == base.keys() and any(not torch.equal(pf[k], base[k]) for k in base)

    code, err = cli("unlearn", "--forget", str(qa_file), "--out", str(tmp_path / "u"), "--alpha", "0.5", "--keep-finetuned", *common)
    assert code == 0, err
    kept, pu = _weights(tmp_path / "u" / "finetuned"), _weights(tmp_path / "u")
    assert kept.keys() == pu.keys() == base.keys()
    for k in base:
        _close(kept[k], pf[k], k)
        _close(pu[k], 0.5 * (base[k] + kept[k]), k)


def test_lora_through_unlearn_saves_a_merged_model_and_keeps_the_adapter(cli, tiny_model_dir, qa_file, tmp_path, one_thread):
    from peft import PeftModel

    from ulmr.models import load_model

    out = tmp_path / "u"
    code, err = cli("unlearn", "--model", str(tiny_model_dir), "--forget", str(qa_file), "--out", str(out), "--method", "ga",
                    "--anchor", "none", "--lora", "--lora-r", "2", "--alpha", "0.5", "--keep-finetuned", "--max-steps", "2",
                    "--batch-size", "2", "--lr", "1e-2", "--checkpoint-steps", "0")
    assert code == 0, err
    assert not (out / "adapter_config.json").exists()
    base, pu = _weights(tiny_model_dir), _weights(out)
    assert pu.keys() == base.keys()  # a plain model: the adapter is merged in, no lora_ tensors
    adapter = out / "finetuned"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 2
    changed = {k for k in base if not torch.equal(pu[k], base[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)  # peft's Llama targets
    # p_u = p_base + 0.5 * dW, where dW is the kept adapter merged at full strength
    full = PeftModel.from_pretrained(load_model(str(tiny_model_dir)), str(adapter)).merge_and_unload().state_dict()
    for k in changed:
        _close(pu[k], base[k] + 0.5 * (full[k] - base[k]), k)
    assert json.loads((out / "ulmr_run.json").read_text())["training"]["lora"] is True


def test_flags_override_the_yaml_config(cli, tiny_model_dir, qa_file, tmp_path, one_thread):
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {tiny_model_dir}\nmethod: ga\nanchor: none\nseed: 7\nmax-steps: 3\nbatch_size: 1\n"
                      "lr: 0.5\ncheckpoint_steps: 0\n", encoding="utf-8")
    out = tmp_path / "o"
    # --batch-size 4 is the flag's default: given on the command line, it still wins over the file
    code, err = cli("train", "--config", str(config), "--data", str(qa_file), "--out", str(out),
                    "--max-steps", "1", "--batch-size", "4", "--lr", "1e-3")
    assert code == 0, err
    rec = json.loads((out / "ulmr_run.json").read_text())
    s = rec["settings"]
    assert (s["model"], s["method"], s["anchor"], s["seed"], s["checkpoint_steps"]) == (str(tiny_model_dir), "ga", "none", 7, 0)
    assert (s["max_steps"], s["batch_size"], s["lr"]) == (1, 4, 1e-3)
    assert rec["training"]["steps"] == 1


def test_ulmr_under_accelerate_launch_is_a_one_line_error(cli, tiny_model_dir, qa_file, tmp_path, monkeypatch):
    import ulmr.models
    import ulmr.pipeline

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the error")

    for mod in (ulmr.models, ulmr.pipeline):
        monkeypatch.setattr(mod, "load", refuse)
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, err = cli("unlearn", "--model", str(tiny_model_dir), "--forget", str(qa_file), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "under accelerate launch, build D_fr first with `ulmr generate`",
                          "then run `ulmr train --data D_FR.jsonl`")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_python_evaluate_scores_each_named_set(tiny, tiny_model_dir, qa_file, tmp_path):
    import ulmr
    from ulmr.data.chat import ChatFormat

    retain = _qa(tmp_path / "retain.jsonl", RETAIN)
    res = ulmr.evaluate(str(tiny_model_dir), qa_file, retain=[retain, qa_file], max_new_tokens=3, batch_size=4)
    assert list(res["sets"]) == ["forget", "retain", "retain1"]
    assert [res["sets"][n]["n"] for n in res["sets"]] == [3, 2, 3]
    assert [r["question"] for r in res["items"]["retain"]] == [r["question"] for r in RETAIN]
    # each answer's probability is the model's: exp(-mean NLL of the answer tokens after the chat prompt)
    model, tok = tiny
    first = res["items"]["forget"][0]
    e = ChatFormat(tok).encode(first["question"], first["answer"])
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([e.input_ids]), labels=torch.tensor([e.labels])).loss.item()
    assert first["answer_prob"] == pytest.approx(math.exp(-loss), rel=1e-4)
    forget = res["sets"]["forget"]
    assert forget["prob"] == pytest.approx(sum(r["answer_prob"] for r in res["items"]["forget"]) / 3)
    assert res["sets"]["retain1"]["prob"] == pytest.approx(forget["prob"])  # the same file, the same numbers
    assert all(isinstance(r["generated"], str) and 0 <= r["rougeL_recall"] <= 1 for r in res["items"]["forget"])


BEFORE = {"forget_rouge": 0.8, "neighbour_rouge": 1.0, "utility_acc": 0.75}
AT_BOUNDS = {"forget_rouge": 0.4, "neighbour_rouge": 0.85, "utility_acc": 0.73}  # every rule exactly on its bound


@pytest.mark.parametrize("after,want", [
    (AT_BOUNDS, [True, True, True]),
    ({**AT_BOUNDS, "forget_rouge": 0.41}, [False, True, True]),  # forgot less than half
    ({**AT_BOUNDS, "neighbour_rouge": 0.84}, [True, False, True]),  # lost neighbour knowledge
    ({**AT_BOUNDS, "utility_acc": 0.7299}, [True, True, False]),  # utility fell by more than 2 points
    ({"forget_rouge": 0.9, "neighbour_rouge": 0.5, "utility_acc": 0.5}, [False, False, False]),
])
def test_demo_pass_fail_rules(after, want):
    from ulmr.demo import check_results

    checks = check_results(BEFORE, after)
    assert [name for name, _ in checks] == ["forget ROUGE-L recall after <= 50% of before",
                                            "neighbour ROUGE-L recall after >= 85% of before",
                                            "utility accuracy drops by <= 2 points"]
    assert [ok for _, ok in checks] == want
