"""How much the item-item choice loses when its holdout solves take only the most rated movies
(ItemItemHParams.choice_dense), or when only a sample of the holdout's users scores them
(ItemItemHParams.choice_users): the evidence for those settings, on validation data only.

    .venv/bin/python -m bench.item_item_choice --data-dir ../shared/movielens/ml-latest-small \
        --windows 8 --extra /tmp/syn-a /tmp/syn-b [--heads 1000 2000 3000]
    .venv/bin/python -m bench.item_item_choice --data-dir /tmp/syn-5m --users 2500 5000 10000

For each data set (the folder's ratings; with --windows W, the ratings cut by time into W spans,
each full window of 4 consecutive spans, as the pipeline's span window sees them; each --extra
folder, e.g. bench/synthetic.py output): models/item_item_training.py's `_choose` on its 10%
holdout of the interactions with every movie in the solves, then with the H most rated; the
H-head's choice is scored by its NDCG@10 at the full head, against the full head's best (an
in-sample best: the loss is if anything overstated); ratings only, no catalogue: the choice
without side features (the side weight stays 0), as when the evidence was taken. With --users
(folders with a movies.csv, no windows): the Trainer's choice, side features included, scored
by every holdout user, then by a seeded sample of N of them, each sample's choice scored by
every user's NDCG@10, against the best. Prints one line a set.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from models import features, item_item_training
from models.hparams import ItemItemHParams

WINDOW_SPANS = 4  # spans in the pipeline's default window (pipeline/configs.SPAN_WINDOW)


def data_sets(data_dir: Path, windows: int, extra: list[Path]):
    """(name, user ids, movie ids) of the folder, its span windows and the extra folders."""
    ratings = pd.read_csv(data_dir / "ratings.csv").sort_values("timestamp", kind="stable")
    yield data_dir.name, ratings.userId.to_numpy(), ratings.movieId.to_numpy()
    span = len(ratings) // windows if windows else 0
    for end in range(WINDOW_SPANS + 1, windows + 1):
        window = ratings.iloc[(end - WINDOW_SPANS) * span:end * span]
        yield (f"{data_dir.name} spans {end - WINDOW_SPANS + 1}-{end} of {windows}",
               window.userId.to_numpy(), window.movieId.to_numpy())
    for folder in extra:
        other = pd.read_csv(folder / "ratings.csv", usecols=["userId", "movieId"])
        yield folder.name, other.userId.to_numpy(), other.movieId.to_numpy()


def indexed_pairs(users: np.ndarray, movies: np.ndarray
                  ) -> tuple[dict[str, np.ndarray], int, int]:
    """(USER_IDX / MOVIE_IDX columns, users, movies) of raw id pairs, ids numbered from 0 in
    order of appearance, as the Trainer's transformed columns are indices."""
    user_idx = pd.factorize(users)[0].astype(np.int64)
    movie_idx = pd.factorize(movies)[0].astype(np.int64)
    return ({features.USER_IDX: user_idx, features.MOVIE_IDX: movie_idx},
            int(user_idx.max()) + 1, int(movie_idx.max()) + 1)


def against_every(hp: ItemItemHParams, field: str, values: list[int], pairs: dict,
                  num_users: int, num_movies: int, side) -> tuple[list[str], dict[str, float]]:
    """(parts of a line, NDCG of each tried): `_choose` with hp, then with hp's `field` set to
    each of `values`, each of those choices' loss against hp's best (scored with hp), with
    seconds."""
    start = time.time()
    chosen, ndcg = item_item_training._choose(hp, pairs, num_users, num_movies, side)
    best = max(ndcg.values())
    line = [f"all {item_item_training._key(*chosen)} {best:.4f} ({time.time() - start:.0f} s)"]
    for value in values:
        start = time.time()
        small, _ = item_item_training._choose(dataclasses.replace(hp, **{field: value}), pairs,
                                              num_users, num_movies, side)
        seconds, key = time.time() - start, item_item_training._key(*small)
        if key not in ndcg:  # a point hp's own choice did not reach: score it with hp
            l2, _, user_weight, side_weight = small
            ndcg.update(item_item_training._choose(
                dataclasses.replace(hp, l2s=(l2,), user_weights=(user_weight,),
                                    side_weights=(side_weight,)),
                pairs, num_users, num_movies, side)[1])
        line.append(f"{value}: {key} {ndcg[key] - best:+.4f} ({seconds:.1f} s)")
    return line, ndcg


def compare(users: np.ndarray, movies: np.ndarray, heads: list[int]) -> str:
    """One line: the full head's choice and each smaller head's loss, with seconds."""
    pairs, num_users, num_movies = indexed_pairs(users, movies)
    line, _ = against_every(ItemItemHParams(choice_dense=num_movies), "choice_dense",
                            [h for h in heads if h < num_movies], pairs, num_users, num_movies,
                            None)
    return f"{len(users)} ratings, {num_movies} movies: " + " | ".join(line)


def compare_users(folder: Path, samples: list[int]) -> str:
    """One line: the choice (side features included, as the Trainer's) scored by every holdout
    user, and each sample's choice with its loss by every user's NDCG@10, with seconds."""
    from bench import ranking

    pairs, num_users, num_movies, movies = ranking.folder_interactions(folder)
    hp = ItemItemHParams(choice_users=num_users)
    side = item_item_training.side_features(movies, num_movies, hp.year_buckets,
                                            hp.title_max_share)
    line, ndcg = against_every(hp, "choice_users", [n for n in samples if n < num_users], pairs,
                               num_users, num_movies, side)
    ranked = sorted(ndcg.items(), key=lambda kv: -kv[1])[:4]
    line.append("all's top 4: " + ", ".join(f"{k} {v:.4f}" for k, v in ranked))
    return f"{len(pairs[features.USER_IDX])} ratings, {num_users} users: " + " | ".join(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--windows", type=int, default=0, help="cut into this many spans")
    parser.add_argument("--extra", type=Path, nargs="*", default=[])
    parser.add_argument("--heads", type=int, nargs="+", default=[1000, 2000, 3000])
    parser.add_argument("--users", type=int, nargs="+",
                        help="compare samples of this many holdout users instead of heads")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.users:  # folders with their movies.csv: the side features need the catalogue
        for folder in (args.data_dir, *args.extra):
            print(f"{folder.name}: {compare_users(folder, args.users)}", flush=True)
        return
    for name, users, movies in data_sets(args.data_dir, args.windows, args.extra):
        print(f"{name}: {compare(users, movies, args.heads)}", flush=True)


if __name__ == "__main__":
    main()
