"""Accuracy of our models against classic baselines on published MovieLens protocols.

Trains the project's own model code (models.trainer.train, as the TFX Trainer calls it) on
ml-latest-small split three ways, next to the global mean, bias baselines and Surprise's SVD with
the tuned settings, over several seeds; writes bench/results/accuracy.json and the table in
docs/benchmarks.md.

    .venv/bin/python -m bench.accuracy                       # everything, 3 seeds (~20 min here)
    .venv/bin/python -m bench.accuracy --protocols rand90 --seeds 0 --models mf \\
        --hparams '{"mf": {"embedding_dim": 64}}' --no-write  # one quick experiment

Protocols (ratings.csv in file order):
  time80  train on timestamps before the 80th percentile, test on the rest (as our ExampleGen's
          time split; the original Keras article's protocol). Reports MAE and RMSE.
  rand90  sklearn train_test_split(test_size=0.1, random_state=42) (the recohut Keras tutorial).
  rand80  np.random.seed(7); mask = np.random.rand(n) < 0.8 trains ("Exploring Recommender
          Systems").
The split is fixed by the protocol; the seeds vary model initialisation and shuffling.

With --served, our models' test predictions are those of the exported model's serving_default
(models/export.py ServingModule, in process: the code the SavedModel's signature runs) on
serialized tf.Examples of each test rating's user_id, movie_id and timestamp, as the pipeline's
Evaluator sends them; each run also prints how far they are from the in-process predictions.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench import docs  # noqa: E402
from components.movielens_example_gen.parsing import parse_year  # noqa: E402
from models import features  # noqa: E402
from models.hparams import tuned  # noqa: E402
from pipeline import configs  # noqa: E402

REPO = configs.REPO_ROOT

PROTOCOLS = ("time80", "rand90", "rand80")
MODELS = ("global_mean", "baseline_only", "bias", "svd", "mf", "neural")
MODEL_LABELS = {
    "global_mean": "global mean",
    "baseline_only": "user/movie bias (Surprise BaselineOnly, ALS)",
    "bias": "user/movie bias (ours, model_type=bias)",
    "svd": "Surprise SVD (tuned)",
    "mf": "ours: biased MF (model_type=mf)",
    "neural": "ours: neural (model_type=neural)",
}
# The issue's tuned Surprise SVD; random_state is the seed.
SVD_SETTINGS = dict(n_factors=50, n_epochs=40, lr_all=0.007, reg_all=0.06)
RESULTS = REPO / "bench" / "results" / "accuracy.json"


def load(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    ratings = pd.read_csv(data_dir / "ratings.csv")
    movies = pd.read_csv(data_dir / "movies.csv")
    return ratings, movies


def split(ratings: pd.DataFrame, protocol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    if protocol == "time80":
        cutoff = np.quantile(ratings.timestamp.to_numpy(), 0.8)
        is_train = ratings.timestamp.to_numpy() < cutoff
        return ratings[is_train], ratings[~is_train]
    if protocol == "rand90":
        from sklearn.model_selection import train_test_split

        return train_test_split(ratings, test_size=0.1, random_state=42)
    if protocol == "rand80":
        np.random.seed(7)
        mask = np.random.rand(len(ratings)) < 0.8
        return ratings[mask], ratings[~mask]
    raise ValueError(f"unknown protocol {protocol!r}")


@dataclasses.dataclass
class Encoded:
    """Train and test columns in the Transform's output format (models/preprocessing.py)."""

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    user_ids: list[int]  # the raw userId of each user index (Transform's user vocabulary)
    num_movies: int

    @property
    def num_users(self) -> int:
        return len(self.user_ids)


def encode(train: pd.DataFrame, test: pd.DataFrame, movies: pd.DataFrame) -> Encoded:
    """Mirrors preprocessing_fn: vocabularies from the train split (unseen ids -> OOV index
    = vocabulary size), multi-hot genres, year z-scored over the train ratings, scaled label."""
    users = {u: i for i, u in enumerate(sorted(train.userId.unique()))}
    items = {m: i for i, m in enumerate(sorted(train.movieId.unique()))}
    genre_index = {g: i for i, g in enumerate(features.GENRE_NAMES)}
    hot = np.zeros((len(movies), len(features.GENRE_NAMES)), np.float32)
    for row, genres in enumerate(movies.genres):
        for g in genres.split("|"):
            if g in genre_index:
                hot[row, genre_index[g]] = 1.0
    years = np.array([parse_year(t) or np.nan for t in movies.title], np.float64)
    movie_row = pd.Series(np.arange(len(movies)), index=movies.movieId)
    train_years = years[movie_row[train.movieId].to_numpy()]
    mean, std = np.nanmean(train_years), np.nanstd(train_years)

    def columns(df: pd.DataFrame) -> dict[str, np.ndarray]:
        rows = movie_row[df.movieId].to_numpy()
        year = np.nan_to_num((years[rows] - mean) / max(std, 1e-6), nan=0.0)
        return {
            features.USER_IDX: df.userId.map(users).fillna(len(users)).to_numpy(np.int64),
            features.MOVIE_IDX: df.movieId.map(items).fillna(len(items)).to_numpy(np.int64),
            features.GENRES_XF: hot[rows],
            features.YEAR_XF: year.astype(np.float32),
            features.LABEL_XF: features.scale_rating(df.rating.to_numpy(np.float32)),
            # When each rating was given: what the models' user drift is fitted on (train) and
            # evaluated at (test).
            features.TIMESTAMP: df.timestamp.to_numpy(np.int64),
        }

    return Encoded(columns(train), columns(test), [int(u) for u in users], len(items))


def errors(predicted: np.ndarray, actual: np.ndarray, known_user: np.ndarray) -> dict[str, float]:
    """RMSE and MAE overall, and MAE on the test ratings of users with / without training
    ratings (on time80 most test users are new: only the movie side can help them)."""
    error = np.asarray(predicted, np.float64) - actual
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error))),
            "mae_known_users": float(np.mean(np.abs(error[known_user]))),
            "mae_new_users": (float(np.mean(np.abs(error[~known_user])))
                              if (~known_user).any() else float("nan"))}


def run_surprise(name: str, train: pd.DataFrame, test: pd.DataFrame, seed: int):
    import surprise

    reader = surprise.Reader(rating_scale=(features.RATING_MIN, features.RATING_MAX))
    trainset = surprise.Dataset.load_from_df(
        train[["userId", "movieId", "rating"]], reader).build_full_trainset()
    if name == "svd":
        algo = surprise.SVD(random_state=seed, **SVD_SETTINGS)
    else:
        algo = surprise.BaselineOnly(bsl_options={"method": "als"}, verbose=False)
    start = time.perf_counter()
    algo.fit(trainset)
    seconds = time.perf_counter() - start
    predicted = [algo.predict(u, m).est for u, m in zip(test.userId, test.movieId, strict=True)]
    return predicted, seconds


def run_ours(model_type: str, encoded: Encoded, seed: int, overrides: dict):
    """(the model's predicted stars of the test ratings, its train seconds, its HParams, the
    model)."""
    from models import trainer

    hp = tuned(model_type, seed=seed, **overrides)
    start = time.perf_counter()
    # As the Trainer's run_fn: a time split's drift is chosen for the future.
    by_time = trainer.is_time_split(encoded.train, encoded.test)
    model = trainer.train(hp, encoded.num_users, encoded.num_movies, encoded.train, verbose=0,
                          time_split=by_time)
    seconds = time.perf_counter() - start
    return trainer.predict_stars(model, encoded.test), seconds, hp, model


def serve(model, encoded: Encoded, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """The test ratings' stars through serving_default: a ServingModule (no retrieval stage,
    which serving_default does not use) built as the Trainer builds it, called on serialized
    tf.Examples of each test rating's user_id, movie_id and timestamp."""
    import tensorflow as tf

    from models import contract, export
    from models.base import user_history
    from models.catalogue import Catalogue

    def catalogue_columns(df: pd.DataFrame, columns: dict[str, np.ndarray]) -> dict:
        return {features.MOVIE_ID_PASSTHROUGH: df.movieId.to_numpy(np.int64),
                features.TITLE_PASSTHROUGH: np.full(len(df), b"", object),
                **{k: columns[k] for k in (features.MOVIE_IDX, features.GENRES_XF,
                                           features.YEAR_XF)}}

    movies = Catalogue.from_columns(catalogue_columns(train, encoded.train),
                                    catalogue_columns(test, encoded.test))
    history = user_history(encoded.train[features.USER_IDX], encoded.train[features.MOVIE_IDX],
                           encoded.num_users)
    module = export.ServingModule(model, encoded.user_ids, encoded.num_movies, movies, history)
    examples = [contract.tf_example({contract.USER_ID: u, contract.MOVIE_ID: m,
                                     contract.TIMESTAMP: t}).SerializeToString()
                for u, m, t in zip(test.userId, test.movieId, test.timestamp, strict=True)]
    batch = 8192
    return np.concatenate([
        module.serve_examples(tf.constant(examples[i:i + batch]))[contract.RATING].numpy()
        for i in range(0, len(examples), batch)])


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and spread (min..max) per protocol and model."""
    rows = []
    for protocol in PROTOCOLS:
        for model in MODELS:
            mine = [r for r in runs if r["protocol"] == protocol and r["model"] == model]
            if not mine:
                continue
            row = {"protocol": protocol, "model": model, "seeds": len(mine)}
            for key in ("rmse", "mae", "mae_known_users", "mae_new_users", "train_seconds"):
                values = np.array([r[key] for r in mine])
                row[key] = float(values.mean())
                row[f"{key}_spread"] = float(values.max() - values.min())
            rows.append(row)
    return rows


def markdown(summary: list[dict], meta: dict) -> str:
    lines = [
        f"Measured {meta['date']} on commit `{meta['commit']}`, {meta['machine']}, with "
        f"`{meta['command']}`. Mean over seeds {meta['seeds']}; ± is the spread (max - min). "
        "Train time is the model's fit alone (data loaded, TensorFlow imported)."
        + (" Our models' predictions are serving_default's, on tf.Examples with each test "
           "rating's timestamp (`--served`)." if meta.get("served") else ""),
        "",
        "| protocol | model | RMSE | MAE | MAE, known users | MAE, new users | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        new = "–" if np.isnan(r["mae_new_users"]) else f"{r['mae_new_users']:.4f}"
        lines.append(
            f"| {r['protocol']} | {MODEL_LABELS[r['model']]} | {r['rmse']:.4f} ± "
            f"{r['rmse_spread']:.4f} | {r['mae']:.4f} ± {r['mae_spread']:.4f} | "
            f"{r['mae_known_users']:.4f} | {new} | {r['train_seconds']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path,
                        default=configs.DATA_HOME / "ml-latest-small",
                        help="ml-latest-small folder (make data puts it here)")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--hparams", default="{}",
                        help='JSON overrides per model type, e.g. \'{"neural": {"dropout": 0.3}}\'')
    parser.add_argument("--served", action="store_true",
                        help="score our models through serving_default on tf.Examples with "
                             "each rating's timestamp (see above)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    protocols = [p for p in args.protocols.split(",") if p]
    models = [m for m in args.models.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = json.loads(args.hparams)
    for name in protocols + models:
        if name not in PROTOCOLS + MODELS:
            parser.error(f"unknown protocol or model {name!r}")
    if not (args.data_dir / "ratings.csv").exists():
        from pipeline.fetch_data import ensure_data

        args.data_dir = Path(ensure_data(dataset="ml-latest-small"))

    ratings, movies = load(args.data_dir)
    runs, hparams_used = [], {}
    for protocol in protocols:
        train, test = split(ratings, protocol)
        encoded = encode(train, test, movies)
        actual = test.rating.to_numpy(np.float64)
        known_user = test.userId.isin(train.userId).to_numpy()
        print(f"{protocol}: {len(train)} train, {len(test)} test ratings, "
              f"{known_user.mean():.1%} of them by users with training ratings", flush=True)
        for model in models:
            for seed in seeds:
                served = {}  # with --served: how far the served predictions are from ours
                drift = ""  # the user drift our Trainer chose on its validation holdout
                if model == "global_mean":
                    predicted, seconds = np.full(len(test), train.rating.mean()), 0.0
                elif model in ("svd", "baseline_only"):
                    predicted, seconds = run_surprise(model, train, test, seed)
                else:
                    predicted, seconds, hp, trained = run_ours(model, encoded, seed,
                                                               overrides.get(model, {}))
                    hparams_used[model] = {k: v for k, v in hp.to_config().items()
                                           if k != "seed"}
                    if trained.drift_choice is not None:
                        choice = trained.drift_choice
                        served["drift"] = (f"{choice.window}/{choice.shrinkage:g}"
                                           if choice.window else "off")
                        drift = f", drift {served['drift']}"
                    if args.served:
                        in_process, predicted = predicted, serve(trained, encoded, train, test)
                        served["served_max_difference"] = float(
                            np.abs(predicted - in_process).max())
                        print(f"  {model:14s} seed {seed}: served - in-process: at most "
                              f"{served['served_max_difference']:.2e} stars", flush=True)
                result = errors(predicted, actual, known_user)
                runs.append({"protocol": protocol, "model": model, "seed": seed,
                             "train_seconds": seconds, **result, **served})
                print(f"  {model:14s} seed {seed}: RMSE {result['rmse']:.4f} "
                      f"MAE {result['mae']:.4f} ({seconds:.1f} s{drift})", flush=True)
                if model in ("global_mean", "baseline_only"):
                    break  # deterministic: one seed is enough
    summary = summarize(runs)
    meta = {
        "date": datetime.date.today().isoformat(), "commit": docs.git_commit(),
        "machine": f"{os.cpu_count()}-core {platform.machine()} ({platform.platform()})",
        "command": "python -m bench.accuracy " + " ".join(sys.argv[1:]),
        "seeds": seeds, "served": args.served, "hparams": hparams_used,
    }
    text = markdown(summary, meta)
    print(text)
    if not args.no_write:
        docs.write_results(RESULTS, {"meta": meta, "summary": summary, "runs": runs},
                           "accuracy", text, heading="## Accuracy (bench/accuracy.py)")


if __name__ == "__main__":
    main()
