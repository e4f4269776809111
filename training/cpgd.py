"""CPGD (Clipped Policy Gradient with policy Drift): policy loss and advantages of the RL stages.

Each prompt is sampled ``G`` times (a *group*); every sample ``i`` gets a scalar reward ``R_i``
and one advantage ``A_i`` shared by all of its generated tokens.  ``group_advantages`` offers

* ``group``: ``(R - mean_g) / (std_g + eps)`` with the population std of the group (GRPO-style,
  CPGD's default);
* ``mean``:  ``R - mean_g`` (Dr.GRPO-style, no std scaling);
* ``rloo``:  ``R - mean of the other G-1 samples`` ``= G/(G-1) * (R - mean_g)``;
* ``batch``: ``(R - mean_g) / (std of the whole batch + eps)``.

A group whose rewards are all equal has zero advantage everywhere and so no learning signal;
``varied_groups`` finds the others.  ``length_bonus`` is the Safe-and-Efficient stage's
conditional brevity term: within a group and among the good (correct and safe) samples only,
``(L_max - L) / (L_max - L_min)``; bad samples never earn it.

The loss.  With ``r = exp(logp - old_logp)`` the per-token ratio to the sampling policy, CPGD
clips the *log*-ratio rather than the ratio's product with the advantage::

    clip_logp = min(logp, old_logp + ln(1 + eps))   if A > 0
              = max(logp, old_logp + ln(1 - eps))   if A <= 0
    pg_t      = -A * clip_logp
    drift_t   = alpha * clamp(sg(r) - 1, max=c) * logp
    kl_t      = beta * (exp(ref - logp) - (ref - logp) - 1)        (k3 estimator, beta > 0 only)

``sg`` is stop-gradient.  The gradient of ``pg_t`` is ``-A * grad logp`` until the log-ratio
has moved past the clip in the direction the advantage favours, and exactly zero after it.  The
drift term's gradient is ``alpha * clamp(r - 1, max=c) * grad logp``: it pulls tokens whose
probability rose (``r > 1``) back down and those whose probability fell back up, i.e. towards
the sampling policy; the clamp is from above only, so a fallen ratio is never clamped.  The k3
term's gradient is ``beta * (1 - exp(ref - logp)) * grad logp``, zero where ``logp == ref``.

Only the gradient is meaningful: with ``logp == old_logp`` the value of ``pg_t`` is
``-A * logp``, not a surrogate objective near 0.  Compare runs by their stats, not by the loss.

Reduction.  ``token``: ``sum_{i,t} mask * l_t / N`` with ``N`` the number of trained tokens;
``sequence``: ``sum_i (masked mean over t of l_t) / N`` with ``N`` the number of sequences.  The
trainer may pass ``normalizer`` = the count over the *whole* accumulated batch, so the summed
gradients of micro-batches equal those of one large batch exactly.
"""

from __future__ import annotations

import math

import torch

from .rl_config import CPGDSettings

__all__ = [
    "ADVANTAGE_KINDS",
    "CPGDSettings",
    "cpgd_loss",
    "group_advantages",
    "length_bonus",
    "token_logprobs",
    "varied_groups",
]

ADVANTAGE_KINDS: tuple[str, ...] = ("group", "mean", "rloo", "batch")


def _grouped(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """``values`` [N] as [N / group_size, group_size]; ValueError on a bad shape."""
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2, got {group_size}")
    if values.dim() != 1:
        raise ValueError(f"expected a 1-D tensor, got shape {tuple(values.shape)}")
    if values.shape[0] % group_size:
        raise ValueError(
            f"{values.shape[0]} samples are not a whole number of groups of {group_size}"
        )
    return values.reshape(-1, group_size)


def group_advantages(
    rewards: torch.Tensor, group_size: int, kind: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """One advantage per sample from rewards [N] laid out as contiguous groups of ``group_size``.

    ``kind`` is one of ``ADVANTAGE_KINDS`` (see the module docstring); the stds are population
    stds (``unbiased=False``).  Returns a float tensor [N]."""
    if kind not in ADVANTAGE_KINDS:
        raise ValueError(f"unknown advantage kind {kind!r}; expected one of {ADVANTAGE_KINDS}")
    grouped = _grouped(rewards, group_size)
    if not grouped.is_floating_point():
        grouped = grouped.float()
    if grouped.numel() == 0:
        return grouped.reshape(-1)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if kind == "group":
        scaled = centred / (grouped.std(dim=1, unbiased=False, keepdim=True) + eps)
    elif kind == "mean":
        scaled = centred
    elif kind == "rloo":
        scaled = centred * (group_size / (group_size - 1))
    else:
        scaled = centred / (grouped.std(unbiased=False) + eps)
    return scaled.reshape(-1)


def varied_groups(rewards: torch.Tensor, group_size: int, tol: float = 1e-6) -> torch.Tensor:
    """bool [n_groups]: True where a group's rewards are not all equal (max - min > tol)."""
    grouped = _grouped(rewards, group_size)
    if grouped.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=rewards.device)
    spread = grouped.amax(dim=1) - grouped.amin(dim=1)
    return spread > tol


def length_bonus(lengths: torch.Tensor, good: torch.Tensor, group_size: int) -> torch.Tensor:
    """Conditional brevity term, float [N] in [0, 1]: within each group, among the good samples
    only, ``(L_max_good - L) / (L_max_good - L_min_good)``.  Bad samples get 0; so does every
    sample of a group with fewer than 2 good samples or whose good samples share one length."""
    if lengths.shape != good.shape:
        raise ValueError(
            f"lengths {tuple(lengths.shape)} and good {tuple(good.shape)} differ in shape"
        )
    length = _grouped(lengths, group_size).float()
    is_good = _grouped(good, group_size).bool()
    longest = torch.where(is_good, length, -math.inf).amax(dim=1, keepdim=True)
    shortest = torch.where(is_good, length, math.inf).amin(dim=1, keepdim=True)
    span = longest - shortest
    usable = (is_good.sum(dim=1, keepdim=True) >= 2) & (span > 0)
    safe_span = torch.where(usable, span, torch.ones_like(span))
    safe_longest = torch.where(usable, longest, torch.zeros_like(longest))
    bonus = (safe_longest - length) / safe_span
    return torch.where(is_good & usable, bonus, torch.zeros_like(bonus)).reshape(-1)


def _reduce(
    per_token: torch.Tensor, weight: torch.Tensor, loss_norm: str, normalizer: float | None
) -> torch.Tensor:
    """Reduce already-masked per-token values [B, T] as ``loss_norm`` says."""
    if loss_norm == "token":
        total = per_token.sum()
        default = weight.sum().clamp(min=1.0)
    else:
        total = (per_token.sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)).sum()
        default = float(max(per_token.shape[0], 1))
    return total / (default if normalizer is None else normalizer)


def cpgd_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    settings: CPGDSettings,
    *,
    ref_logp: torch.Tensor | None = None,
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The CPGD loss of one (micro-)batch and its stats (module docstring for the maths).

    ``logp``, ``old_logp``, ``mask`` and ``ref_logp`` are [B, T]; ``advantages`` is [B].  Tokens
    with mask 0 (padding, prompt, retrieved text) get exactly zero gradient and do not affect
    the value, even when their log-probs are not finite.  ``normalizer`` overrides the token (or
    sequence) count divided by, so micro-batches can share the whole batch's count."""
    settings.check()
    if old_logp.shape != logp.shape or mask.shape != logp.shape or logp.dim() != 2:
        raise ValueError(
            f"logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)} and mask "
            f"{tuple(mask.shape)} must share one [B, T] shape"
        )
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages {tuple(advantages.shape)} must be [B] = [{logp.shape[0]}]")
    if settings.kl_coef > 0.0:
        if ref_logp is None:
            raise ValueError("kl_coef > 0 needs ref_logp")
        if ref_logp.shape != logp.shape:
            raise ValueError(f"ref_logp {tuple(ref_logp.shape)} must be {tuple(logp.shape)}")
    if normalizer is not None and not normalizer > 0:
        raise ValueError(f"normalizer must be > 0, got {normalizer}")

    weight = mask.to(logp.dtype)
    trained = weight != 0
    # Zero out untrained positions first: `where` routes them an exactly-zero gradient and keeps
    # non-finite padding values out of every later product.
    zero = torch.zeros_like(logp)
    cur = torch.where(trained, logp, zero)
    old = torch.where(trained, old_logp.detach().to(logp.dtype), zero)
    adv = advantages.detach().to(logp.dtype).unsqueeze(1)

    upper = old + math.log1p(settings.clip_eps)
    lower = old + math.log1p(-settings.clip_eps)
    positive = adv > 0
    clipped = torch.where(positive, cur > upper, cur < lower)
    clip_logp = torch.where(clipped, torch.where(positive, upper, lower), cur)
    pg = -adv * clip_logp * weight

    ratio = torch.exp(cur.detach() - old)
    drift_weight = (ratio - 1.0).clamp(max=settings.drift_clip)
    drift = settings.alpha * drift_weight * cur * weight

    per_token = pg + drift
    k3 = zero
    if settings.kl_coef > 0.0:
        assert ref_logp is not None
        ref = torch.where(trained, ref_logp.detach().to(logp.dtype), zero)
        log_ratio = ref - cur
        k3 = torch.exp(log_ratio) - log_ratio - 1.0
        per_token = per_token + settings.kl_coef * k3 * weight

    loss = _reduce(per_token, weight, settings.loss_norm, normalizer)

    with torch.no_grad():
        count = max(int(trained.sum().item()), 1)

        def masked_mean(values: torch.Tensor) -> float:
            return float(values[trained].sum().item()) / count

        stats = {
            "clip_fraction": masked_mean(clipped.to(logp.dtype)),
            "ratio_mean": masked_mean(ratio),
            "drift": masked_mean(drift_weight),
            "pg_loss": float(_reduce(pg, weight, settings.loss_norm, normalizer).item()),
            "drift_loss": float(_reduce(drift, weight, settings.loss_norm, normalizer).item()),
            "kl": masked_mean(k3.detach()) if settings.kl_coef > 0.0 else 0.0,
        }
    return loss, stats


def token_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """``log softmax(logits / temperature)`` at ``tokens``: logits [B, T, V], tokens [B, T] ->
    [B, T], in at least float32.

    Computed as ``gathered logit - logsumexp`` one sequence at a time, so no full log-softmax
    copy is built and at most one sequence's logits are up-cast (bf16 -> float32) at once."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if logits.dim() != 3 or tokens.shape != logits.shape[:2]:
        raise ValueError(
            f"logits {tuple(logits.shape)} must be [B, T, V] and tokens "
            f"{tuple(tokens.shape)} [B, T]"
        )
    dtype = torch.promote_types(logits.dtype, torch.float32)
    if logits.shape[0] == 0:
        return torch.zeros(tokens.shape, dtype=dtype, device=logits.device)
    rows = []
    for row_logits, row_tokens in zip(logits, tokens, strict=True):
        row = row_logits.to(dtype)
        if temperature != 1.0:
            row = row / temperature
        picked = row.gather(-1, row_tokens.long().unsqueeze(-1)).squeeze(-1)
        rows.append(picked - torch.logsumexp(row, dim=-1))
    return torch.stack(rows)
