"""How much the gate's intervals move with the bootstrap's seed and sample count: the overall RMSE
change of a run's candidate against its bias baseline on the eval split, resampled over users as
the Evaluator's PairedErrorChange does (components/evaluation/bootstrap.py), for several sample
counts and 20 seeds each; prints the spread of the interval's ends and a bootstrap's time.

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
