"""Confidence calibration: expected calibration error, and maps fitted on a dev set.

A raw confidence (the model's stated ``<confidence>``, or one derived from its answer-token
probabilities or from agreement across samples) is rarely a probability of being right.
``Calibration`` holds one fitted map per confidence source, per model, fitted by
``safework-train calibrate`` on questions with known answers and stored as JSON in the cache
(``calibration/<model>-<weights digest>.json``: a map belongs to one set of weights); the
server applies it to every search answer.

Maps: ``platt`` (logistic regression on the logit of the raw confidence, two parameters,
Newton's method) and ``isotonic`` (pool-adjacent-violators, monotone step function with
linear interpolation between the fitted points). ECE uses equal-width bins; ``ece_floor``
says what ECE a calibrated model would show at the same size, since small samples inflate it.
ECE alone rewards a map that gives every answer the accuracy; ``auroc`` says whether the
confidence tells right answers from wrong ones at all.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from safework.errors import ConfigError
from safework.files import cache_dir, weights_digest

logger = logging.getLogger(__name__)
Method = Literal["platt", "isotonic"]
_EPS = 1e-4


def _arrays(confidence: Sequence[float], correct: Sequence[bool | float]) -> tuple[Any, Any]:
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if conf.shape != hit.shape or conf.ndim != 1:
        raise ValueError("confidence and correct must be 1-D and the same length")
    if conf.size and (conf.min() < 0 or conf.max() > 1):
        raise ValueError("confidences must lie in [0, 1]")
    return conf, hit


def expected_calibration_error(
    confidence: Sequence[float], correct: Sequence[bool | float], bins: int = 10
) -> float:
    """ECE: the sample-weighted mean of |accuracy - mean confidence| over equal-width bins.

    Bin ``b`` holds confidences in ``(b/B, (b+1)/B]``, with 0 in the first bin.
    """
    conf, hit = _arrays(confidence, correct)
    if conf.size == 0:
        return 0.0
    index = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            ece += members.mean() * abs(hit[members].mean() - conf[members].mean())
    return float(ece)


def ece_floor(
    confidence: Sequence[float], bins: int = 10, draws: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """The ECE a perfectly calibrated model would show with these confidences on this many
    questions: mean and 95th percentile over ``draws`` simulated outcome sets, each answer
    right with probability equal to its confidence.

    ECE is biased upwards on small samples: 40 answers at confidence 0.55 give about 0.06
    when every one of them is calibrated. A measured ECE below the 95th percentile is
    consistent with calibration; a goal below the mean cannot be shown at this size."""
    conf, _ = _arrays(confidence, [0.0] * len(confidence))
    if conf.size == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    hits = rng.random((draws, conf.size)) < conf  # (draws, n)
    index = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    gap = np.zeros(draws)
    for b in np.unique(index):
        members = index == b
        # each bin's weight times |accuracy - mean confidence|, for every draw at once
        gap += members.mean() * np.abs(hits[:, members].mean(axis=1) - conf[members].mean())
    return float(gap.mean()), float(np.quantile(gap, 0.95))


def auroc(confidence: Sequence[float], correct: Sequence[bool | float]) -> float | None:
    """How well a confidence tells right answers from wrong ones: the chance that a right
    answer, drawn at random, carries a higher confidence than a wrong one (ties count half).

    0.5 is no better than a coin; a model that states 9 on every answer scores exactly 0.5,
    however small its ECE. ``None`` when the answers are all right or all wrong.
    """
    conf, hit = _arrays(confidence, correct)
    right, wrong = conf[hit > 0.5], conf[hit <= 0.5]
    if not right.size or not wrong.size:
        return None
    # pairs where the right answer is more confident, plus half the ties, over all pairs
    above = (right[:, None] > wrong[None, :]).sum()
    ties = (right[:, None] == wrong[None, :]).sum()
    return float((above + 0.5 * ties) / (right.size * wrong.size))


def reliability_table(
    confidence: Sequence[float], correct: Sequence[bool | float], bins: int = 10
) -> list[dict[str, float]]:
    """Per non-empty bin: its range, count, mean confidence and accuracy (for reports)."""
    conf, hit = _arrays(confidence, correct)
    index = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        if members.any():
            rows.append(
                {
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "count": int(members.sum()),
                    "confidence": float(conf[members].mean()),
                    "accuracy": float(hit[members].mean()),
                }
            )
    return rows


def _logit(p: Any) -> Any:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def fit_platt(confidence: Sequence[float], correct: Sequence[bool | float]) -> tuple[float, float]:
    """``(a, b)`` of ``sigmoid(a * logit(conf) + b)`` by Newton's method on the log loss.

    A small penalty pulls ``(a, b)`` towards the identity map ``(1, 0)``: it keeps the fit
    finite when the dev set is separable, and identifiable when every confidence is the same
    (a model that always says 9/10: then only ``b`` moves).
    """
    conf, hit = _arrays(confidence, correct)
    x = _logit(conf)
    ridge = 1e-2

    def loss(theta: Any) -> float:
        z = theta[0] * x + theta[1]
        # log(1 + e^z) - y z, computed stably
        nll = np.sum(np.logaddexp(0.0, z) - hit * z)
        return float(nll + 0.5 * ridge * ((theta[0] - 1) ** 2 + theta[1] ** 2))

    theta = np.array([1.0, 0.0])
    current = loss(theta)
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(theta[0] * x + theta[1], -30, 30)))
        w = p * (1 - p)
        grad = np.array([np.sum((p - hit) * x), np.sum(p - hit)]) + ridge * (theta - [1.0, 0.0])
        hess = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        step = np.linalg.solve(hess + ridge * np.eye(2), grad)
        t = 1.0  # backtracking: every accepted step lowers the loss
        while t > 1e-8 and loss(theta - t * step) > current:
            t /= 2
        theta = theta - t * step
        previous, current = current, loss(theta)
        if previous - current < 1e-12:
            break
    return float(theta[0]), float(theta[1])


def fit_isotonic(
    confidence: Sequence[float], correct: Sequence[bool | float]
) -> tuple[list[float], list[float]]:
    """Monotone non-decreasing fit by pool-adjacent-violators: ``(xs, ys)`` knots.

    Equal confidences are pooled first (stated confidences take only 11 values), so the fit
    does not depend on row order. Each final block contributes knots at its lowest and
    highest confidence with the block's accuracy: interpolation happens only between blocks,
    and every training point maps to its block's value.
    """
    conf, hit = _arrays(confidence, correct)
    values, inverse = np.unique(conf, return_inverse=True)
    sums = np.bincount(inverse, weights=hit)
    counts = np.bincount(inverse).astype(np.float64)
    blocks: list[list[float]] = []  # [sum_y, count, lowest x, highest x]
    for x, y, n in zip(values, sums, counts, strict=True):
        blocks.append([y, n, x, x])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            y2, n2, _, hi = blocks.pop()
            blocks[-1][0] += y2
            blocks[-1][1] += n2
            blocks[-1][3] = hi
    xs: list[float] = []
    ys: list[float] = []
    for y, n, lo, hi in blocks:
        for x in (lo, hi) if hi > lo else (lo,):
            xs.append(float(x))
            ys.append(float(y / n))
    return xs, ys


@dataclass
class CalibrationMap:
    """One fitted map from raw to calibrated confidence."""

    method: Method
    params: dict[str, Any]
    n: int = 0
    ece_before: float | None = None
    ece_after: float | None = None

    @classmethod
    def fit(
        cls, confidence: Sequence[float], correct: Sequence[bool | float], method: Method
    ) -> CalibrationMap:
        if len(confidence) < 2:
            raise ValueError("calibration needs at least two examples")
        if method == "platt":
            a, b = fit_platt(confidence, correct)
            params: dict[str, Any] = {"a": a, "b": b}
        elif method == "isotonic":
            xs, ys = fit_isotonic(confidence, correct)
            params = {"x": xs, "y": ys}
        else:
            raise ValueError(f"unknown calibration method {method!r}; use platt or isotonic")
        fitted = cls(method, params, n=len(confidence))
        fitted.ece_before = expected_calibration_error(confidence, correct)
        fitted.ece_after = expected_calibration_error(fitted.apply_many(confidence), correct)
        return fitted

    def apply(self, confidence: float) -> float:
        return self.apply_many([confidence])[0]

    def apply_many(self, confidence: Sequence[float]) -> list[float]:
        conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
        if self.method == "platt":
            z = self.params["a"] * _logit(conf) + self.params["b"]
            out = 1 / (1 + np.exp(-z))
        else:
            out = np.interp(conf, self.params["x"], self.params["y"])
        return [float(v) for v in out]


@dataclass
class Calibration:
    """The fitted maps of one model, one per confidence source (``stated``, ``logprob``...)."""

    model: str
    maps: dict[str, CalibrationMap] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    """Where the fit came from: dataset, backend, sizes, held-out ECE, time."""
    preferred: str | None = None
    """The fitted source whose confidence told right answers from wrong ones best on the
    fitting answers (highest AUROC); ``confidence: auto`` reports it where an answer has it.
    A model that states 9 on every answer is calibrated and says nothing: its answer-token
    probability may still separate them."""

    def calibrate(self, source: str, confidence: float) -> float | None:
        """The calibrated confidence, or ``None`` when this source was never fitted."""
        fitted = self.maps.get(source)
        return None if fitted is None else round(fitted.apply(confidence), 4)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "maps": {k: asdict(v) for k, v in self.maps.items()},
            "info": self.info,
            "preferred": self.preferred,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        maps = {k: CalibrationMap(**v) for k, v in data.get("maps", {}).items()}
        preferred = data.get("preferred")
        if preferred is not None and preferred not in maps:
            raise ValueError(f"the preferred source {preferred!r} has no fitted map")
        return cls(data["model"], maps, data.get("info", {}), preferred)

    def save(self, path: Path | None = None) -> Path:
        """Write atomically (a server watching the file never reads half of it)."""
        path = path or calibration_path(self.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.info.setdefault("saved_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> Calibration:
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"cannot read the calibration file {path}: {e}") from e


def calibration_path(model: str, cache: Path | None = None) -> Path:
    """``<cache>/calibration/<model>.json`` (the model id made filename-safe)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"
    return (cache or cache_dir()) / "calibration" / f"{safe}.json"


def calibration_id(model_id: str, model_path: str | Path | None) -> str:
    """What a model's calibration is stored under: its id and, for weights loaded from a
    folder, a digest of them (``search-3f9a1c0e7b2d``). A map belongs to one set of weights:
    keyed by the served name alone, a second training run's ``search`` checkpoint would be
    served (and evaluated) with the first run's map."""
    folder = Path(model_path) if model_path is not None else None
    digest = weights_digest(folder) if folder is not None and folder.is_dir() else None
    return model_id if digest is None else f"{model_id}-{digest[:12]}"


def model_calibration_path(
    model_id: str, model_path: str | Path | None, cache: Path | None = None
) -> Path:
    """Where the calibration of these weights lives (``calibration_id``; reads the weights)."""
    return calibration_path(calibration_id(model_id, model_path), cache)


def load_calibration(
    model: str, path: Path | None = None, cache: Path | None = None
) -> Calibration | None:
    """The calibration stored under ``model`` (a ``calibration_id``: for a model loaded from a
    folder, its name and weights digest), or the file given; ``None`` when never fitted."""
    if path is not None:
        return Calibration.load(path)
    default = calibration_path(model, cache)
    return Calibration.load(default) if default.exists() else None


def answer_probability(logprobs: Sequence[float]) -> float:
    """The geometric-mean probability of the answer's tokens (1.0 for an empty answer)."""
    if not logprobs:
        return 1.0
    return float(math.exp(sum(logprobs) / len(logprobs)))


class CalibrationFile:
    """A calibration file the server re-reads when it changes, so a refit by
    ``safework-train calibrate`` takes effect without a restart. Missing: ``None``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._loaded: Calibration | None = None

    def current(self) -> Calibration | None:
        try:
            st = self.path.stat()
        except OSError:
            self._stamp, self._loaded = None, None
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                self._loaded = Calibration.load(self.path)
            except ConfigError:
                logger.exception("keeping the previous calibration")
            self._stamp = stamp
        return self._loaded
