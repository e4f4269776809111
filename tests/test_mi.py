"""The MI estimators and the peak rule of ``safework-train analyze mi`` (``training/mi.py``),
against cases whose answer is known: correlated Gaussians (MI = -1/2 log(1 - rho^2) nats),
independent and non-linearly dependent variables, and a sequence with one planted token."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safework.training.mi import gaussian_mi, hsic, mi_along, peaks, robust_z


def correlated(rho: float, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    return x, rho * x + math.sqrt(1 - rho * rho) * rng.standard_normal(n)


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.6, 0.9])
def test_gaussian_estimate_matches_the_known_mi(rho: float) -> None:
    x, y = correlated(rho, 20_000)
    truth = -0.5 * math.log(1 - rho * rho)
    assert gaussian_mi(x, y) == pytest.approx(truth, abs=0.01)


def test_hsic_is_zero_for_independence_and_grows_with_dependence() -> None:
    scores = [hsic(*correlated(rho, 400, seed=1)) for rho in (0.0, 0.3, 0.6, 0.9)]
    assert scores[0] < 0.01
    assert scores == sorted(scores)
    assert scores[-1] > 10 * scores[0]


def test_hsic_sees_dependence_the_gaussian_estimate_misses() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal(400)
    y = x * x + 0.1 * rng.standard_normal(400)  # uncorrelated, yet a function of x
    z = rng.standard_normal(400)
    assert gaussian_mi(x, y) < 0.02
    assert hsic(x, y) > 5 * hsic(x, z)


@pytest.mark.parametrize("estimator", ["gaussian", "hsic"])
def test_a_planted_token_is_the_only_peak(estimator: str) -> None:
    rng = np.random.default_rng(3)
    d, planted = 256, 17
    reference = rng.standard_normal(d)
    states = rng.standard_normal((50, d))
    states[planted] = 0.8 * reference + 0.6 * rng.standard_normal(d)
    values = mi_along(states, reference, estimator)  # type: ignore[arg-type]
    assert int(np.argmax(values)) == planted
    assert peaks(values) == [planted]


def test_massive_coordinates_do_not_decide_the_estimate() -> None:
    """One coordinate a thousand times larger than the rest, shared by every token (as
    transformers' massive activations are), must not make every token look dependent."""
    rng = np.random.default_rng(4)
    states = rng.standard_normal((30, 128))
    reference = rng.standard_normal(128)
    states[:, 5] += 1000.0
    reference[5] += 1000.0
    assert mi_along(states, reference).max() < 0.05


def test_peaks_need_a_robust_outlier_that_is_a_local_maximum() -> None:
    assert peaks([1.0] * 20) == []  # flat: no spread, no peak
    values = [1.0, 1.1, 0.9, 1.0, 5.0, 4.9, 1.0, 1.05, 0.95, 1.0]
    assert peaks(values) == [4]  # 4.9 is high too, but its neighbour is higher
    assert robust_z(values)[4] > 3
    assert peaks(values, z=1000) == []


def test_states_and_reference_must_pair() -> None:
    with pytest.raises(ValueError, match="do not pair"):
        mi_along(np.zeros((3, 4)), np.zeros(5))
    with pytest.raises(ValueError, match="unknown estimator"):
        mi_along(np.zeros((3, 4)), np.zeros(4), "knn")  # type: ignore[arg-type]


@pytest.mark.parametrize("estimator", ["gaussian", "hsic"])
def test_independent_tokens_rarely_peak(estimator: str) -> None:
    """The rule's chance rate, documented as about 0.6%: 20 sequences of 100 tokens."""
    found = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        states, reference = rng.standard_normal((100, 256)), rng.standard_normal(256)
        found += len(peaks(mi_along(states, reference, estimator)))  # type: ignore[arg-type]
    assert found / 2000 < 0.015
