"""Warm start against cold start, span by span: issue 23's measurement.

    .venv/bin/python -m bench.warm_start --data-dir ../shared/movielens/ml-latest-small \
        --spans 4 --work /tmp/warm-bench

Cuts the folder into spans by time (pipeline/spans.py) and lets them arrive one at a time into
two data folders, each with its own pipeline output and serving folder: one runs as the README
says (the Trainer warm-starts from the serving model), the other with --cold-start. Every run is
`python -m pipeline.local_runner ... --accept-drift` in a fresh process, as a user would run it
(--accept-drift: ml-latest-small's second quarter brought half stars and stops on drift
otherwise). Per span: the Trainer's seconds in each mode, the candidate's eval RMSE and NDCG@10,
and the paired change warm - cold on the same eval split (the gate's bootstrap over users:
components/evaluation/bootstrap.py, 1,000 samples, 95%), with the rating model's epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tfx.types import standard_artifacts

from components.evaluation import bootstrap, results, topk
from models import contract, features, ranking_metrics
from pipeline import configs, run_summary, spans
from pipeline.pipeline import EXAMPLE_GEN_ID, TRAINER_ID

MODES = ("warm", "cold")
SAMPLES, CONFIDENCE, SEED = 1000, 0.95, 0


def run_pipeline(work: Path, mode: str) -> float:
    """One local_runner run of the mode's folders; its wall seconds."""
    args = [sys.executable, "-m", "pipeline.local_runner", "--offline", "--accept-drift",
            "--data-dir", str(work / mode / "data"), "--output-dir", str(work / mode / "tfx"),
            "--serving-model-dir", str(work / mode / "serving" / contract.MODEL_NAME)]
    if mode == "cold":
        args.append("--cold-start")
    start = time.time()
    subprocess.run(args, check=False, stdout=subprocess.DEVNULL)
    return time.time() - start


def latest(work: Path, mode: str
           ) -> tuple[run_summary.RunSummary, str, standard_artifacts.Examples]:
    """The latest run's summary, the candidate's serving folder and the Examples artifact."""
    metadata = str(work / mode / "tfx" / "metadata.sqlite")
    summary = run_summary.summarize_latest_run(metadata)
    store = run_summary.open_store(metadata)
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
    outputs = run_summary.node_outputs(store, run.id)
    model = run_summary._output(outputs, TRAINER_ID, "Model")
    examples = standard_artifacts.Examples()
    examples.set_mlmd_artifact(run_summary._output(outputs, EXAMPLE_GEN_ID, "Examples"))
    return summary, os.path.join(model.uri, "Format-Serving"), examples


def eval_errors(model_dir: str, examples) -> tuple[np.ndarray, np.ndarray]:
    """(user id, squared error) of every eval-split rating, from serving_default as the
    Evaluator calls it (the tf.Example with its timestamp)."""
    import tensorflow as tf

    predict = tf.saved_model.load(model_dir).signatures[contract.SERVING_DEFAULT]
    pattern = os.path.join(examples.uri, "Split-eval", "*")
    spec = {features.USER_ID: tf.io.FixedLenFeature([], tf.int64),
            features.RATING: tf.io.FixedLenFeature([], tf.float32)}
    users, errors = [], []
    for batch in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern),
                                         compression_type="GZIP").batch(4096):
        parsed = tf.io.parse_example(batch, spec)
        rating = predict(examples=batch)[contract.RATING].numpy().reshape(-1)
        users.append(parsed[features.USER_ID].numpy())
        errors.append((rating - parsed[features.RATING].numpy()) ** 2)
    return np.concatenate(users), np.concatenate(errors)


def paired(models: dict[str, str], examples) -> dict[str, str]:
    """Warm - cold on one eval split: RMSE and NDCG@10 changes with their intervals."""
    errors = {m: eval_errors(d, examples) for m, d in models.items()}
    users, index = np.unique(errors["warm"][0], return_inverse=True)
    counts = np.bincount(index)
    sums = {m: np.bincount(index, weights=e[1]) for m, e in errors.items()}
    rmse = bootstrap.error_change(counts, sums["warm"], sums["cold"], True, SAMPLES, CONFIDENCE,
                                  SEED)
    train, eval_ = (topk.read_ratings(examples, s) for s in ("train", "eval"))
    eval_users = topk.eval_users(train, eval_)
    ndcg = {m: ranking_metrics.per_user(
        topk.recommend_lists(d, eval_users.user_ids, 10), eval_users.relevant, 10)["ndcg"]
        for m, d in models.items()}
    change = bootstrap.mean_change(ndcg["warm"], ndcg["cold"], SAMPLES, CONFIDENCE, SEED)
    return {"rmse_change": rmse.describe(), "ndcg_change": change.describe(),
            "ndcg_users": str(len(eval_users.user_ids))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=configs.DATA_HOME / configs.DATASET)
    parser.add_argument("--spans", type=int, default=4)
    parser.add_argument("--work", type=Path, required=True, help="a scratch folder (emptied)")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    cut = args.work / "all"
    sizes = spans.cut(args.data_dir, cut, args.spans)
    for mode in MODES:
        (args.work / mode / "data").mkdir(parents=True)
        shutil.copy(cut / spans.MOVIES_FILE, args.work / mode / "data" / spans.MOVIES_FILE)
    rows = []
    for span in range(1, args.spans + 1):
        row: dict = {"span": span, "ratings": sizes[span - 1]}
        models = {}
        for mode in MODES:
            shutil.copytree(spans.span_dir(cut, span), spans.span_dir(args.work / mode / "data",
                                                                      span))
            row[f"{mode}_run_s"] = round(run_pipeline(args.work, mode), 1)
            summary, models[mode], examples = latest(args.work, mode)
            choices = summary.training_choices or {}
            row[f"{mode}_trainer_s"] = round(summary.components.get(TRAINER_ID, ("", 0))[1], 1)
            row[f"{mode}_rmse"] = summary.metrics.get("overall", {}).get(results.RMSE)
            row[f"{mode}_ndcg"] = (summary.top_k.value(results.CANDIDATE, topk.OVERALL,
                                                       results.NDCG) if summary.top_k else None)
            row[f"{mode}_pushed"] = bool(summary.pushed_to)
            row[f"{mode}_epochs"] = choices.get("rating_epochs")
            start = choices.get("warm_start") or {}
            row[f"{mode}_start"] = "warm" if start.get("kept") else start.get("reason", "cold")
        row.update(paired(models, examples))
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.work / "results.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
