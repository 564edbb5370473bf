import pytest
import torch

from ulmr.errors import ConfigError, ModelError
from ulmr.merge import average_into, average_state_dicts, check_alpha, scale_lora
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


def test_average_state_dicts_endpoints(tiny_model_dir):
    base = load_model(str(tiny_model_dir)).state_dict()
    ft = _perturbed(tiny_model_dir).state_dict()
    a0, a1 = average_state_dicts(base, ft, 0.0), average_state_dicts(base, ft, 1.0)
    assert all(torch.equal(a0[k], base[k]) for k in base)
    assert all(torch.allclose(a1[k], ft[k], atol=1e-7) for k in base)


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
    expect = average_state_dicts(base_sd, full, 0.4)
    got = scale_lora(peft_model, 0.4).state_dict()
    for k in expect:
        torch.testing.assert_close(got[k], expect[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), 1.5])
def test_alpha_range(bad):
    with pytest.raises(ConfigError):
        check_alpha(bad)


def test_extrapolation_needs_flag():
    assert check_alpha(1.5, allow_extrapolation=True) == 1.5
