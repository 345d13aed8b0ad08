"""What the Trainer's item-item stage costs on a ratings folder: models/item_item_training.py's
`train_item_item` end to end (the holdout choice of l2, exponent, user weight and side weight,
the served solve, the neighbour + low-rank cut), as the Trainer runs it, with the default
ItemItemHParams and the movies' side features.

    .venv/bin/python -m bench.item_item_fit /tmp/syn-1m [more folders] [--choice-users N]

Each folder holds a ratings.csv and a movies.csv (MovieLens or bench/synthetic.py output; every
rating counts as an interaction, as in the Trainer's training split; the columns and catalogue
are bench.accuracy's mirror of Transform, through bench.ranking.encoded_catalogue). Prints one
line a folder: its size, the seconds, the choice, the movies solved and the bytes served, with
the load average before and after (2 cores: anything else running doubles the seconds).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from bench import ranking
from models import features, item_item, item_item_training
from models.hparams import ItemItemHParams


def fit_line(folder: Path, hp: ItemItemHParams) -> str:
    """One line: the folder's size and what train_item_item took and chose there."""
    pairs, num_users, num_movies, movies = ranking.folder_interactions(folder)
    load = os.getloadavg()[0]
    start = time.time()
    stage, choice = item_item_training.train_item_item(hp, num_users, num_movies, pairs, movies)
    seconds = time.time() - start
    x = item_item_training.interactions(pairs[features.USER_IDX], pairs[features.MOVIE_IDX],
                                        num_users, num_movies)  # the head the Trainer solved
    solved = len(item_item.head_movies(np.asarray(x.sum(axis=0)).reshape(-1),
                                          max_dense=hp.max_dense))
    chosen = item_item_training.record_key(choice.record())
    ratings = len(pairs[features.USER_IDX])
    return (f"{folder}: {ratings:,} ratings, {num_users:,} users, {num_movies:,} movies, "
            f"choice by <= {hp.choice_users:,} holdout users: "
            f"{seconds:.1f} s, the choice {choice.choice_seconds:.1f} s of it (l2/exponent/user "
            f"weight/side weight {chosen}); {solved:,} movies solved, "
            f"{stage.nbytes / 1e6:.0f} MB served; "
            f"load {load:.2f} before, {os.getloadavg()[0]:.2f} after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--choice-users", type=int, default=ItemItemHParams.choice_users,
                        help="holdout users scoring the choice (default: the Trainer's)")
    args = parser.parse_args()
    hp = ItemItemHParams(choice_users=args.choice_users)
    for folder in args.folders:
        print(fit_line(folder, hp), flush=True)


if __name__ == "__main__":
    main()
