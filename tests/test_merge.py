import pytest
import torch

from ulmr.errors import ConfigError, ModelError
from ulmr.merge import Interpolator, average_into, check_alpha, iter_base_tensors, scale_lora
from ulmr.models import load_model


def _perturbed(tiny_model_dir, scale=0.1):
    m = load_model(str(tiny_model_dir))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return m


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_average_into_matches_formula(tiny_model_dir, alpha):
    base = load_model(str(tiny_model_dir)).state_dict()
    ft = _perturbed(tiny_model_dir)
    expect = {k: base[k] + alpha * (v - base[k]) for k, v in ft.state_dict().items()}
    average_into(ft, tiny_model_dir, alpha)
    for k, v in ft.state_dict().items():
        torch.testing.assert_close(v, expect[k], rtol=0, atol=1e-6)
    if alpha == 0.0:
        for k, v in ft.state_dict().items():
            assert torch.equal(v, base[k])


def test_shape_mismatch_is_one_line_error(tiny_model_dir, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    other = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2))
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ModelError, match="shape"):
        average_into(_perturbed(tiny_model_dir), tmp_path / "other", 0.5)


def test_lora_scaling_equals_merge_then_average(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base_sd = load_model(str(tiny_model_dir)).state_dict()
    peft_model = get_peft_model(load_model(str(tiny_model_dir)), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    import copy

    full = copy.deepcopy(peft_model).merge_and_unload().state_dict()
    expect = {k: base_sd[k] + 0.4 * (full[k] - base_sd[k]) for k in base_sd}
    got = scale_lora(peft_model, 0.4).state_dict()
    for k in expect:
        torch.testing.assert_close(got[k], expect[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), 1.5])
def test_alpha_range(bad):
    with pytest.raises(ConfigError):
        check_alpha(bad)


def test_extrapolation_needs_flag():
    assert check_alpha(1.5, allow_extrapolation=True) == 1.5


# --------------------------------------------------------------------------- one rule for merge, pipeline and sweep
def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_interpolator_equals_average_into_on_tied_model(tiny_model_dir):
    """The sweep's in-memory weights at α are bit for bit what `ulmr merge` and the pipeline save at α,
    including the tied lm_head (absent from the base files, one tensor with embed_tokens)."""
    assert "lm_head.weight" not in dict(iter_base_tensors(tiny_model_dir))
    base = _state(load_model(str(tiny_model_dir)))
    ft = _perturbed(tiny_model_dir)
    assert ft.lm_head.weight is ft.model.embed_tokens.weight
    ft_sd = _state(ft)
    interp = Interpolator(ft, tiny_model_dir)
    for alpha in (0.3, 0.5, 0.0, 1.0):
        interp.set(alpha)
        merged = _perturbed(tiny_model_dir)
        average_into(merged, tiny_model_dir, alpha)
        got, expect = _state(ft), _state(merged)
        assert got.keys() == expect.keys() == base.keys()
        assert all(torch.equal(got[k], expect[k]) for k in got), alpha
        assert torch.equal(got["lm_head.weight"], got["model.embed_tokens.weight"])
        if alpha == 0.0:
            assert all(torch.equal(got[k], base[k]) for k in got)
        if alpha == 1.0:
            assert all(torch.equal(got[k], ft_sd[k]) for k in got)
    assert not torch.equal(base["model.embed_tokens.weight"], ft_sd["model.embed_tokens.weight"])


def test_interpolator_lora_equals_scale_lora(tiny_model_dir):
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(load_model(str(tiny_model_dir)), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    for alpha in (0.4, 1.0):
        in_memory = copy.deepcopy(peft_model)
        interp = Interpolator(in_memory)
        interp.set(0.7)  # scalings are set from the originals, not compounded
        interp.set(alpha)
        got = in_memory.merge_and_unload().state_dict()
        expect = scale_lora(copy.deepcopy(peft_model), alpha).state_dict()
        assert got.keys() == expect.keys()
        assert all(torch.equal(got[k], expect[k]) for k in got), alpha
    base = load_model(str(tiny_model_dir)).state_dict()
    assert not torch.equal(expect["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])


def test_interpolator_base_lacking_a_weight_is_one_line_error(tiny_model_dir, tmp_path):
    from safetensors.torch import save_file

    kept = {k: v for k, v in iter_base_tensors(tiny_model_dir) if "layers.1.mlp" not in k}
    (tmp_path / "partial").mkdir()
    save_file(kept, str(tmp_path / "partial" / "model.safetensors"))
    with pytest.raises(ModelError, match=r"3 fine-tuned tensors are missing from the base model .*layers\.1\.mlp"):
        Interpolator(_perturbed(tiny_model_dir), tmp_path / "partial")


# --------------------------------------------------------------------------- `ulmr merge`
def test_cli_merge_full_weights(cli, tiny_model_dir, tokenizer, tmp_path):
    import json

    ft = _perturbed(tiny_model_dir)
    ft.save_pretrained(tmp_path / "ft", safe_serialization=True)
    tokenizer.save_pretrained(tmp_path / "ft")
    code, err = cli("merge", "--base", str(tiny_model_dir), "--finetuned", str(tmp_path / "ft"), "--alpha", "0.3",
                    "--out", str(tmp_path / "u"))
    assert code in (0, None), err
    base, f = load_model(str(tiny_model_dir)).state_dict(), ft.state_dict()
    saved = load_model(str(tmp_path / "u")).state_dict()
    assert saved.keys() == base.keys()
    for k in base:
        assert torch.equal(saved[k], base[k] + 0.3 * (f[k] - base[k])), k
    record = json.loads((tmp_path / "u" / "ulmr_merge.json").read_text())
    assert record["alpha"] == 0.3 and record["finetuned"] == str(tmp_path / "ft")


def test_cli_merge_lora_adapter(cli, tiny_model_dir, tmp_path):
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(load_model(str(tiny_model_dir)), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    full = copy.deepcopy(peft_model).merge_and_unload().state_dict()
    expect = scale_lora(peft_model, 0.4).state_dict()
    code, err = cli("merge", "--base", str(tiny_model_dir), "--finetuned", str(tmp_path / "adapter"), "--alpha", "0.4",
                    "--out", str(tmp_path / "u"))
    assert code in (0, None), err
    base = load_model(str(tiny_model_dir)).state_dict()
    saved = load_model(str(tmp_path / "u")).state_dict()
    assert saved.keys() == base.keys()
    for k in base:
        assert torch.equal(saved[k], expect[k]), k
        torch.testing.assert_close(saved[k], base[k] + 0.4 * (full[k] - base[k]), rtol=1e-5, atol=1e-6)
    assert not torch.equal(saved["model.layers.0.self_attn.v_proj.weight"], base["model.layers.0.self_attn.v_proj.weight"])
