"""The rating model's optimizer and batch size: accuracy and training throughput (issue 22).

    python -m bench.table_updates --data-dirs ../shared/movielens/ml-latest-small /tmp/syn-1m \\
        --configs '[{}, {"optimizer": "lazy_adam"}, {"optimizer": "lazy_adam", "batch_size": 4096}]'

For each data folder, bench/accuracy.py's rand90 split (or --protocol), encoded as the Transform
does; for each configuration (overrides of models/hparams.py's tuned model type), the Trainer's
own training (trainer.train: early stopping on its 5% validation holdout, then the drift and
new users' choices). Reported: epochs, the best validation RMSE (what a setting is chosen by),
the test RMSE (for the issue's "within 0.003" check, not for choosing), the median training
epoch (validation pass excluded, first epoch excluded: tracing), examples a second, and the whole
train() seconds. Prints a markdown table; docs/benchmarks.md "Sparse table updates" has the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench import accuracy  # noqa: E402
from models import features  # noqa: E402


def run(encoded: accuracy.Encoded, model_type: str, overrides: dict, seed: int) -> dict:
    """One training of `model_type` with `overrides`, as bench/accuracy.py trains ours (the
    Trainer's trainer.train): its epochs, seconds and RMSEs."""
    predicted, seconds, hp, model = accuracy.run_ours(model_type, encoded, seed, overrides)
    error = predicted - features.unscale_rating(encoded.test[features.LABEL_XF])
    fit_examples = round(len(encoded.train[features.LABEL_XF]) * (1 - hp.validation_fraction))
    epoch = statistics.median(model.epoch_seconds[1:] or model.epoch_seconds)
    best = min(model.validation_rmse)  # stars (base.StarsRMSE)
    return {"config": overrides, "epochs": model.epochs, "validation_rmse": best,
            "test_rmse": float(np.sqrt(np.mean(error ** 2))), "epoch_s": epoch,
            "examples_per_s": fit_examples / epoch, "train_s": seconds,
            "validation_rmse_by_epoch": model.validation_rmse,
            "epoch_seconds": model.epoch_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dirs", type=Path, nargs="+", required=True)
    parser.add_argument("--configs", default='[{}, {"optimizer": "lazy_adam"}]',
                        help="JSON list of HParams overrides, one run each")
    parser.add_argument("--model-type", default="neural")
    parser.add_argument("--protocol", default="rand90", choices=accuracy.PROTOCOLS)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--output", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    configs = json.loads(args.configs)
    rows = []
    print(f"| data | {args.model_type}: overrides | seed | epochs | validation RMSE | test RMSE "
          "| epoch s | examples/s | train() s |\n|---|---|---:|---:|---:|---:|---:|---:|---:|",
          flush=True)
    for data_dir in args.data_dirs:
        ratings, movies = accuracy.load(data_dir)
        train, test = accuracy.split(ratings, args.protocol)
        encoded = accuracy.encode(train, test, movies)
        for config in configs:
            for seed in (int(s) for s in args.seeds.split(",")):
                row = {"data": str(data_dir), "seed": seed,
                       **run(encoded, args.model_type, config, seed)}
                rows.append(row)
                print(f"| {data_dir.name} | {json.dumps(config)} | {seed} | {row['epochs']} | "
                      f"{row['validation_rmse']:.4f} | {row['test_rmse']:.4f} | "
                      f"{row['epoch_s']:.2f} | {row['examples_per_s']:,.0f} | "
                      f"{row['train_s']:.1f} |", flush=True)
    if args.output:
        args.output.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
