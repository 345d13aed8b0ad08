"""Top-k metrics of recommendation lists: precision, recall, NDCG, MAP and catalogue coverage.

One definition for the pipeline's top-k evaluation (components/evaluation/), the benchmark
(bench/ranking.py) and the tests. Relevance is binary: a movie is relevant to a user when it is in
the user's held-out set. Definitions follow Microsoft Recommenders' python_evaluation:

  precision@k = hits in the top k / k
  recall@k    = hits in the top k / |relevant|
  NDCG@k      = sum over hits at rank r (1-based) of 1 / log2(r + 1), divided by the same sum for
                an ideal list (min(k, |relevant|) hits first)
  MAP@k       = sum over hits at rank r of precision@r, divided by min(k, |relevant|)
  coverage@k  = distinct movies in all users' top k / catalogue size

Lists shorter than k (a padded entry is PAD) count their missing entries as misses.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

METRICS = ("precision", "recall", "ndcg", "map")
PAD = -1  # a padding entry of a recommendation list: never relevant


def per_user(recommended: np.ndarray | Sequence[Sequence[int]],
             relevant: Sequence[Collection[int]], k: int) -> dict[str, np.ndarray]:
    """Each metric of METRICS for each user.

    recommended: [U, >= k] movie ids, best first (only the first k are read; PAD pads);
    relevant: U collections of movie ids (users with none get 0 on every metric, so leave them
    out). Returns {metric: float64 [U]}.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(recommended) != len(relevant):
        raise ValueError(f"{len(recommended)} recommendation lists for {len(relevant)} users")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)
    out = {m: np.zeros(len(relevant)) for m in METRICS}
    for u, (items, wanted) in enumerate(zip(recommended, relevant, strict=True)):
        n_relevant = len(wanted)
        if not n_relevant:
            continue
        hits = np.fromiter((i != PAD and i in wanted for i in list(items)[:k]), bool)
        hits = np.pad(hits, (0, k - len(hits)))
        n_hits = hits.sum()
        best = min(k, n_relevant)
        out["precision"][u] = n_hits / k
        out["recall"][u] = n_hits / n_relevant
        out["ndcg"][u] = discounts[hits].sum() / ideal[best - 1]
        precision_at = np.cumsum(hits) / np.arange(1, k + 1)
        out["map"][u] = precision_at[hits].sum() / best
    return out


def mean(metrics: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict[str, float]:
    """The mean of each per-user metric, over the users where `mask` (bool [U]) holds."""
    return {m: float(np.mean(v if mask is None else v[mask])) if len(v) else float("nan")
            for m, v in metrics.items()}


def coverage(recommended: np.ndarray | Sequence[Sequence[int]], k: int,
             catalogue_size: int) -> float:
    """Distinct movies among every user's first k (PAD excluded) / catalogue_size."""
    distinct = {i for items in recommended for i in list(items)[:k] if i != PAD}
    return len(distinct) / catalogue_size


def evaluate(recommended: np.ndarray | Sequence[Sequence[int]],
             relevant: Sequence[Collection[int]], k: int, catalogue_size: int
             ) -> dict[str, float]:
    """Mean precision, recall, NDCG and MAP at k, and coverage, as one dict."""
    result = mean(per_user(recommended, relevant, k))
    result["coverage"] = coverage(recommended, k, catalogue_size)
    return result
