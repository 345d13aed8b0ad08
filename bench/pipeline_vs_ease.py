"""The pushed model's `recommend` against EASE trained on the same split: the pipeline's own run.

    make run RUN_ARGS="--split random"          # a pipeline run (any split)
    .venv/bin/python -m bench.pipeline_vs_ease [--output-dir output]

Reads the latest run of the output folder's ML Metadata: the ExampleGen's train and eval splits
and the TopKEvaluator's NDCG@10 of the candidate (every eval rating relevant, movies rated in
training excluded, users with train and eval ratings). Fits EASE (Steck 2019, dense, closed
form) on the train split's interactions, its lambda chosen on a random 10% of them held out
(never on the eval split), and scores the same users the same way (models/ranking_metrics.py,
the TopKEvaluator's code). Prints both; issue 21's check that the pipeline's model beats EASE.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from components.evaluation import results, topk
from models import item_item, ranking_metrics
from pipeline import configs, run_summary
from pipeline.pipeline import EXAMPLE_GEN_ID

K = 10
LAMBDAS = (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)


def read_split(examples_uri: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(user ids, movie ids) of one split of the ExampleGen's tf.Examples."""
    import tensorflow as tf

    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
    users, movies = [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        f = tf.train.Example.FromString(record.numpy()).features.feature
        users.append(f["user_id"].int64_list.value[0])
        movies.append(f["movie_id"].int64_list.value[0])
    return np.array(users), np.array(movies)


def ease_ndcg(train: tuple[np.ndarray, np.ndarray], held: tuple[np.ndarray, np.ndarray],
              l2: float) -> float:
    """NDCG@K of EASE fitted on `train` pairs, judged on `held` pairs (users in both)."""
    user_ids, rows = np.unique(train[0], return_inverse=True)
    movie_ids, cols = np.unique(train[1], return_inverse=True)
    x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                      shape=(len(user_ids), len(movie_ids)))
    x.data[:] = 1.0
    b = item_item.dense_fit(x, l2)
    relevant: dict[int, set[int]] = {}
    for user, movie in zip(*held, strict=True):
        row = np.searchsorted(user_ids, user)
        if row < len(user_ids) and user_ids[row] == user:
            relevant.setdefault(int(row), set()).add(int(movie))
    users = np.array(sorted(relevant))
    scores = np.asarray(x[users] @ b)
    scores[x[users].nonzero()] = -np.inf
    top = movie_ids[np.argsort(-scores, axis=1, kind="stable")[:, :K]]
    return ranking_metrics.mean(ranking_metrics.per_user(
        top, [relevant[u] for u in users], K))["ndcg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=configs.OUTPUT_DIR)
    args = parser.parse_args()
    metadata = str(args.output_dir / "metadata.sqlite")
    summary = run_summary.summarize_latest_run(metadata)
    if summary is None or summary.top_k is None:
        raise SystemExit(f"no pipeline run with a TopKEvaluator in {metadata}")
    store = run_summary.open_store(metadata)
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
    examples = run_summary._output(run_summary.node_outputs(store, run.id), EXAMPLE_GEN_ID,
                                   "Examples")
    train, evaluation = read_split(examples.uri, "train"), read_split(examples.uri, "eval")
    rng = np.random.default_rng(0)
    held = rng.random(len(train[0])) < 0.1
    fit_part = (train[0][~held], train[1][~held])
    held_part = (train[0][held], train[1][held])
    validation = {l2: ease_ndcg(fit_part, held_part, l2) for l2 in LAMBDAS}
    best = max(validation, key=validation.get)
    ours = summary.top_k.value(results.CANDIDATE, topk.OVERALL, results.NDCG)
    ease = ease_ndcg(train, evaluation, best)
    print(f"Run {summary.run_id}, {len(train[0])} train / {len(evaluation[0])} eval ratings, "
          f"{summary.top_k.counts[topk.OVERALL]['users']} users judged")
    print("EASE lambda on a 10% holdout of train: "
          + ", ".join(f"{k:g}: {v:.4f}" for k, v in validation.items()) + f" -> {best:g}")
    print(f"NDCG@{K} on the eval split: pushed model's recommend {ours:.4f}, EASE {ease:.4f} "
          f"({'ahead' if ours > ease else 'behind'} by {abs(ours - ease):.4f})")


if __name__ == "__main__":
    main()
