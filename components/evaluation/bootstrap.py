"""Paired bootstrap intervals of a change in a metric between two models scored on the same users.

The blessing rules compare a candidate with a baseline on the same eval data; two point estimates
differ from run to run by the metrics' own noise (a mean over a few dozen users for top-k NDCG),
so each rule decides on an interval of the change instead. The unit resampled is the user: a
user's ratings (and their top-k list) are not independent of each other, and resampling ratings
alone would give intervals too narrow. Each sample draws the users with replacement and recomputes
both models' metric on that draw, so the change's interval keeps what the two models share (the
same users, the same hard ratings): a paired bootstrap. Percentile intervals, seeded: the same
inputs and seed give the same interval.

Used by the Evaluators' RatingErrors metric (components/evaluation/metrics.py: RMSE and MAE)
and by the TopKEvaluator (components/evaluation/topk.py: NDCG@k); the settings are
EvalSettings.bootstrap_samples, .confidence and .bootstrap_seed (pipeline/configs.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Interval:
    """A change (candidate - baseline) and its two-sided percentile interval at `confidence`."""

    change: float
    lower: float
    upper: float
    confidence: float

    def describe(self) -> str:
        """"+0.0123 (95% interval +0.0051 to +0.0190)"; "–" when there is none (no baseline)."""
        if np.isnan(self.change):
            return "–"
        return (f"{self.change + 0.0:+.4f} ({self.confidence:.0%} interval "
                f"{self.lower + 0.0:+.4f} to {self.upper + 0.0:+.4f})")


def user_weights(n_users: int, samples: int, seed: int) -> np.ndarray:
    """How often each user is drawn in each bootstrap sample: int64 [samples, n_users], each row
    summing to n_users (a multinomial draw of n_users with replacement)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=samples)


def percentile_interval(change: float, samples: np.ndarray, confidence: float) -> Interval:
    """The interval of the central `confidence` of the bootstrap `samples` [B] of a change."""
    tail = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(samples, [tail, 1.0 - tail])
    return Interval(float(change), float(lower), float(upper), confidence)


def mean_change(candidate: np.ndarray, baseline: np.ndarray, samples: int, confidence: float,
                seed: int) -> Interval:
    """Interval of mean(candidate) - mean(baseline), per-user values [U] of both models (e.g.
    NDCG@k of each user's list)."""
    difference = np.asarray(candidate, np.float64) - np.asarray(baseline, np.float64)
    n = len(difference)
    resampled = user_weights(n, samples, seed) @ difference / n
    return percentile_interval(float(difference.mean()), resampled, confidence)


def error_change(counts: np.ndarray, candidate_errors: np.ndarray, baseline_errors: np.ndarray,
                 root: bool, samples: int, confidence: float, seed: int) -> Interval:
    """Interval of a mean error's change over ratings grouped by user: per user, the number of
    ratings `counts` [U] and each model's summed error [U] (squared errors with root=True: the
    change in RMSE; absolute errors: the change in MAE)."""
    counts = np.asarray(counts, np.float64)
    candidate = np.asarray(candidate_errors, np.float64)
    baseline = np.asarray(baseline_errors, np.float64)

    def value(total_error, ratings):
        mean = total_error / ratings
        return np.sqrt(mean) if root else mean

    change = value(candidate.sum(), counts.sum()) - value(baseline.sum(), counts.sum())
    weights = user_weights(len(counts), samples, seed)
    ratings = weights @ counts
    resampled = value(weights @ candidate, ratings) - value(weights @ baseline, ratings)
    return percentile_interval(float(change), resampled, confidence)
