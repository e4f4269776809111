"""Mutual-information estimates between a token's hidden state and a reference representation,
and the peak rule that finds the tokens where it surges (issue 22, the report's Figure 3).

What is estimated. At generated token ``t`` the model's hidden state ``h_t`` (one layer, ``d``
numbers) is compared with ``r``, the representation of a reference response at the same layer
(its hidden states averaged over its tokens). Both are single vectors, so, as in "Thinking
tokens are information peaks in LLM reasoning" (Qian et al., 2025), the ``d`` coordinates are
taken as ``d`` paired samples ``(h_t[i], r[i])`` of two scalar variables, and the dependence
between them is what is measured. Before that every coordinate is standardised with the mean
and spread of the whole sequence's states and the reference (``standardise``): without it the
few "massive activation" coordinates of a transformer dominate every estimate and every token
looks alike.

Two estimators:

- ``gaussian``: ``-1/2 log(1 - rho^2)`` nats, ``rho`` the Pearson correlation of the pairs. It
  is the mutual information exactly when the pairs are jointly Gaussian, and a lower bound on it
  for any pair with that correlation (the Gaussian has the least MI for a given covariance), so
  it misses dependence that is not linear. Its bias from ``d`` samples is about ``1/(2d)`` nats
  upward at zero dependence (0.0009 nats for d = 576).
- ``hsic``: the Hilbert-Schmidt independence criterion with Gaussian kernels whose widths are
  the median distances (the biased V-statistic ``tr(KHLH)/d^2``), the estimator Qian et al.
  use. It is zero exactly when the variables are independent (for characteristic kernels) and
  sees any dependence, but it is a dependence score, not nats: only its ordering across tokens
  is read.

Both treat coordinates as exchangeable samples, which they are not (coordinates have their own
scales and correlations); the standardisation removes the scales, not the correlations. So the
numbers compare tokens within a sequence and sequences of one model; across models read the
peak rate and which tokens peak, not the values.

Peaks (``peaks``): a token is a peak when the robust z-score of ``sqrt(m_t)`` over its
sequence, ``(x_t - median) / (1.4826 * MAD)``, is at least ``z`` (default 3.5) and it is a
local maximum. Under independence about 0.6% of tokens pass by chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["ESTIMATORS", "gaussian_mi", "hsic", "mi_along", "peaks", "robust_z", "standardise"]

Estimator = Literal["gaussian", "hsic"]
ESTIMATORS: tuple[Estimator, ...] = ("gaussian", "hsic")


def standardise(states: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``states`` (T, d) and ``reference`` (d,) with every coordinate centred and scaled by
    the mean and standard deviation of that coordinate over the T states and the reference."""
    pool = np.vstack([states, reference[None, :]]).astype(np.float64)
    mean = pool.mean(axis=0)
    spread = pool.std(axis=0)
    spread[spread == 0] = 1.0
    return (states - mean) / spread, (reference - mean) / spread


def gaussian_mi(x: np.ndarray, y: np.ndarray) -> float:
    """``-1/2 log(1 - rho^2)`` nats for the coordinate pairs of ``x`` and ``y`` (1-D)."""
    xc, yc = x - x.mean(), y - y.mean()
    denominator = float(np.sqrt((xc @ xc) * (yc @ yc)))
    if denominator == 0.0:
        return 0.0
    rho = float(xc @ yc) / denominator
    return float(-0.5 * np.log(max(1.0 - rho * rho, 1e-12)))


def _gram(v: np.ndarray) -> np.ndarray:
    """The centred Gaussian-kernel Gram matrix of 1-D samples (width: the median distance)."""
    distances = (v[:, None] - v[None, :]) ** 2
    positive = distances[distances > 0]
    width2 = float(np.median(positive)) if positive.size else 1.0
    k = np.exp(-distances / width2)  # exp(-|a-b|^2 / (2 sigma^2)) with sigma^2 = median / 2
    return k - k.mean(axis=0, keepdims=True) - k.mean(axis=1, keepdims=True) + k.mean()


def hsic(x: np.ndarray, y: np.ndarray) -> float:
    """The biased HSIC estimate of the coordinate pairs of ``x`` and ``y`` (1-D)."""
    n = x.shape[0]
    return float((_gram(x) * _gram(y)).sum() / (n * n))


def mi_along(
    states: np.ndarray, reference: np.ndarray, estimator: Estimator = "gaussian"
) -> np.ndarray:
    """The estimate for every row of ``states`` (T, d) against ``reference`` (d,)."""
    if states.ndim != 2 or reference.shape != (states.shape[1],):
        raise ValueError(f"states {states.shape} and reference {reference.shape} do not pair")
    xs, r = standardise(states, reference)
    if estimator == "gaussian":
        return np.array([gaussian_mi(x, r) for x in xs])
    if estimator == "hsic":
        ref_gram = _gram(r)
        n = r.shape[0]
        return np.array([float((_gram(x) * ref_gram).sum() / (n * n)) for x in xs])
    raise ValueError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")


def robust_z(values: Sequence[float]) -> np.ndarray:
    """``(v - median) / (1.4826 * MAD)``; zeros when the MAD is 0 (a flat sequence)."""
    v = np.asarray(values, dtype=np.float64)
    median = float(np.median(v))
    mad = 1.4826 * float(np.median(np.abs(v - median)))
    return np.zeros_like(v) if mad == 0 else (v - median) / mad


def peaks(values: Sequence[float], z: float = 3.5) -> list[int]:
    """Positions whose robust z-score is at least ``z`` and that are local maxima. The
    scores are taken of the square roots: under independence both estimates grow like a
    squared correlation (chi-square-like, with a long right tail that a z-score of the raw
    values would flag ~13% of the time at z = 3), and their roots are close to half-normal."""
    v = np.sqrt(np.clip(np.asarray(values, dtype=np.float64), 0.0, None))
    scores = robust_z(v)
    out = []
    for t in range(len(v)):
        left = v[t - 1] if t > 0 else -np.inf
        right = v[t + 1] if t + 1 < len(v) else -np.inf
        if scores[t] >= z and v[t] >= left and v[t] >= right:
            out.append(t)
    return out
