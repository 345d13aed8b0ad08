"""What deterministic training costs: the Trainer's two stages (models.trainer.fit_serving_module,
the default `neural` configuration and its retrieval stage) on MovieLens-sized planted data, with
and without TensorFlow's op determinism, each training in a fresh process (op determinism is
process-wide and cannot be turned off), alternating so that the machine's load falls on both.
Prints each training's time and a digest of all its weights: the same digest means bit-identical
weights.

    .venv/bin/python -m bench.determinism --repeats 3

Results in docs/benchmarks.md, "The gate's statistics".
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import time

import models  # noqa: F401 - Keras 2 before TensorFlow

# Users, movies and ratings drawn: ml-latest-small's sizes.
USERS, MOVIES, RATINGS = 610, 9000, 100_000


def train_once(deterministic: bool) -> tuple[float, str]:
    """One fit_serving_module in this process: (seconds, digest of every weight)."""
    import numpy as np
    import tensorflow as tf

    from models import features, trainer
    from models.catalogue import Catalogue
    from models.hparams import tuned

    if not deterministic:  # what the Trainer did before seed_everything turned it on
        tf.config.experimental.enable_op_determinism = lambda: None
    rng = np.random.default_rng(0)
    popularity = 1.0 / np.arange(1, MOVIES + 1) ** 0.8
    pairs = np.unique(rng.integers(0, USERS, RATINGS) * MOVIES
                      + rng.choice(MOVIES, RATINGS, p=popularity / popularity.sum()))
    users, movies = pairs // MOVIES, pairs % MOVIES
    genres = (rng.random((MOVIES, len(features.GENRE_NAMES))) < 0.1).astype(np.float32)
    stars = np.clip(3.5 + rng.normal(0, 0.3, USERS)[users] + rng.normal(0, 0.4, MOVIES)[movies]
                    + rng.normal(0, 0.8, len(users)), 0.5, 5.0)
    columns = {features.USER_IDX: users, features.MOVIE_IDX: movies,
               features.GENRES_XF: genres[movies],
               features.YEAR_XF: np.zeros(len(users), np.float32),
               features.LABEL_XF: features.scale_rating(stars).astype(np.float32),
               features.TIMESTAMP: rng.integers(0, 10**9, len(users))}
    catalogue = Catalogue(movie_ids=np.arange(1, MOVIES + 1), movie_idx=np.arange(MOVIES),
                          genres=genres, years=np.zeros(MOVIES, np.float32),
                          titles=np.array([b"m"] * MOVIES, dtype=object))
    start = time.time()
    module = trainer.fit_serving_module(tuned("neural"), columns, list(range(1, USERS + 1)),
                                        MOVIES, catalogue, verbose=0)
    seconds = time.time() - start
    digest = hashlib.sha256()
    for variable in module.variables:
        digest.update(variable.numpy().tobytes())
    return seconds, digest.hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["plain", "deterministic"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        seconds, digest = train_once(args.child == "deterministic")
        print(f"RESULT {seconds:.1f} {digest}", flush=True)
        return 0
    times: dict[str, list[float]] = {"plain": [], "deterministic": []}
    for repeat in range(args.repeats):
        for mode in times:
            out = subprocess.run([sys.executable, "-m", "bench.determinism", "--child", mode],
                                 capture_output=True, text=True, check=True,
                                 env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}).stdout
            result = next(line for line in out.splitlines() if line.startswith("RESULT"))
            _, seconds, digest = result.split()
            times[mode].append(float(seconds))
            load = os.getloadavg()[0]
            print(f"{repeat + 1} {mode:13s} {float(seconds):6.1f} s  weights {digest}  "
                  f"load {load:.1f}", flush=True)
    plain, deterministic = (statistics.median(times[m]) for m in times)
    print(f"median: plain {plain:.1f} s, deterministic {deterministic:.1f} s "
          f"({deterministic / plain - 1:+.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
