"""Training throughput: examples per second of each model's training loop against Surprise's SVD.

    python -m bench.throughput                 # every model, 5 epochs each
    make bench-throughput BENCH_ARGS="--epochs 8"

Same data for all, in the same process: ml-latest-small's time split (bench/accuracy.py's
time80, the pipeline's split: ratings before the 80th timestamp percentile train), encoded as
the Transform does. Each of our models is built and fed as models/trainer.py trains it, with the
tuned hyper-parameters (models/hparams.py tuned): the rating models (bias, mf, neural) by
trainer.build_model and trainer.make_optimizer, compiled with fitting.steps_per_execution, on
the fit part of trainer's hold-out, through arrays.to_dataset with the configured batch size and
shuffling; the retrieval model (configs.HPARAMS.retrieval) by
retrieval_training.build_retrieval_model, as retrieval_training.train_retrieval builds it (its
first fit; the refit on all pairs runs the same loop).
Only the training loop is timed, per epoch with a Keras callback, without validation passes; the
first epoch (tracing) is reported apart from the steady epochs. Surprise's SVD
(bench/accuracy.py's tuned settings, and with our MF's 64 factors) is timed over its whole fit,
divided by its epochs.

Then "where MF's epoch goes": the same MF and optimizer with other input pipelines and Keras
settings, to find what would make models/trainer.py's loop faster (docs/benchmarks.md).
Writes bench/results/throughput.json and the "throughput" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import accuracy, docs  # noqa: E402
from models import arrays, features, fitting, retrieval_training, trainer  # noqa: E402
from models.base import user_history  # noqa: E402
from models.hparams import RetrievalHParams, tuned  # noqa: E402
from models.retrieval import RetrievalModel  # noqa: E402
from pipeline import configs, fetch_data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "throughput.json"
RATING_MODELS = ("bias", "mf", "neural")
SAMPLED_NEGATIVES = 2048  # the retrieval row with sampled negatives: a quarter of the catalogue


class EpochTimer(tf.keras.callbacks.Callback):
    """Wall seconds of each training epoch."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def timed_fit(model: tf.keras.Model, dataset: tf.data.Dataset, epochs: int, examples: int,
              batch_size: int) -> dict:
    timer = EpochTimer()
    model.fit(dataset, epochs=epochs, callbacks=[timer], verbose=0)
    steady = statistics.median(timer.seconds[1:]) if epochs > 1 else timer.seconds[0]
    return {"examples": examples, "batch_size": batch_size, "epochs": epochs,
            "first_epoch_s": round(timer.seconds[0], 3), "epoch_s": round(steady, 3),
            "examples_per_s": round(examples / steady),
            "epoch_seconds": [round(s, 3) for s in timer.seconds]}


def rating_model(hp, encoded: accuracy.Encoded) -> tuple[tf.keras.Model, dict[str, np.ndarray]]:
    """The model trainer.train fits for hp, compiled as it compiles it, and its fit data."""
    tf.keras.utils.set_random_seed(hp.seed)
    fit_data, _ = arrays.holdout(encoded.train, hp.validation_fraction, hp.seed)
    global_mean = float(np.clip(fit_data[features.LABEL_XF].mean(), 0.01, 0.99))
    history = user_history(encoded.train[features.USER_IDX], encoded.train[features.MOVIE_IDX],
                           encoded.num_users)
    model = trainer.build_model(hp, encoded.num_users, encoded.num_movies, global_mean, history)
    model.compile(optimizer=trainer.make_optimizer(hp),
                  steps_per_execution=fitting.steps_per_execution(
                      len(fit_data[features.LABEL_XF]), hp.batch_size))
    return model, fit_data


def time_rating_model(name: str, encoded: accuracy.Encoded, epochs: int) -> dict:
    hp = tuned(name)
    model, fit_data = rating_model(hp, encoded)
    n = len(fit_data[features.LABEL_XF])
    return timed_fit(model, arrays.to_dataset(fit_data, hp.batch_size, shuffle_seed=hp.seed),
                     epochs, n, hp.batch_size)


@dataclasses.dataclass
class Retrieval:
    """The retrieval model as retrieval_training.train_retrieval builds it, with its data."""

    model: RetrievalModel
    fit: dict[str, np.ndarray]  # the training pairs
    val: dict[str, np.ndarray]  # the held-out pairs of its validation
    batch_size: int  # trainer's: hp.batch_size, smaller on small data


def retrieval_model(encoded: accuracy.Encoded, hp: RetrievalHParams | None = None) -> Retrieval:
    hp = hp or configs.HPARAMS.retrieval
    tf.keras.utils.set_random_seed(hp.seed)
    pairs = {c: encoded.train[c] for c in (features.USER_IDX, features.MOVIE_IDX)}
    fit, val = arrays.holdout(pairs, hp.validation_fraction, hp.seed)
    users, movies = fit[features.USER_IDX], fit[features.MOVIE_IDX]
    batch_size = min(hp.batch_size, max(1, len(users) // hp.min_steps_per_epoch))
    model = retrieval_training.build_retrieval_model(hp, encoded.num_users, encoded.num_movies,
                                                     users, movies, batch_size)
    return Retrieval(model, fit, val, batch_size)


def time_retrieval(encoded: accuracy.Encoded, epochs: int, objective: str,
                   sampled_negatives: int = 0) -> dict:
    """The retrieval model's training loop as retrieval_training.train_retrieval runs it with this
    objective (an epoch passes every training interaction: per pair, or per user as input or
    target); with sampled_negatives ("pairs" only), each step scores that many random movies
    instead of the catalogue (a RetrievalHParams option: the epoch's cost no longer grows with
    the catalogue)."""
    hp = dataclasses.replace(configs.HPARAMS.retrieval, objective=objective,
                             sampled_negatives=sampled_negatives)
    r = retrieval_model(encoded, hp)
    interactions = len(r.fit[features.USER_IDX])
    if objective == "users":
        batches = retrieval_training.user_batches(r.fit[features.USER_IDX], hp)
        result = timed_fit(r.model, batches, epochs, interactions, hp.users_per_batch)
    else:
        result = timed_fit(r.model, arrays.to_dataset(r.fit, r.batch_size, shuffle_seed=hp.seed),
                           epochs, interactions, r.batch_size)
    return {**result, "catalogue": encoded.num_movies, "embedding_dim": hp.embedding_dim,
            "objective": objective, "sampled_negatives": sampled_negatives}


def time_svd(train, n_factors: int | None = None) -> dict:
    import surprise

    settings = dict(accuracy.SVD_SETTINGS, **({"n_factors": n_factors} if n_factors else {}))
    reader = surprise.Reader(rating_scale=(features.RATING_MIN, features.RATING_MAX))
    trainset = surprise.Dataset.load_from_df(train[["userId", "movieId", "rating"]],
                                             reader).build_full_trainset()
    algo = surprise.SVD(random_state=0, **settings)
    start = time.perf_counter()
    algo.fit(trainset)
    seconds = (time.perf_counter() - start) / settings["n_epochs"]
    return {"examples": trainset.n_ratings, "batch_size": 1, "epochs": settings["n_epochs"],
            "epoch_s": round(seconds, 3), "examples_per_s": round(trainset.n_ratings / seconds),
            "n_factors": settings["n_factors"]}


# --- Where MF's epoch goes: the same model and optimizer, other loops ------------------------

def shuffled_by_example(columns: dict[str, np.ndarray], batch_size: int, seed: int
                        ) -> tf.data.Dataset:
    """The batches of arrays.to_dataset(columns, batch_size, seed) before it shuffled by a
    per-epoch permutation: every example (a dict of five tensors) through a shuffle buffer of
    the whole data set, one at a time."""
    n = len(next(iter(columns.values())))
    return (tf.data.Dataset.from_tensor_slices(columns)
            .shuffle(n, seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def input_seconds(dataset: tf.data.Dataset, epochs: int) -> float:
    """Median seconds of iterating the dataset alone (no model), after the first pass."""
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for _ in dataset:
            pass
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[1:])


def mf_variants(encoded: accuracy.Encoded, epochs: int) -> list[dict]:
    """MF's epoch with trainer's loop, its input alone, and the loop changed one thing at a
    time towards what is fastest."""
    hp = tuned("mf")
    columns = {c: encoded.train[c] for c in trainer.COLUMNS}
    fit_data, _ = arrays.holdout(columns, hp.validation_fraction, hp.seed)
    n = len(fit_data[features.LABEL_XF])
    steps = -(-n // hp.batch_size)
    rows = [{"variant": "input alone: shuffled by example (trainer's input before)",
             "epoch_s": input_seconds(shuffled_by_example(fit_data, hp.batch_size, hp.seed),
                                      epochs)},
            {"variant": "input alone: arrays.to_dataset as trainer calls it (a permutation "
                        "per epoch)",
             "epoch_s": input_seconds(arrays.to_dataset(fit_data, hp.batch_size,
                                                      shuffle_seed=hp.seed), epochs)}]
    # The floor of the step itself: the first epoch's batches kept in memory (cache) and
    # replayed, so later epochs cost no input work.
    in_memory = arrays.to_dataset(fit_data, hp.batch_size, shuffle_seed=hp.seed).cache()
    adam = lambda: trainer.make_optimizer(hp)  # noqa: E731
    spe = fitting.steps_per_execution(n, hp.batch_size)
    variants: list[tuple[str, Callable[[], tf.data.Dataset], int, Callable, int]] = [
        ("trainer's loop before: shuffled by example, batch 1024, Adam, one call per step",
         lambda: shuffled_by_example(fit_data, hp.batch_size, hp.seed), hp.batch_size, adam, 1),
        ("not shuffled: the shuffle buffer's cost",
         lambda: arrays.to_dataset(fit_data, hp.batch_size), hp.batch_size, adam, 1),
        ("arrays.to_dataset's permutation, one call per step",
         lambda: arrays.to_dataset(fit_data, hp.batch_size, shuffle_seed=hp.seed),
         hp.batch_size, adam, 1),
        (f"shuffled by example, steps_per_execution={steps}",
         lambda: shuffled_by_example(fit_data, hp.batch_size, hp.seed), hp.batch_size, adam,
         steps),
        (f"trainer's loop now: the permutation + steps_per_execution={spe}",
         lambda: arrays.to_dataset(fit_data, hp.batch_size, shuffle_seed=hp.seed),
         hp.batch_size, adam, spe),
        (f"the step alone: batches cached in memory, steps_per_execution={spe}",
         lambda: in_memory, hp.batch_size, adam, spe),
        ("the step alone with Adagrad (sparse updates) instead of Adam",
         lambda: in_memory, hp.batch_size,
         lambda: tf.keras.optimizers.Adagrad(hp.learning_rate), spe),
        ("the permutation + steps_per_execution=8, batch 8192",
         lambda: arrays.to_dataset(fit_data, 8192, shuffle_seed=hp.seed), 8192, adam, 8),
    ]
    for label, dataset, batch_size, optimizer, steps_per_execution in variants:
        model, _ = rating_model(hp, encoded)
        model.compile(optimizer=optimizer(), steps_per_execution=steps_per_execution)
        result = timed_fit(model, dataset(), epochs, n, batch_size)
        rows.append({"variant": label, "steps_per_execution": steps_per_execution, **result})
        print(f"  mf, {label}: {result['epoch_s']:.3f} s/epoch, "
              f"{result['examples_per_s']:,} examples/s", flush=True)
    for row in rows:
        row.setdefault("examples_per_s", round(n / row["epoch_s"]))
    return rows


def markdown(results: dict) -> str:
    meta, models = results["meta"], results["models"]
    svd = models["svd"]["examples_per_s"]
    lines = [
        f"`{meta['command']}` on {meta['machine']}, {meta['date']} at commit {meta['commit']}; "
        f"load average {meta['load_before'][0]:.1f} before, {meta['load_after'][0]:.1f} after "
        "(the machine's 2 cores were shared: absolute times are inflated, the ratios within "
        "one run less so). Data: ml-latest-small's time split, "
        f"{meta['train_ratings']:,} training ratings; ours train on the fit part of trainer's "
        "hold-out. Per epoch: the median of the epochs after the first; TensorFlow may use "
        "both cores, Surprise one.",
        "",
        "| model | examples / epoch | batch | first epoch s | epoch s | examples / s "
        "| vs Surprise SVD |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in (("bias", "ours: bias (model_type=bias)"),
                       ("mf", "ours: biased MF (model_type=mf)"),
                       ("neural", "ours: neural (model_type=neural)"),
                       ("retrieval", "ours: retrieval, per-user objective (the default; "
                                     "full-catalogue softmax, "
                                     f"{models['retrieval']['catalogue']:,} movies, "
                                     f"{models['retrieval']['embedding_dim']}-d; batch: users)"),
                       ("retrieval_pairs", "ours: retrieval, objective=pairs"),
                       ("retrieval_sampled", "ours: retrieval, objective=pairs, "
                                             f"sampled_negatives={SAMPLED_NEGATIVES}"),
                       ("svd", f"Surprise SVD ({models['svd']['n_factors']} factors, tuned)"),
                       ("svd64", f"Surprise SVD ({models['svd64']['n_factors']} factors)")):
        if key not in models:  # results of an earlier version of this script
            continue
        r = models[key]
        first = f"{r['first_epoch_s']:.2f}" if "first_epoch_s" in r else "–"
        lines.append(f"| {label} | {r['examples']:,} | {r['batch_size']:,} | {first} | "
                     f"{r['epoch_s']:.3f} | {r['examples_per_s']:,} | "
                     f"{r['examples_per_s'] / svd:.2f}x |")
    if not results["mf_variants"]:
        return "\n".join(lines) + "\n"
    lines += ["", "Where biased MF's epoch goes: its input pipeline alone, then the same model "
              "and hyper-parameters with one change at a time (bench/throughput.py "
              "mf_variants):", "",
              "| MF loop | epoch s | examples / s | vs trainer's loop before |",
              "|---|---:|---:|---:|"]
    base = next(r["examples_per_s"] for r in results["mf_variants"]
                if r["variant"].startswith("trainer's loop before"))
    for r in results["mf_variants"]:
        lines.append(f"| {r['variant']} | {r['epoch_s']:.3f} | {r['examples_per_s']:,} | "
                     f"{r['examples_per_s'] / base:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="ml-latest-small (default: fetched)")
    parser.add_argument("--epochs", type=int, default=5,
                        help="epochs timed per model, the first reported apart (default 5)")
    parser.add_argument("--no-variants", action="store_true",
                        help="skip the MF loop variants")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2: the first epoch is reported apart")
    data_dir = fetch_data.ensure_data(args.data_dir, dataset="ml-latest-small")
    ratings, movies = accuracy.load(Path(data_dir))
    train, test = accuracy.split(ratings, "time80")
    encoded = accuracy.encode(train, test, movies)
    load_before = os.getloadavg()
    models: dict[str, dict] = {}
    for name in RATING_MODELS:
        models[name] = time_rating_model(name, encoded, args.epochs)
        print(f"{name}: {models[name]}", flush=True)
    models["retrieval"] = time_retrieval(encoded, args.epochs, "users")
    models["retrieval_pairs"] = time_retrieval(encoded, args.epochs, "pairs")
    models["retrieval_sampled"] = time_retrieval(encoded, args.epochs, "pairs",
                                                 SAMPLED_NEGATIVES)
    print(f"retrieval: {models['retrieval']}\npairs: {models['retrieval_pairs']}\n"
          f"sampled: {models['retrieval_sampled']}", flush=True)
    models["svd"] = time_svd(train)
    models["svd64"] = time_svd(train, n_factors=tuned("mf").embedding_dim)
    print(f"svd: {models['svd']}\nsvd64: {models['svd64']}", flush=True)
    variants = [] if args.no_variants else mf_variants(encoded, args.epochs)
    results = {
        "meta": {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                 "commit": docs.git_commit(),
                 "machine": f"{os.cpu_count()} cores ({docs.cpu_model()}), Python "
                            f"{platform.python_version()}, TensorFlow {tf.__version__}",
                 "command": " ".join(["python -m bench.throughput", *sys.argv[1:]]),
                 "train_ratings": len(train), "load_before": list(load_before),
                 "load_after": list(os.getloadavg()),
                 "hparams": {k: dataclasses.asdict(tuned(k))
                             for k in RATING_MODELS}},
        "models": models, "mf_variants": variants,
    }
    text = markdown(results)
    print(text)
    if not args.no_write:
        docs.write_results(RESULTS, results, "throughput", text,
                           heading="## Training throughput (bench/throughput.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
