"""Tests for ``safework.search.calibration``: ECE, the reliability table, Platt and isotonic maps,
AUROC.

ECE values are worked out by hand; the fitted maps are checked on synthetic data drawn from a
seeded ``numpy`` generator (a known logistic relation for Platt, a known monotone one for
isotonic). Saving and loading calibrations is in ``test_calibration_files.py``.

Run: ``pytest tests/test_calibration.py``.
"""

from __future__ import annotations

import math
import warnings
from itertools import pairwise

import numpy as np
import pytest

from safework.search.calibration import (
    CalibrationMap,
    answer_probability,
    auroc,
    ece_floor,
    expected_calibration_error,
    fit_isotonic,
    fit_platt,
    reliability_table,
)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def logistic_data(a: float, b: float, n: int, seed: int) -> tuple[list[float], list[bool]]:
    """Confidences whose true accuracy is ``sigmoid(a * logit(conf) + b)``."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.02, 0.98, n)
    hit = rng.uniform(size=n) < _sigmoid(a * _logit(conf) + b)
    return conf.tolist(), hit.tolist()


# ------------------------------------------------------------------ expected_calibration_error


def test_ece_perfectly_calibrated_bins() -> None:
    # 0.2 right once in five, 0.8 right four times in five: every bin's accuracy is its mean.
    conf = [0.2] * 5 + [0.8] * 5
    hit = [1, 0, 0, 0, 0, 1, 1, 1, 1, 0]
    assert expected_calibration_error(conf, hit) == pytest.approx(0.0, abs=1e-12)


def test_ece_overconfident() -> None:
    conf = [0.9] * 10
    hit = [True, False] * 5
    assert expected_calibration_error(conf, hit) == pytest.approx(0.4)


def test_ece_two_bins_by_hand() -> None:
    # Bin (0.2, 0.3]: 0.22 and 0.28, mean 0.25, one of two right (0.5): gap 0.25, weight 2/5.
    # Bin (0.8, 0.9]: 0.85, 0.85, 0.88, mean 0.86, all right (1.0): gap 0.14, weight 3/5.
    # ECE = 0.4 * 0.25 + 0.6 * 0.14 = 0.1 + 0.084 = 0.184.
    conf = [0.22, 0.28, 0.85, 0.85, 0.88]
    hit = [1, 0, 1, 1, 1]
    assert expected_calibration_error(conf, hit) == pytest.approx(0.184)


def test_ece_is_order_independent() -> None:
    conf = [0.22, 0.28, 0.85, 0.85, 0.88]
    hit = [1, 0, 1, 1, 1]
    assert expected_calibration_error(conf[::-1], hit[::-1]) == pytest.approx(0.184)


def test_ece_bin_edge_upper_bound_is_inclusive() -> None:
    # (0, 0.1] holds both 0.05 and 0.1: mean 0.075, accuracy 0.5, ECE 0.425.
    # (Were 0.1 in the next bin, ECE would be 0.5 * 0.95 + 0.5 * 0.1 = 0.525.)
    assert expected_calibration_error([0.05, 0.1], [1, 0]) == pytest.approx(0.425)


def test_ece_zero_is_in_the_first_bin() -> None:
    # 0 and 0.1 share bin 0: mean 0.05, accuracy 0.5.
    assert expected_calibration_error([0.0, 0.1], [1, 0]) == pytest.approx(0.45)


def test_ece_bins_parameter() -> None:
    # Two bins: 0.5 in (0, 0.5], 0.6 in (0.5, 1]; each alone.
    conf, hit = [0.5, 0.6], [1, 0]
    assert expected_calibration_error(conf, hit, bins=2) == pytest.approx(0.5 * 0.5 + 0.5 * 0.6)
    # One bin: mean confidence 0.55, accuracy 0.5.
    assert expected_calibration_error(conf, hit, bins=1) == pytest.approx(0.05)


def test_ece_accepts_booleans_and_floats() -> None:
    conf = [0.9, 0.9]
    assert expected_calibration_error(conf, [True, False]) == pytest.approx(0.4)
    assert expected_calibration_error(conf, [1.0, 0.0]) == pytest.approx(0.4)
    assert expected_calibration_error(np.array(conf), np.array([1, 0])) == pytest.approx(0.4)


def test_ece_empty_is_zero() -> None:
    assert expected_calibration_error([], []) == 0.0


def test_ece_returns_a_float() -> None:
    assert type(expected_calibration_error([0.5], [1])) is float


@pytest.mark.parametrize(
    ("conf", "hit"),
    [
        ([0.5, 0.5], [1]),
        ([0.5], [1, 0]),
        ([[0.5, 0.5]], [[1, 0]]),
        ([1.1], [1]),
        ([-0.1], [0]),
        ([0.5, 2.0], [1, 1]),
    ],
)
def test_ece_validation(conf: list, hit: list) -> None:
    with pytest.raises(ValueError, match=r"same length|must lie"):
        expected_calibration_error(conf, hit)
    with pytest.raises(ValueError, match=r"same length|must lie"):
        reliability_table(conf, hit)


def test_ece_bounds_are_accepted() -> None:
    assert expected_calibration_error([0.0, 1.0], [0, 1]) == pytest.approx(0.0)


# ------------------------------------------------------------------ reliability_table


def test_reliability_table_rows() -> None:
    rows = reliability_table([0.22, 0.28, 0.85, 0.85, 0.88], [1, 0, 1, 1, 1])
    assert len(rows) == 2
    low, high = rows
    assert low == pytest.approx(
        {"low": 0.2, "high": 0.3, "count": 2, "confidence": 0.25, "accuracy": 0.5}
    )
    assert high == pytest.approx(
        {"low": 0.8, "high": 0.9, "count": 3, "confidence": 0.86, "accuracy": 1.0}
    )
    assert isinstance(low["count"], int)


def test_reliability_table_edges() -> None:
    rows = reliability_table([0.0, 0.1, 0.95, 1.0], [0, 1, 1, 1])
    assert [(r["low"], r["high"], r["count"]) for r in rows] == [
        (0.0, pytest.approx(0.1), 2),
        (pytest.approx(0.9), 1.0, 2),
    ]


@pytest.mark.parametrize("value", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
def test_reliability_table_stated_values_land_in_their_own_bin(value: float) -> None:
    # The stated confidences of the 0-10 scale are the bin edges: each is the top of its bin.
    (row,) = reliability_table([value], [1])
    assert row["high"] == pytest.approx(value)


def test_reliability_table_empty() -> None:
    assert reliability_table([], []) == []


def test_reliability_table_agrees_with_ece() -> None:
    conf, hit = logistic_data(0.5, 0.0, 500, seed=3)
    rows = reliability_table(conf, hit)
    assert sum(r["count"] for r in rows) == len(conf)
    ece = sum(r["count"] / len(conf) * abs(r["accuracy"] - r["confidence"]) for r in rows)
    assert ece == pytest.approx(expected_calibration_error(conf, hit))


# ------------------------------------------------------------------ ece_floor


def test_ece_floor_of_one_coin_flip_is_one_half() -> None:
    # one answer at 0.5 is right or wrong: either way |accuracy - 0.5| = 0.5
    assert ece_floor([0.5]) == (0.5, 0.5)


def test_ece_floor_of_certain_answers_is_zero() -> None:
    assert ece_floor([0.0, 1.0, 1.0]) == (0.0, 0.0)
    assert ece_floor([]) == (0.0, 0.0)


def test_ece_floor_matches_ece_of_simulated_calibrated_answers() -> None:
    rng = np.random.default_rng(11)
    conf = list(rng.uniform(0.3, 0.95, 40))
    draws = [
        expected_calibration_error(conf, list(rng.random(40) < np.array(conf))) for _ in range(3000)
    ]
    mean, p95 = ece_floor(conf)
    assert mean == pytest.approx(float(np.mean(draws)), abs=0.005)
    assert p95 == pytest.approx(float(np.quantile(draws, 0.95)), abs=0.015)


def test_ece_floor_shrinks_with_the_sample() -> None:
    small, _ = ece_floor([0.55] * 40)
    large, _ = ece_floor([0.55] * 4000)
    assert 0.04 < small < 0.09  # ~ sqrt(2/pi) * sqrt(0.55 * 0.45 / 40) = 0.063
    assert large < 0.01


def test_miscalibration_clears_the_floor() -> None:
    conf, hit = [0.9] * 100, [i % 2 == 0 for i in range(100)]
    _, p95 = ece_floor(conf)
    assert expected_calibration_error(conf, hit) == pytest.approx(0.4)
    assert p95 < 0.15


# ------------------------------------------------------------------ fit_platt


def test_platt_recovers_a_known_logistic_relation() -> None:
    conf, hit = logistic_data(0.5, -0.7, 20_000, seed=0)
    a, b = fit_platt(conf, hit)
    assert a == pytest.approx(0.5, abs=0.06)
    assert b == pytest.approx(-0.7, abs=0.06)
    assert isinstance(a, float)
    assert isinstance(b, float)


def test_platt_on_calibrated_data_is_near_identity() -> None:
    conf, hit = logistic_data(1.0, 0.0, 20_000, seed=1)
    a, b = fit_platt(conf, hit)
    assert a == pytest.approx(1.0, abs=0.06)
    assert b == pytest.approx(0.0, abs=0.06)


def test_platt_lowers_ece_on_miscalibrated_data() -> None:
    conf, hit = logistic_data(0.4, -0.5, 5_000, seed=2)
    fitted = CalibrationMap.fit(conf, hit, "platt")
    assert fitted.ece_before is not None
    assert fitted.ece_after is not None
    assert fitted.ece_before > 0.1
    assert fitted.ece_after < 0.03
    assert fitted.ece_after < fitted.ece_before / 4


def test_platt_separable_data_stays_finite() -> None:
    # Every low confidence wrong, every high one right: the tiny ridge keeps a and b finite.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = fit_platt([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert math.isfinite(a)
    assert math.isfinite(b)
    assert a > 1  # sharper than the raw confidence


def test_platt_constant_confidence_learns_the_base_rate() -> None:
    # logit(0.5) = 0, so only b matters: sigmoid(b) = 3/4 (the small penalty shrinks b a
    # little towards 0); a stays at the identity's 1.
    a, b = fit_platt([0.5] * 8, [1, 1, 1, 0] * 2)
    assert _sigmoid(np.array(b)) == pytest.approx(0.75, abs=0.01)
    assert a == pytest.approx(1.0)


def test_platt_always_right_stays_finite() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = fit_platt([0.9] * 10, [1] * 10)
    assert math.isfinite(a)
    assert math.isfinite(b)
    assert CalibrationMap("platt", {"a": a, "b": b}).apply(0.9) > 0.9


def test_platt_uninformative_confidence_flattens_the_map() -> None:
    # Each confidence is right half the time: the best map is the constant 0.5 (a = b = 0).
    # An undamped Newton iteration overshoots here and runs a off to thousands.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = fit_platt([0.1, 0.9, 0.1, 0.9], [1, 0, 0, 1])
    assert abs(a) < 0.1
    assert abs(b) < 0.1


@pytest.mark.parametrize("seed", range(5))
def test_platt_on_noise_flattens_the_map(seed: int) -> None:
    # Outcomes independent of the confidence: the fit must not blow up (finite, no overflow)
    # and must flatten the map rather than sharpen it.
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0, 1, 40).tolist()
    hit = rng.integers(0, 2, 40).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted = CalibrationMap.fit(conf, hit, "platt")
    assert abs(fitted.params["a"]) < 1
    assert math.isfinite(fitted.params["b"])


# ------------------------------------------------------------------ fit_isotonic


def test_isotonic_hand_example() -> None:
    # Sorted by confidence, the outcomes are 1, 0, 0, 1, 1. Pool-adjacent-violators:
    #   [1] [0]        -> 1 > 0 violates: pool -> [0.5 @ x 0.15]
    #   [0.5] [0]      -> violates: pool -> [1/3 @ x 0.2] (sum 1 over 3 points)
    #   [1/3] [1] [1]  -> no violation
    # The fit: 1/3 on 0.1-0.3, 1 on 0.4-0.5.
    xs, ys = fit_isotonic([0.3, 0.5, 0.1, 0.4, 0.2], [0, 1, 1, 1, 0])
    assert sorted({round(y, 12) for y in ys}) == pytest.approx([1 / 3, 1.0])
    fitted = CalibrationMap("isotonic", {"x": xs, "y": ys})
    for x in (0.1, 0.2):
        assert fitted.apply(x) == pytest.approx(1 / 3)
    for x in (0.4, 0.5):
        assert fitted.apply(x) == pytest.approx(1.0)


def test_isotonic_map_reproduces_pav_on_its_training_points() -> None:
    xs, ys = fit_isotonic([0.3, 0.5, 0.1, 0.4, 0.2], [0, 1, 1, 1, 0])
    fitted = CalibrationMap("isotonic", {"x": xs, "y": ys})
    assert fitted.apply_many([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(
        [1 / 3, 1 / 3, 1 / 3, 1.0, 1.0]
    )


def test_isotonic_already_monotone_is_unchanged() -> None:
    xs, ys = fit_isotonic([0.1, 0.5, 0.9], [0, 0.5, 1])
    assert xs == pytest.approx([0.1, 0.5, 0.9])
    assert ys == pytest.approx([0.0, 0.5, 1.0])


def test_isotonic_decreasing_data_pools_into_one_block() -> None:
    xs, ys = fit_isotonic([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 0])
    assert ys == pytest.approx([0.5] * len(ys))
    fitted = CalibrationMap("isotonic", {"x": xs, "y": ys})
    assert fitted.apply_many([0.0, 0.1, 0.25, 0.4, 1.0]) == pytest.approx([0.5] * 5)


def test_isotonic_is_monotone() -> None:
    rng = np.random.default_rng(4)
    conf = rng.uniform(0, 1, 300)
    hit = rng.uniform(size=300) < conf**2
    xs, ys = fit_isotonic(conf.tolist(), hit.tolist())
    assert all(y0 <= y1 for y0, y1 in pairwise(ys))
    assert all(x0 <= x1 for x0, x1 in pairwise(xs))
    assert all(0.0 <= y <= 1.0 for y in ys)
    fitted = CalibrationMap("isotonic", {"x": xs, "y": ys})
    grid = fitted.apply_many(np.linspace(0, 1, 101).tolist())
    assert all(g0 <= g1 + 1e-12 for g0, g1 in pairwise(grid))


def test_isotonic_lowers_ece_on_its_training_data() -> None:
    rng = np.random.default_rng(5)
    conf = rng.uniform(0, 1, 1000)
    hit = rng.uniform(size=1000) < conf**2
    fitted = CalibrationMap.fit(conf.tolist(), hit.tolist(), "isotonic")
    assert fitted.ece_before > 0.1  # type: ignore[operator]
    assert fitted.ece_after < 0.03  # type: ignore[operator]


def test_isotonic_ece_is_zero_on_its_training_data() -> None:
    rng = np.random.default_rng(6)
    conf = rng.uniform(0, 1, 200)
    hit = rng.uniform(size=200) < conf**2
    fitted = CalibrationMap.fit(conf.tolist(), hit.tolist(), "isotonic")
    assert fitted.ece_after == pytest.approx(0.0, abs=1e-9)


def test_isotonic_pools_tied_confidences() -> None:
    # Stated confidences are discrete (0.0, 0.1, ... 1.0), so ties are the rule. Four answers
    # at 0.7, two right: the calibrated 0.7 must be 0.5 whatever the order of the rows.
    for hit in ([0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1]):
        fitted = CalibrationMap.fit([0.7] * 4, hit, "isotonic")
        assert fitted.apply(0.7) == pytest.approx(0.5)
        assert fitted.ece_after == pytest.approx(0.0)
        assert len(set(fitted.params["x"])) == len(fitted.params["x"])


def test_isotonic_tied_confidences_pooled_when_outcomes_fall() -> None:
    # Ties whose outcomes happen to be in falling order are pooled by PAV itself.
    fitted = CalibrationMap.fit([0.7] * 4, [1, 1, 0, 0], "isotonic")
    assert fitted.apply(0.7) == pytest.approx(0.5)


# ------------------------------------------------------------------ CalibrationMap


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_map_fit_fills_its_fields(method: str) -> None:
    conf, hit = logistic_data(0.5, 0.0, 400, seed=7)
    fitted = CalibrationMap.fit(conf, hit, method)  # type: ignore[arg-type]
    assert fitted.method == method
    assert fitted.n == 400
    assert fitted.ece_before == pytest.approx(expected_calibration_error(conf, hit))
    assert fitted.ece_after == pytest.approx(
        expected_calibration_error(fitted.apply_many(conf), hit)
    )
    assert set(fitted.params) == ({"a", "b"} if method == "platt" else {"x", "y"})


def test_map_fit_two_examples_is_enough() -> None:
    fitted = CalibrationMap.fit([0.2, 0.8], [0, 1], "isotonic")
    assert fitted.n == 2


@pytest.mark.parametrize("method", ["platt", "isotonic"])
@pytest.mark.parametrize(("conf", "hit"), [([], []), ([0.5], [1])])
def test_map_fit_needs_two_examples(method: str, conf: list, hit: list) -> None:
    with pytest.raises(ValueError, match="at least two"):
        CalibrationMap.fit(conf, hit, method)  # type: ignore[arg-type]


def test_map_fit_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown calibration method 'beta'"):
        CalibrationMap.fit([0.2, 0.8], [0, 1], "beta")  # type: ignore[arg-type]


def test_platt_map_identity() -> None:
    identity = CalibrationMap("platt", {"a": 1.0, "b": 0.0})
    for value in (0.1, 0.3, 0.5, 0.77):
        assert identity.apply(value) == pytest.approx(value)


def test_isotonic_map_interpolates_and_holds_its_ends() -> None:
    fitted = CalibrationMap("isotonic", {"x": [0.2, 0.6], "y": [0.1, 0.5]})
    assert fitted.apply(0.4) == pytest.approx(0.3)
    assert fitted.apply(0.0) == pytest.approx(0.1)
    assert fitted.apply(1.0) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "fitted",
    [
        CalibrationMap("platt", {"a": 2.0, "b": 0.3}),
        CalibrationMap("isotonic", {"x": [0.0, 0.5, 1.0], "y": [0.1, 0.4, 0.9]}),
    ],
)
def test_apply_clamps(fitted: CalibrationMap) -> None:
    assert fitted.apply(-0.5) == fitted.apply(0.0)
    assert fitted.apply(1.5) == fitted.apply(1.0)
    for value in (-3.0, 0.0, 1.0, 7.0):
        assert 0.0 <= fitted.apply(value) <= 1.0
    assert math.isfinite(fitted.apply(0.0))
    assert math.isfinite(fitted.apply(1.0))


def test_apply_many_returns_python_floats() -> None:
    out = CalibrationMap("platt", {"a": 1.0, "b": 0.0}).apply_many([0.2, 0.4])
    assert all(type(v) is float for v in out)


# ------------------------------------------------------------------ answer_probability


def test_answer_probability_geometric_mean() -> None:
    assert answer_probability([math.log(0.5), math.log(0.5)]) == pytest.approx(0.5)
    assert answer_probability([math.log(0.25), math.log(1.0)]) == pytest.approx(0.5)
    assert answer_probability([math.log(0.9)]) == pytest.approx(0.9)
    assert answer_probability([0.0, 0.0, 0.0]) == pytest.approx(1.0)


def test_answer_probability_empty() -> None:
    assert answer_probability([]) == 1.0


def test_answer_probability_is_length_normalised() -> None:
    short = answer_probability([math.log(0.8)])
    long = answer_probability([math.log(0.8)] * 20)
    assert short == pytest.approx(long)


def test_auroc_by_hand() -> None:
    # right answers at 0.9 and 0.6, wrong at 0.6 and 0.2: of 4 pairs, 3 ordered, 1 tied
    assert auroc([0.9, 0.6, 0.6, 0.2], [True, True, False, False]) == pytest.approx(3.5 / 4)
    assert auroc([0.9, 0.8, 0.3], [True, True, False]) == 1.0
    assert auroc([0.9, 0.8, 0.3], [False, False, True]) == 0.0


def test_auroc_of_a_constant_is_a_coin_however_calibrated() -> None:
    """A model that states 9 on every answer: a map sends all of them to the accuracy, so
    ECE is zero, and the number still tells right answers from wrong ones no better than a
    coin."""
    hits = [True] * 25 + [False] * 15
    fitted = CalibrationMap.fit([0.9] * 40, hits, "isotonic")
    calibrated = fitted.apply_many([0.9] * 40)
    assert expected_calibration_error(calibrated, hits) == pytest.approx(0.0, abs=1e-9)
    assert auroc(calibrated, hits) == 0.5


def test_auroc_is_unchanged_by_a_monotone_map_and_undefined_for_one_class() -> None:
    conf, hits = logistic_data(2.0, -0.5, 400, seed=3)
    fitted = CalibrationMap.fit(conf, hits, "platt")
    assert fitted.params["a"] > 0
    assert auroc(fitted.apply_many(conf), hits) == pytest.approx(auroc(conf, hits), abs=1e-9)
    assert 0.6 < auroc(conf, hits) < 1.0  # the data's confidence is informative
    assert auroc([0.3, 0.9], [True, True]) is None
    assert auroc([], []) is None
