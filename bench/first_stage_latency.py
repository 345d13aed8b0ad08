"""Latency of the item-item first stage as `recommend` serves it, at ml-latest-small's and ml-32m's
catalogue sizes: item_item.scores_tf (N neighbours a movie plus the rank-r residual) and the top
100 candidates, one user a call, in a tf.function, random neighbour lists and factors of the
served shapes; and the served bytes. Issue 21's requirement: a first stage that serves an
87k-movie catalogue.

    .venv/bin/python -m bench.first_stage_latency [--movies 9742 87000] [--repeats 300]

Prints one line per (movies, history length) and writes bench/results/first_stage_latency.json.
The load average is printed with it: timings on a busy machine are not timings.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from bench import docs, ranking
from models.hparams import ItemItemHParams

HISTORY_LENGTHS = (20, 100, 500)  # ml-latest-small: median 70 ratings a user


def latency(movies: int, neighbours: int, rank: int, history_length: int, repeats: int,
            seed: int = 0) -> dict[str, float]:
    """p50 and p90 ms of one user's scores + top 100, after a warm-up."""
    import tensorflow as tf

    from models import item_item

    rng = np.random.default_rng(seed)
    lists = tf.constant(rng.integers(0, movies, (movies, neighbours), dtype=np.int32))
    weights = tf.constant(rng.normal(size=(movies, neighbours)).astype(np.float32))
    history_factors = tf.constant(rng.normal(size=(movies, rank)).astype(np.float32))
    movie_factors = tf.constant(rng.normal(size=(movies, rank)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64)])
    def top(history):
        scores = item_item.scores_tf(lists, weights, history, history_factors=history_factors,
                                     movie_factors=movie_factors)
        return tf.math.top_k(scores, 100).indices

    histories = [rng.choice(movies, history_length, replace=False)[None]
                 for _ in range(repeats)]
    return ranking.call_latency(top, histories, warmup=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--movies", type=int, nargs="+", default=[9742, 87000])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    hp = ItemItemHParams()
    results = {"date": time.strftime("%Y-%m-%d"), "commit": docs.git_commit(),
               "machine": f"{os.cpu_count()}-core {platform.machine()}",
               "neighbours": hp.neighbours, "rank": hp.rank, "rows": []}
    for movies in args.movies:
        served_bytes = movies * (hp.neighbours * 8 + hp.rank * 8)
        for length in HISTORY_LENGTHS:
            row = {"movies": movies, "history": length, "served_mb": served_bytes / 1e6,
                   **latency(movies, hp.neighbours, hp.rank, length, args.repeats),
                   "load_average": os.getloadavg()}
            results["rows"].append(row)
            print(f"{movies} movies, history {length}: p50 {row['p50_ms']:.2f} ms, p90 "
                  f"{row['p90_ms']:.2f} ms, {row['served_mb']:.0f} MB served "
                  f"(load {' '.join(f'{x:.1f}' for x in row['load_average'])})", flush=True)
    lines = [f"Measured {results['date']} on commit `{results['commit']}`, {results['machine']}"
             f" ({docs.cpu_model()}), with `python -m bench.first_stage_latency`: one user a "
             f"call, item_item.scores_tf with N = {hp.neighbours} neighbours and rank "
             f"{hp.rank}, then the top 100, in a tf.function; random lists and factors of the "
             "served shapes.", "",
             "| movies | history | p50 ms | p90 ms | served MB | load average |",
             "|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r['movies']:,} | {r['history']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
              f"{r['served_mb']:.0f} | {' '.join(f'{x:.1f}' for x in r['load_average'])} |"
              for r in results["rows"]]
    docs.write_results(docs.DOC.parent.parent / "bench" / "results" / "first_stage_latency.json",
                       results, "first-stage-latency", "\n".join(lines),
                       "## Item-item first stage: latency and size (bench/first_stage_latency.py)")


if __name__ == "__main__":
    main()
