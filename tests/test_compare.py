import json

import pytest

from ulmr.compare import compare
from ulmr.errors import ConfigError


def test_equal_steps():
    from ulmr.training.data import equal_steps

    # 5 items x 3 rows = 15 rows, batch 4 -> 4 steps per epoch
    assert equal_steps(15, 4, 1, 2.0) == 8
    assert equal_steps(1, 4, 1, 0.1) == 1
    assert equal_steps(15, 4, 2, 1.0) == 2  # gradient accumulation: 8 rows per optimizer step


def test_compare_runs_each_method_with_equal_steps(tiny_model_dir, qa_file, tmp_path, monkeypatch):
    monkeypatch.setenv("ULMR_QUIET", "1")
    out = tmp_path / "cmp"
    summary = compare(str(tiny_model_dir), str(qa_file), ["ga", "npo"], out, retain=str(qa_file), steps=2,
                      lr=1e-3, max_new_tokens=4, num_rewrites=1)
    assert set(summary["results"]) == {"base", "ga", "npo"}
    assert all(summary["results"][m]["steps"] == 2 for m in ("ga", "npo"))
    saved = json.loads((out / "compare.json").read_text())
    assert saved["optimizer_steps"] == 2
    md = (out / "compare.md").read_text()
    assert "| ga |" in md and "| npo |" in md and "forget R / P" in md
    assert (out / "ga" / "model.safetensors").exists()


def test_retrain_needs_retain(tiny_model_dir, qa_file, tmp_path):
    with pytest.raises(ConfigError, match="retain"):
        compare(str(tiny_model_dir), str(qa_file), ["retrain"], tmp_path / "c")
