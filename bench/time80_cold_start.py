"""How low can time80 MAE go? Bounds on the ratings of users who have no training ratings.

    .venv/bin/python -m bench.time80_cold_start [--data-dir DIR] [--no-write]

On the time80 protocol (bench/accuracy.py) most test ratings come from users who first rated
after the cutoff. Nothing about such a user is known at prediction time, so any model predicts
them from the movie alone (the model's OOV user). This script measures what movie-only
predictions achieve on those ratings, including two oracles that peek at the test labels and
therefore bound every legitimate predictor from below:

  - the best constant, and the global mean + shrunk movie bias (what our models fall back to);
  - "calibrated (oracle)": the best monotone remapping of that prediction, fitted by L1 on the
    test labels themselves (20 quantile bins, each predicting its labels' median);
  - "test-period movie means (oracle)": each movie's mean rating by *other* new users in the
    test period (2-fold over new users, 5 repeats), shrunk toward the training estimate.

It then combines the best cold-start figure with the best known-user MAE in
bench/results/accuracy.json into the lowest overall MAE any of those models could reach.
Writes bench/results/time80_cold_start.json and the "time80-cold-start" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench import docs
from bench.accuracy import split
from pipeline import configs

REPO = configs.REPO_ROOT

RESULTS = REPO / "bench" / "results" / "time80_cold_start.json"
ACCURACY = REPO / "bench" / "results" / "accuracy.json"
TARGET_MAE = 0.765  # issue 3


def mae(predicted: np.ndarray | float, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - actual)))


def movie_bias(ratings: pd.DataFrame, mu: float, reg: float) -> pd.Series:
    """Shrunk per-movie offsets from mu: sum(r - mu) / (n + reg)."""
    g = ratings.groupby("movieId").rating
    return (g.sum() - g.count() * mu) / (g.count() + reg)


def calibrated_oracle(predicted: np.ndarray, actual: np.ndarray, bins: int = 20) -> float:
    """MAE after the best step-function remapping of `predicted`, fitted on `actual` itself."""
    edges = np.quantile(predicted, np.linspace(0, 1, bins + 1))
    index = np.clip(np.searchsorted(edges, predicted, side="right") - 1, 0, bins - 1)
    medians = pd.Series(actual).groupby(index).median()
    return mae(medians[index].to_numpy(), actual)


def other_new_users_oracle(cold: pd.DataFrame, base: pd.Series, shrink: float,
                           repeats: int = 5, seed: int = 0) -> float:
    """2-fold over new users: a movie's prediction is the mean rating given to it by the other
    fold's new users (test labels), shrunk by `shrink` ratings toward the training estimate."""
    rng = np.random.default_rng(seed)
    users = cold.userId.unique()
    total, count = 0.0, 0
    for _ in range(repeats):
        half = rng.choice(users, len(users) // 2, replace=False)
        in_half = cold.userId.isin(half)
        for fit, held in ((cold[in_half], cold[~in_half]), (cold[~in_half], cold[in_half])):
            g = fit.groupby("movieId").rating
            n = held.movieId.map(g.count()).fillna(0).to_numpy()
            mean = held.movieId.map(g.mean()).fillna(0).to_numpy()
            prior = base.loc[held.index].to_numpy()
            predicted = (n * mean + shrink * prior) / (n + shrink)
            total += float(np.abs(predicted - held.rating.to_numpy()).sum())
            count += len(held)
    return total / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=configs.DATA_HOME / configs.DATASET)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    ratings = pd.read_csv(args.data_dir / "ratings.csv")
    train, test = split(ratings, "time80")
    is_new = ~test.userId.isin(train.userId)
    cold = test[is_new]
    actual = cold.rating.to_numpy()
    mu = float(train.rating.mean())
    per_user = cold.groupby("userId").size().sort_values(ascending=False)

    rows: dict[str, float] = {"global mean (train)": mae(mu, actual)}
    constants = np.arange(0.5, 5.01, 0.05)
    best_constant = min(constants, key=lambda c: mae(c, actual))
    rows[f"best constant, {best_constant:.2f} (oracle)"] = mae(best_constant, actual)
    regs = (1, 2, 5, 10, 25)
    predictions = {reg: mu + cold.movieId.map(movie_bias(train, mu, reg)).fillna(0)
                   for reg in regs}
    by_reg = {reg: mae(p.to_numpy(), actual) for reg, p in predictions.items()}
    reg = min(by_reg, key=by_reg.get)
    base = predictions[reg]
    rows[f"global mean + movie bias (train, shrinkage {reg}; best of {regs})"] = by_reg[reg]
    rows["calibrated (oracle): best monotone remap of the above, fitted on the test labels"] = \
        calibrated_oracle(base.to_numpy(), actual)
    shrinks = (3, 10, 30, 100)
    by_shrink = {s: other_new_users_oracle(cold, base, s) for s in shrinks}
    shrink = min(by_shrink, key=by_shrink.get)
    rows[f"test-period movie means of the other new users (oracle, shrinkage {shrink})"] = \
        by_shrink[shrink]
    rows["per-user median (oracle: knows each new user's own test labels)"] = mae(
        cold.groupby("userId").rating.transform("median").to_numpy(), actual)

    best_cold = min(v for k, v in rows.items() if "per-user" not in k)
    known_share = float(1 - is_new.mean())
    summary = json.loads(ACCURACY.read_text())["summary"] if ACCURACY.exists() else []
    known = {r["model"]: r["mae_known_users"] for r in summary if r["protocol"] == "time80"
             and r["model"] != "global_mean"}
    best_known_model = min(known, key=known.get) if known else None
    best_known = known.get(best_known_model, float("nan"))
    bound = (1 - known_share) * best_cold + known_share * best_known
    needed_known = (TARGET_MAE - (1 - known_share) * best_cold) / known_share

    commit = docs.git_commit()
    result = {
        "command": "python -m bench.time80_cold_start", "date": time.strftime("%Y-%m-%d"),
        "commit": commit, "test_ratings": len(test), "new_user_ratings": int(is_new.sum()),
        "new_users": int(cold.userId.nunique()),
        "top5_new_users_share": float(per_user.head(5).sum() / len(cold)),
        "new_user_mae": rows, "best_cold_mae": best_cold,
        "best_known_model": best_known_model, "best_known_mae": best_known,
        "overall_bound": bound, "target": TARGET_MAE,
        "known_mae_needed_for_target": needed_known,
    }
    print(json.dumps(result, indent=1))
    if args.no_write:
        return 0
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"`{result['command']}` at commit {commit}, {result['date']}. time80 test: "
        f"{len(test):,} ratings, {is_new.sum():,} ({is_new.mean():.1%}) by {result['new_users']} "
        f"users with no training rating (the 5 most active of them give "
        f"{result['top5_new_users_share']:.0%} of those ratings).",
        "",
        "| predictor of the new users' ratings (movie only) | MAE |",
        "|---|---:|",
        *[f"| {name} | {value:.4f} |" for name, value in rows.items()],
        "",
        f"Lowest overall MAE reachable with the best movie-only figure above ({best_cold:.4f}, an "
        f"oracle) and the best known-user MAE in the accuracy table ({best_known:.4f}, "
        f"{best_known_model}): {1 - known_share:.3f} x {best_cold:.4f} + {known_share:.3f} x "
        f"{best_known:.4f} = **{bound:.4f}**, against the target {TARGET_MAE}. Reaching "
        f"{TARGET_MAE} with that cold-start figure would need a known-user MAE of "
        f"{needed_known:.3f}.",
    ]
    docs.write_section("time80-cold-start", "\n".join(lines),
                       heading="## time80: the cold-start bound")
    print(f"Wrote {RESULTS} and {docs.DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
