"""CPGD: advantages, the length bonus and the loss's gradients on cases computed by hand.

Every expected number is worked out in the comment beside it rather than by re-running the
formula.  The loss cases use one sequence of four tokens with ``old_logp = OLD`` and the default
settings (eps 0.2, alpha 0.01, c 3): ln(1.2) = 0.1823 and ln(0.8) = -0.2231 are the clip bounds
on the log-ratio, and the token normaliser is n = 4.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from safework.training.cpgd import (  # noqa: E402
    ADVANTAGE_KINDS,
    CPGDSettings,
    cpgd_loss,
    group_advantages,
    length_bonus,
    token_logprobs,
    varied_groups,
)

F64 = torch.float64
OLD = [-1.0, -2.0, -0.5, -1.5]
ALPHA = 0.01


def t(values, dtype=F64):
    return torch.tensor(values, dtype=dtype)


def grads(shift, adv, settings=None, mask=None, ref_shift=None):
    """Gradient of the loss w.r.t. logp = OLD + shift, one sequence with advantage ``adv``."""
    old = t([OLD])
    logp = (old + t([shift])).requires_grad_(True)
    ref = None if ref_shift is None else (logp.detach() + t([ref_shift]))
    loss, stats = cpgd_loss(
        logp,
        old,
        t([adv]),
        t([mask or [1.0] * 4]),
        settings or CPGDSettings(),
        ref_logp=ref,
    )
    loss.backward()
    return logp.grad[0], loss, stats


# -- advantages ----------------------------------------------------------------------------

REWARDS = [1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0]


def test_group_kind():
    # group 1: mean 0.5, population std 0.5 -> +-0.5 / 0.5001 = +-0.99980; group 2 is flat -> 0
    a = 0.5 / 0.5001
    assert torch.allclose(group_advantages(t(REWARDS), 4), t([a, -a, -a, a, 0, 0, 0, 0]), atol=1e-6)
    # [1, 0, 0, 0]: mean 0.25, var (0.5625 + 3 * 0.0625) / 4 = 0.1875, std 0.43301
    # winner 0.75 / 0.43311 = 1.73165, others -0.25 / 0.43311 = -0.57722
    expected = t([1.73165, -0.57722, -0.57722, -0.57722])
    assert torch.allclose(group_advantages(t([1.0, 0, 0, 0]), 4), expected, atol=1e-5)


def test_mean_and_rloo_kinds():
    # mean: r - mean_g = +-0.5, flat group 0
    assert torch.allclose(
        group_advantages(t(REWARDS), 4, "mean"), t([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])
    )
    # rloo: 1 - mean(0, 0, 1) = 2/3; 0 - mean(1, 0, 1) = -2/3; flat group 0
    b = 2 / 3
    assert torch.allclose(group_advantages(t(REWARDS), 4, "rloo"), t([b, -b, -b, b, 0, 0, 0, 0]))
    # [1, 0, 0, 0]: winner 1 - 0 = 1; each loser 0 - 1/3
    assert torch.allclose(
        group_advantages(t([1.0, 0, 0, 0]), 4, "rloo"), t([1.0, -1 / 3, -1 / 3, -1 / 3])
    )


def test_batch_kind():
    # all 8 rewards: mean 1.25, squared deviations 2*0.0625 + 2*1.5625 + 4*0.5625 = 5.5,
    # population std sqrt(5.5 / 8) = 0.829156; +-0.5 / 0.829256 = +-0.602950; flat group stays 0
    c = 0.602950
    got = group_advantages(t(REWARDS), 4, "batch")
    assert torch.allclose(got, t([c, -c, -c, c, 0, 0, 0, 0]), atol=1e-6)


def test_integer_rewards_give_float_advantages():
    got = group_advantages(torch.tensor([1, 0]), 2, "mean")
    assert got.is_floating_point()
    assert got.tolist() == [0.5, -0.5]


def test_advantage_errors():
    with pytest.raises(ValueError, match="rloo"):  # the message lists ADVANTAGE_KINDS
        group_advantages(t(REWARDS), 4, "ppo")
    with pytest.raises(ValueError, match="at least 2"):
        group_advantages(t(REWARDS), 1)
    with pytest.raises(ValueError, match="whole number of groups"):
        group_advantages(t(REWARDS), 3)
    assert ADVANTAGE_KINDS == ("group", "mean", "rloo", "batch")


def test_varied_groups():
    # groups: [1,0,0,1] varied, [2,2,2,2] flat, [0.5, 0.5 + 1e-9] below tol, [0, 0.1] varied
    rewards = t([*REWARDS, 0.5, 0.5, 0.5, 0.5 + 1e-9, 0.0, 0.0, 0.0, 0.1])
    assert varied_groups(rewards, 4).tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match="whole number"):
        varied_groups(t([1.0, 2.0, 3.0]), 2)


# -- length bonus --------------------------------------------------------------------------


def test_length_bonus():
    groups = [
        # good 100..300: 100 -> 1, 300 -> 0, 200 -> (300 - 200) / 200 = 0.5; bad 50 -> 0
        ([100.0, 300.0, 200.0, 50.0], [1, 1, 1, 0], [1.0, 0.0, 0.5, 0.0]),
        # one good sample -> 0 everywhere
        ([10.0, 20.0, 30.0, 40.0], [0, 1, 0, 0], [0.0] * 4),
        # no good sample -> 0
        ([60.0, 80.0, 10.0, 90.0], [0, 0, 0, 0], [0.0] * 4),
        # the good samples share length 70 -> 0; the shortest (10) is bad and gets nothing
        ([70.0, 70.0, 10.0, 90.0], [1, 1, 0, 0], [0.0] * 4),
    ]
    lengths = t([x for group in groups for x in group[0]])
    good = torch.tensor([x for group in groups for x in group[1]], dtype=torch.bool)
    got = length_bonus(lengths, good, 4)
    assert got.is_floating_point()
    assert got.tolist() == [x for group in groups for x in group[2]]


def test_length_bonus_two_good_and_errors():
    # good lengths 40 and 10 in one group: 10 -> 1, 40 -> 0; bad 5 (shortest) -> 0
    got = length_bonus(t([40.0, 5.0, 10.0]), torch.tensor([True, False, True]), 3)
    assert got.tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="shape"):
        length_bonus(t([1.0, 2.0]), torch.tensor([True]), 2)


# -- cpgd_loss gradients -------------------------------------------------------------------


def test_clip_inactive_positive_advantage():
    # A = 2, logp = old: r = 1, drift weight 0 -> grad = -2 / 4 = -0.5 on every token
    g, loss, stats = grads([0.0] * 4, 2.0)
    assert torch.allclose(g, t([-0.5] * 4))
    # the value is -A * mean(logp) = -2 * (-1.25) = 2.5, not a surrogate near 0 (documented)
    assert loss.item() == pytest.approx(2.5)
    assert stats["clip_fraction"] == 0.0
    assert stats["ratio_mean"] == pytest.approx(1.0)
    assert stats["pg_loss"] == pytest.approx(2.5)
    assert stats["drift_loss"] == pytest.approx(0.0)


def test_clip_active_positive_advantage():
    # token 0 at old + 0.5 > old + ln 1.2: pg gradient 0, drift 0.01 * (e^0.5 - 1) / 4
    # = 0.01 * 0.648721 / 4 = 0.0016218; tokens 1-3 unclipped: -2 / 4 = -0.5
    g, _, stats = grads([0.5, 0, 0, 0], 2.0)
    assert torch.allclose(g, t([0.0016218, -0.5, -0.5, -0.5]), atol=1e-7)
    # 1 of 4 tokens clipped; ratio mean (e^0.5 + 3) / 4 = 1.162180; drift mean 0.648721 / 4
    assert stats["clip_fraction"] == pytest.approx(0.25)
    assert stats["ratio_mean"] == pytest.approx(1.162180, abs=1e-6)
    assert stats["drift"] == pytest.approx(0.162180, abs=1e-6)


def test_negative_advantage_below_lower_clip():
    # A = -1, logp = old - 0.5 < old + ln 0.8: pg gradient 0; drift 0.01 * (e^-0.5 - 1) / 4
    # = 0.01 * (-0.393469) / 4 = -0.00098367 (negative: the clamp is from above only)
    g, _, stats = grads([-0.5] * 4, -1.0)
    assert torch.allclose(g, t([-0.00098367] * 4), atol=1e-8)
    assert stats["clip_fraction"] == 1.0


def test_negative_advantage_above_ratio_is_not_clipped():
    # A = -1, logp = old + 0.5: the upper bound does not bind for A < 0, so the pg gradient is
    # -A / 4 = 0.25, plus drift 0.01 * 0.648721 / 4 = 0.0016218 -> 0.2516218
    g, _, stats = grads([0.5] * 4, -1.0)
    assert torch.allclose(g, t([0.2516218] * 4), atol=1e-7)
    assert stats["clip_fraction"] == 0.0


def test_zero_advantage_counts_as_non_positive():
    # A = 0: pg gradient 0 everywhere; logp = old - 0.5 is clipped (A <= 0 branch)
    g, _, stats = grads([-0.5] * 4, 0.0, CPGDSettings(alpha=0.0))
    assert torch.equal(g, torch.zeros(4, dtype=F64))
    assert stats["clip_fraction"] == 1.0


def test_drift_clamp():
    # logp = old + 2: r - 1 = e^2 - 1 = 6.389 > c = 3 -> drift grad 0.01 * 3 / 4 = 0.0075;
    # A = 2 is clipped there, so pg adds nothing
    g, _, stats = grads([2.0] * 4, 2.0)
    assert torch.allclose(g, t([0.0075] * 4))
    assert stats["drift"] == pytest.approx(3.0)


def test_mask_blocks_gradient_and_value():
    # mask [1, 1, 0, 0] (tokens 2-3 stand for retrieved search text): n = 2, A = 2, logp = old
    # -> grad -2 / 2 = -1 on tokens 0-1 and exactly 0 on tokens 2-3
    mask = [1.0, 1.0, 0.0, 0.0]
    g, loss, _ = grads([0.0] * 4, 2.0, mask=mask)
    assert g.tolist() == [-1.0, -1.0, 0.0, 0.0]
    # value -2 * mean(-1, -2) = 3, unchanged when the masked tokens move, even to -inf / nan
    for shift in ([0, 0, 5.0, -7.0], [0, 0, -math.inf, math.nan]):
        g2, loss2, _ = grads(shift, 2.0, mask=mask)
        assert loss2.item() == pytest.approx(3.0) == loss.item()
        assert g2.tolist() == [-1.0, -1.0, 0.0, 0.0]


def _batch():
    gen = torch.Generator().manual_seed(0)
    old = -torch.rand(4, 5, generator=gen, dtype=F64) * 3
    logp = old + (torch.rand(4, 5, generator=gen, dtype=F64) - 0.5)
    mask = t([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    return old, logp, t([1.5, -0.7, 0.3, -2.0]), mask


@pytest.mark.parametrize(("loss_norm", "total"), [("token", 11.0), ("sequence", 4.0)])
def test_micro_batches_match_one_batch(loss_norm, total):
    # 11 masked tokens / 4 sequences in the whole batch; two halves with that normaliser
    old, start, adv, mask = _batch()
    settings = CPGDSettings(loss_norm=loss_norm)
    whole = start.clone().requires_grad_(True)
    full, _ = cpgd_loss(whole, old, adv, mask, settings)
    full.backward()
    split = start.clone().requires_grad_(True)
    parts = [
        cpgd_loss(split[s], old[s], adv[s], mask[s], settings, normalizer=total)[0]
        for s in (slice(0, 2), slice(2, 4))
    ]
    sum(parts).backward()
    assert torch.allclose(whole.grad, split.grad)
    assert sum(parts).item() == pytest.approx(full.item())


def test_sequence_norm_by_hand():
    # logp = old, A = 1, alpha 0: seq 0 has 2 tokens -> -1 / 2 / 2 = -0.25 each,
    # seq 1 has 4 tokens -> -1 / 4 / 2 = -0.125 each; the pad tokens get 0
    old = t([OLD, OLD])
    logp = old.clone().requires_grad_(True)
    mask = t([[1, 1, 0, 0], [1, 1, 1, 1]])
    settings = CPGDSettings(alpha=0.0, loss_norm="sequence")
    cpgd_loss(logp, old, t([1.0, 1.0]), mask, settings)[0].backward()
    assert logp.grad.tolist() == [[-0.25, -0.25, 0, 0], [-0.125] * 4]


def test_sequence_norm_empty_sequence_contributes_zero():
    # seq 1 has no trained token and adds 0; seq 0: -1 * mean(-1, -2) = 1.5; over B = 2 -> 0.75
    old = t([OLD, OLD])
    mask = t([[1, 1, 0, 0], [0, 0, 0, 0]])
    settings = CPGDSettings(alpha=0.0, loss_norm="sequence")
    loss, _ = cpgd_loss(old.clone(), old, t([1.0, 5.0]), mask, settings)
    assert loss.item() == pytest.approx(0.75)


def test_reference_kl():
    # A = 0 and alpha = 0 isolate the KL term (kl_coef 0.1)
    settings = CPGDSettings(alpha=0.0, kl_coef=0.1)
    g, _, stats = grads([0.0] * 4, 0.0, settings, ref_shift=[0.0] * 4)
    assert torch.equal(g, torch.zeros(4, dtype=F64))  # ref == logp: k3 is flat there
    assert stats["kl"] == 0.0
    # ref = logp - 1 on token 1: grad 0.1 * (1 - e^-1) / 4 = 0.1 * 0.632121 / 4 = 0.0158030;
    # k3 = e^-1 + 1 - 1 = 0.367879, mean over 4 tokens 0.0919699
    g, _, stats = grads([0.0] * 4, 0.0, settings, ref_shift=[0, -1.0, 0, 0])
    assert torch.allclose(g, t([0, 0.0158030, 0, 0]), atol=1e-7)
    assert stats["kl"] == pytest.approx(0.0919699, abs=1e-7)


def test_kl_needs_reference():
    with pytest.raises(ValueError, match="ref_logp"):
        grads([0.0] * 4, 1.0, CPGDSettings(kl_coef=0.1))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("clip_eps", 0.0),
        ("clip_eps", 1.0),
        ("alpha", -0.1),
        ("drift_clip", 0.0),
        ("kl_coef", -1.0),
        ("loss_norm", "batch"),
    ],
)
def test_settings_check(field, value):
    CPGDSettings().check()
    settings = CPGDSettings(**{field: value})
    with pytest.raises(ValueError, match=field):
        settings.check()
    with pytest.raises(ValueError, match=field):  # cpgd_loss checks its settings too
        grads([0.0] * 4, 1.0, settings)


def test_shape_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="advantages"):
        cpgd_loss(x, x, torch.zeros(3), x, CPGDSettings())
    with pytest.raises(ValueError, match="mask"):
        cpgd_loss(x, x, torch.zeros(2), torch.zeros(2, 4), CPGDSettings())
    with pytest.raises(ValueError, match="normalizer"):
        cpgd_loss(x, x, torch.zeros(2), x, CPGDSettings(), normalizer=0.0)


# -- token_logprobs ------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs(temperature):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 7, generator=gen) * 4
    tokens = torch.randint(0, 7, (2, 3), generator=gen)
    expected = torch.log_softmax(logits / temperature, -1).gather(-1, tokens[..., None])[..., 0]
    assert torch.allclose(token_logprobs(logits, tokens, temperature), expected, atol=1e-5)


def test_token_logprobs_hand_case_and_bf16():
    # logits [0, ln 3] -> softmax [1/4, 3/4]; token 1 -> ln 0.75 = -0.287682
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    got = token_logprobs(logits, torch.tensor([[1]]))
    assert got.item() == pytest.approx(-0.287682, abs=1e-6)
    # bf16 logits come back as float32
    assert token_logprobs(logits.bfloat16(), torch.tensor([[1]])).dtype == torch.float32
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(logits, torch.tensor([[1]]), 0.0)
