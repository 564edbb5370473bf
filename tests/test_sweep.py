import pytest
import torch

from ulmr.errors import ConfigError
from ulmr.sweep import Interpolator, SweepPoint, parse_alphas, select_alpha


def P(a, probe, util=0.8, retain=0.9):
    return SweepPoint(a, probe, 0.0, retain, 0.0, util)


def test_select_alpha_on_synthetic_curve():
    # forgetting improves with α but utility collapses past 0.6
    pts = [P(0.0, 0.9), P(0.2, 0.7), P(0.4, 0.5), P(0.6, 0.3, util=0.77), P(0.8, 0.1, util=0.5), P(1.0, 0.05, util=0.3)]
    alpha, rule = select_alpha(pts, tolerance=0.95)
    assert alpha == 0.6 and "95%" in rule


def test_select_alpha_respects_retain_and_ties_go_smaller():
    pts = [P(0.0, 0.9), P(0.3, 0.2), P(0.5, 0.2), P(0.7, 0.1, retain=0.5)]
    assert select_alpha(pts)[0] == 0.3


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
