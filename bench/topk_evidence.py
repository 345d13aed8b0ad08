"""How much evidence the top-k blessing rules get from each split: users judged and the width of
the paired bootstrap interval of an NDCG@10 change, on ml-latest-small (or --data-dir).

    python -m bench.topk_evidence [--data-dir DIR]

The TopKEvaluator judges every user with train ratings and at least one eval rating, every eval
rating relevant, seen movies excluded. Per split (the pipeline's time split, and user_time: each
user's newest fifth), it scores three lists per user: the popularity baseline and EASE (Steck
2019, closed form) at two regularisations, a near-identical pair. It prints the users judged,
each model's NDCG@10, and the 95% paired bootstrap intervals (components/evaluation/bootstrap.py,
the gate's own code) of EASE - popularity (a real difference) and of EASE(lambda 400) -
EASE(lambda 200) (two models a gate should not tell apart).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from components.evaluation import bootstrap
from models import ranking_metrics
from pipeline import configs

K = 10
EVAL_FRACTION = 0.2


def load(data_dir: Path) -> pd.DataFrame:
    return pd.read_csv(data_dir / "ratings.csv")


def time_split(ratings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    # As the ExampleGen's "time": before the 80th percentile of timestamps trains.
    cutoff = np.quantile(ratings.timestamp, 1.0 - EVAL_FRACTION)
    return ratings[ratings.timestamp < cutoff], ratings[ratings.timestamp >= cutoff]


def user_time_split(ratings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    # As the ExampleGen's "user_time": each user's newest int(0.2 n), ties on the eval side.
    def cutoff(times: pd.Series) -> float:
        held = int(EVAL_FRACTION * len(times))
        ordered = np.sort(times.to_numpy())
        if not held or ordered[len(ordered) - held] <= ordered[0]:
            return np.inf
        return ordered[len(ordered) - held]

    cut = ratings.groupby("userId").timestamp.transform(cutoff)
    return ratings[ratings.timestamp < cut], ratings[ratings.timestamp >= cut]


def ease(matrix: np.ndarray, lam: float) -> np.ndarray:
    """EASE's item-item weights B = I - P / diag(P), P = (X'X + lam I)^-1, diag 0."""
    gram = matrix.T @ matrix
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b


def per_user_ndcg(train: pd.DataFrame, held: pd.DataFrame) -> tuple[int, dict[str, np.ndarray]]:
    users = sorted(set(train.userId) & set(held.userId))
    items = np.array(sorted(train.movieId.unique()))
    index = {m: i for i, m in enumerate(items)}
    user_row = {u: i for i, u in enumerate(users)}
    mine = train[train.userId.isin(user_row)]
    x = np.zeros((len(users), len(items)), np.float32)
    x[mine.userId.map(user_row), mine.movieId.map(index)] = 1.0
    everyone = np.zeros((train.userId.nunique(), len(items)), np.float32)
    rows = {u: i for i, u in enumerate(sorted(train.userId.unique()))}
    everyone[train.userId.map(rows), train.movieId.map(index)] = 1.0
    relevant = [set(held[held.userId == u].movieId.map(index).dropna().astype(int))
                for u in users]
    scores = {"popularity": np.tile(everyone.sum(0), (len(users), 1)),
              "ease_200": x @ ease(everyone, 200.0), "ease_400": x @ ease(everyone, 400.0)}
    ndcg = {}
    for name, score in scores.items():
        score = np.where(x > 0, -np.inf, score)  # seen movies are never recommended
        top = np.argsort(-score, axis=1)[:, :K]
        ndcg[name] = ranking_metrics.per_user(top, relevant, K)["ndcg"]
    return len(users), ndcg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path,
                        default=configs.REPO_ROOT / "data" / "ml-latest-small")
    args = parser.parse_args(argv)
    ratings = load(args.data_dir)
    settings = configs.EVAL
    print("| split | users judged | NDCG@10 popularity | EASE 200 | EASE 400 | EASE 200 - "
          "popularity | EASE 400 - EASE 200 |\n|---|---:|---:|---:|---:|---|---|")
    for name, split in (("time", time_split), ("user_time", user_time_split)):
        users, ndcg = per_user_ndcg(*split(ratings))
        intervals = [bootstrap.mean_change(a, b, settings.bootstrap_samples,
                                           settings.confidence, settings.bootstrap_seed)
                     for a, b in ((ndcg["ease_200"], ndcg["popularity"]),
                                  (ndcg["ease_400"], ndcg["ease_200"]))]
        print(f"| {name} | {users} | {ndcg['popularity'].mean():.4f} | "
              f"{ndcg['ease_200'].mean():.4f} | {ndcg['ease_400'].mean():.4f} | "
              f"{intervals[0].describe()} | {intervals[1].describe()} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
