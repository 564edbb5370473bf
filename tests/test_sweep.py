import pytest
import torch

from ulmr.errors import ConfigError
from ulmr.merge import Interpolator
from ulmr.sweep import SweepPoint, parse_alphas, select_alpha


def P(a, probe, util=0.8, retain=0.9):
    return SweepPoint(a, probe, 0.0, retain, 0.0, util)


def test_select_alpha_on_synthetic_curve():
    # forgetting improves with α but utility collapses past 0.6
    pts = [P(0.0, 0.9), P(0.2, 0.7), P(0.4, 0.5), P(0.6, 0.3, util=0.785), P(0.8, 0.1, util=0.5), P(1.0, 0.05, util=0.3)]
    alpha, rule = select_alpha(pts)
    assert alpha == 0.6 and "85% of alpha=0" in rule and "- 2 points" in rule


def test_select_alpha_respects_retain_and_ties_go_smaller():
    pts = [P(0.0, 0.9), P(0.3, 0.2), P(0.5, 0.2), P(0.7, 0.1, retain=0.5)]
    assert select_alpha(pts)[0] == 0.3


def test_select_alpha_takes_the_most_useful_alpha_when_none_holds():
    pts = [P(0.0, 0.9), P(0.2, 0.5, util=0.5), P(0.4, 0.3, util=0.6), P(0.6, 0.1, util=0.2)]
    alpha, rule = select_alpha(pts)
    assert alpha == 0.4 and "highest utility taken" in rule


def test_select_alpha_needs_zero():
    with pytest.raises(ConfigError):
        select_alpha([P(0.5, 0.1)])


def test_parse_alphas():
    assert parse_alphas("0, 0.5,1") == [0.0, 0.5, 1.0]
    for bad in ("1.5", "x", ""):
        with pytest.raises(ConfigError):
            parse_alphas(bad)


def test_interpolator_endpoints_and_middle(tiny_model_dir):
    from ulmr.models import load_model

    base = {k: v.clone() for k, v in load_model(str(tiny_model_dir)).state_dict().items()}
    ft = load_model(str(tiny_model_dir))
    with torch.no_grad():
        for p in ft.parameters():
            p.add_(0.05)
    ft_sd = {k: v.clone() for k, v in ft.state_dict().items()}
    interp = Interpolator(ft, tiny_model_dir)
    interp.set(0.0)
    assert all(torch.equal(ft.state_dict()[k], base[k]) for k in base)
    interp.set(0.25)
    for k in base:
        torch.testing.assert_close(ft.state_dict()[k], base[k] + 0.25 * (ft_sd[k] - base[k]))
    interp.set(1.0)
    for k in base:
        torch.testing.assert_close(ft.state_dict()[k], ft_sd[k])


def test_interpolator_lora_scales_adapter(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from ulmr.models import load_model

    m = get_peft_model(load_model(str(tiny_model_dir)), LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        full = m(input_ids=ids).logits
        with m.disable_adapter():
            base = m(input_ids=ids).logits
    interp = Interpolator(m)
    interp.set(0.0)
    with torch.no_grad():
        torch.testing.assert_close(m(input_ids=ids).logits, base)
    interp.set(1.0)
    with torch.no_grad():
        torch.testing.assert_close(m(input_ids=ids).logits, full)


@pytest.mark.parametrize("lora", [False, True])
def test_sweep_sets_each_alpha_and_ends_at_p_f(tiny_model_dir, monkeypatch, lora):
    """The sweep measures p_θ + α·(p_f − p_θ) at each α and leaves p_f; a LoRA model ignores ``base_dir``
    (the pipeline passes it either way) and is never merged."""
    import ulmr.sweep
    from ulmr.merge import average_into
    from ulmr.models import load_model

    if lora:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(0)
        ft = get_peft_model(load_model(str(tiny_model_dir)), LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
        weight = lambda m: m.base_model.model.model.layers[0].self_attn.q_proj.get_delta_weight("default")  # noqa: E731
    else:
        ft = load_model(str(tiny_model_dir))
        with torch.no_grad():
            for p in ft.parameters():
                p.add_(0.05)
        weight = lambda m: m.model.layers[0].self_attn.q_proj.weight  # noqa: E731
    p_f = weight(ft).detach().clone()
    seen = {}
    monkeypatch.setattr(ulmr.sweep, "measure_point", lambda model, tok, a, *rest: seen.setdefault(a, weight(model).detach().clone()))
    ulmr.sweep.sweep(ft, None, tiny_model_dir, [0.0, 0.5], [], [])
    assert torch.equal(weight(ft), p_f)
    if lora:
        assert torch.equal(seen[0.0], torch.zeros_like(p_f)) and torch.allclose(seen[0.5], 0.5 * p_f, rtol=1e-6, atol=0)
    else:
        expect = load_model(str(tiny_model_dir))
        with torch.no_grad():
            for p in expect.parameters():
                p.add_(0.05)
        average_into(expect, tiny_model_dir, 0.5)
        assert torch.equal(seen[0.5], expect.model.layers[0].self_attn.q_proj.weight)
        assert torch.equal(seen[0.0], load_model(str(tiny_model_dir)).model.layers[0].self_attn.q_proj.weight)
