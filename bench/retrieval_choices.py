"""Which retrieval settings win on validation data: the retrieval stage trained on each data set's
training split with each candidate value, judged by its own validation NDCG@10 (the holdout
train_retrieval cuts from the training split; never the test split).

    .venv/bin/python -m bench.retrieval_choices --data-dirs DIR [DIR ...] \\
        [--setting history_dropout --values 0.3,0.5,0.7] [--protocols rand80,strat75]

For each data folder and protocol (bench/ranking.py's splits), trains RetrievalHParams() with the
setting replaced, without the refit (the refit repeats the chosen epoch count on all the data
and does not change which value wins), and prints validation NDCG@10 per value. Results go in
docs/benchmarks.md, "Retrieval settings on validation data", by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import models  # noqa: F401 - Keras 2 before TensorFlow
from bench import accuracy, ranking


def validation_ndcg(train, movies, setting: str, value: float, seed: int) -> tuple[float, float]:
    """The retriever's validation NDCG@10 and training seconds with `setting` = value."""
    from models import retrieval_training
    from models.hparams import RetrievalHParams

    encoded = accuracy.encode(train, train.iloc[:0], movies)
    hp = dataclasses.replace(RetrievalHParams(), refit=False, seed=seed,
                             **{setting: type(getattr(RetrievalHParams(), setting))(value)})
    start = time.time()
    model = retrieval_training.train_retrieval(hp, encoded.num_users, encoded.num_movies,
                                               encoded.train,
                                    verbose=0)
    return float(model.validation_ndcg), time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dirs", type=Path, nargs="+", required=True)
    parser.add_argument("--setting", default="history_dropout")
    parser.add_argument("--values", default="0.3,0.5,0.7")
    parser.add_argument("--protocols", default="rand80,strat75")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    values = [float(v) for v in args.values.split(",")]
    print(f"| data | protocol | {' | '.join(f'{args.setting} {v:g}' for v in values)} |")
    print(f"|---|---|{'---:|' * len(values)}")
    for data_dir in args.data_dirs:
        ratings, movies = accuracy.load(data_dir)
        for protocol in args.protocols.split(","):
            train, _ = ranking.split(ratings, protocol, args.seed)
            cells = []
            for value in values:
                ndcg, seconds = validation_ndcg(train, movies, args.setting, value, args.seed)
                cells.append(f"{ndcg:.4f} ({seconds:.0f} s)")
            print(f"| {data_dir.name} | {protocol} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
