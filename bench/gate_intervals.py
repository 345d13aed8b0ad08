"""How much the gate's intervals move with the bootstrap's seed and sample count: the overall RMSE
change of a run's candidate against its bias baseline on the eval split, resampled over users as
the Evaluator's RatingErrors metric does (components/evaluation/bootstrap.py), for several sample
counts and 20 seeds each; prints the spread of the interval's ends and a bootstrap's time. With
--max-ratings, the same interval on EvalSample's seeded samples of users under each cap (10
sample seeds each): how far the change moves and how wide the interval grows when the Evaluators
read a sample instead of the whole split.

    .venv/bin/python -m bench.gate_intervals --candidate tfx_output/movielens-tfx/Trainer/model/ID \
        --baseline tfx_output/movielens-tfx/BaselineTrainer/model/ID \
        --examples tfx_output/movielens-tfx/MovieLensExampleGen/examples/ID

Results in docs/benchmarks.md, "The gate's statistics".
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import models  # noqa: F401 - Keras 2 before TensorFlow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("candidate", "baseline", "examples"):
        parser.add_argument(f"--{name}", required=True, help="an artifact's folder")
    parser.add_argument("--samples", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--max-ratings", type=int, nargs="*", default=[],
                        help="EvalSample caps to compare with the whole split")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from components.evaluation import bootstrap
    from models import contract, features

    files = tf.io.gfile.glob(os.path.join(args.examples, "Split-eval", "*"))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    parsed = tf.io.parse_example(records, {
        features.USER_ID: tf.io.FixedLenFeature([], tf.int64),
        features.RATING: tf.io.FixedLenFeature([], tf.float32)})
    users, labels = parsed[features.USER_ID].numpy(), parsed[features.RATING].numpy()
    squared = []
    for model in (args.candidate, args.baseline):
        serve = tf.saved_model.load(os.path.join(model, "Format-Serving")).signatures[
            contract.SERVING_DEFAULT]
        predicted = np.concatenate([
            serve(examples=tf.constant(records[i:i + 4096]))[contract.RATING].numpy().reshape(-1)
            for i in range(0, len(records), 4096)])
        squared.append((predicted - labels).astype(np.float64) ** 2)
    ids, per_user = np.unique(users, return_inverse=True)
    counts = np.bincount(per_user)
    sums = [np.bincount(per_user, weights=s) for s in squared]
    print(f"{len(labels):,} eval ratings of {len(ids):,} users; seed 0, 1000 samples: "
          f"{bootstrap.error_change(counts, *sums, True, 1000, 0.95, 0).describe()}")
    for samples in args.samples:
        start = time.time()
        intervals = [bootstrap.error_change(counts, *sums, True, samples, 0.95, seed)
                     for seed in range(20)]
        seconds = (time.time() - start) / 20
        lower = np.array([i.lower for i in intervals])
        upper = np.array([i.upper for i in intervals])
        print(f"{samples:5d} samples: change {intervals[0].change:+.4f}, lower end "
              f"{lower.mean():+.4f} (seed-to-seed sd {lower.std():.4f}), upper end "
              f"{upper.mean():+.4f} (sd {upper.std():.4f}); {seconds * 1000:.0f} ms each")
    for cap in args.max_ratings:
        print(sample_line(users, counts, sums, cap))
    return 0


def sample_line(users, counts, sums, cap: int, seeds: int = 10) -> str:
    """The overall RMSE change's interval (1000 resamples, seed 0) on EvalSample's samples of
    users under `cap` eval ratings, one per sample seed: the change's spread, the width."""
    import numpy as np

    from components.evaluation import bootstrap
    from components.evaluation.eval_sample import choose_users

    ids = np.unique(users)
    found = []
    for seed in range(seeds):
        kept = choose_users(users, cap, seed)
        mask = np.ones(len(ids), bool) if kept is None else np.isin(ids, kept)
        interval = bootstrap.error_change(counts[mask], *(s[mask] for s in sums), True, 1000,
                                          0.95, 0)
        found.append((int(counts[mask].sum()), int(mask.sum()), interval))
    change = np.array([i.change for _, _, i in found])
    width = np.array([i.upper - i.lower for _, _, i in found])
    below = sum(i.upper < 0 for _, _, i in found)
    above = sum(i.lower > 0 for _, _, i in found)
    return (f"cap {cap:,}: {np.mean([r for r, _, _ in found]):,.0f} ratings of "
            f"{np.mean([u for _, u, _ in found]):,.0f} users on average; change "
            f"{change.mean():+.4f} (sd over sample seeds {change.std():.4f}), interval width "
            f"{width.mean():.4f}; interval wholly below 0 in {below} of {seeds}, wholly above 0 "
            f"in {above}")


if __name__ == "__main__":
    sys.exit(main())
