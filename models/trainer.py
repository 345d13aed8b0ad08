"""The Trainer's `run_fn`: trains the configured rating model on the ExampleGen's examples as
Transform's graph transforms them (read once, models/arrays.py), then the first stage of
`recommend` (models/item_item_training.py or models/retrieval_training.py), and exports both.
Given TFX's `base_model` (the serving model, in continuous training), the rating model starts
from its weights (models/warm_start.py); the item-item stage is closed form and chooses its
settings again.

Deterministic: the same data, code, configuration and seed give bit-identical weights (rows in a
canonical order, seeded holdouts and shuffles, TensorFlow's op determinism;
models/fitting.py's `seed_everything`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_recommenders.experimental.optimizers import CompositeOptimizer
from tfx.components.trainer.fn_args_utils import FnArgs

from models import (
    arrays,
    catalogue,
    export,
    features,
    identity,
    memory,
    new_users,
    progress,
    warm_start,
)
from models.base import RatingModel, UserDrift, registered, user_history
from models.contract import CHOICES_FILE, HPARAMS_KEY
from models.fitting import seed_everything, steps_per_execution
from models.hparams import HParams
from models.item_item_training import train_item_item
from models.mf import BiasBaseline, BiasedMF
from models.neural import NeuralRecommender
from models.optimizers import LazyAdam
from models.retrieval_training import train_retrieval

_LOG = logging.getLogger(__name__)
COLUMNS = (*features.MODEL_INPUTS, features.LABEL_XF)
# Read with them: when each rating was given, which the users' drift is fitted on (and evaluated
# at, on the eval split); served, serving_default reads it from the tf.Example when given, and
# the other signatures take "now".
TIME_COLUMNS = (*COLUMNS, features.TIMESTAMP)
# The training rows' canonical order (arrays.sort_rows): MovieLens has one rating per user and
# movie; the time and the label break ties in other data.
ROW_ORDER = (features.USER_IDX, features.MOVIE_IDX, features.TIMESTAMP, features.LABEL_XF)

# HParams.model_type and .optimizer name one of these (hparams.MODEL_TYPES, hparams.OPTIMIZERS);
# an unknown name is an error here too, never a silent fallback.
MODELS: dict[str, type[RatingModel]] = {
    "bias": BiasBaseline,
    "mf": BiasedMF,
    "neural": NeuralRecommender,
}
OPTIMIZERS: dict[str, Callable[[float], tf.keras.optimizers.Optimizer]] = {
    "adam": tf.keras.optimizers.Adam,
    "lazy_adam": LazyAdam,
    "adagrad": tf.keras.optimizers.Adagrad,
    "sgd": tf.keras.optimizers.SGD,
}


def build_model(hp: HParams, num_users: int, num_movies: int, global_mean: float,
                history: tf.RaggedTensor | None = None) -> RatingModel:
    """The model of hp.model_type for vocabularies of the given sizes (OOV excluded); `history`
    (see base.user_history) is used when hp.implicit."""
    model_class = registered(MODELS, hp.model_type, "model_type")
    return model_class.from_hparams(hp, num_users, num_movies, global_mean=global_mean,
                                    history=history if hp.implicit else None)


# The same optimizers in tf_keras' legacy form, which tfrs' CompositeOptimizer combines.
LEGACY_OPTIMIZERS: dict[str, Callable[[float], tf.keras.optimizers.legacy.Optimizer]] = {
    "adam": tf.keras.optimizers.legacy.Adam,
    "adagrad": tf.keras.optimizers.legacy.Adagrad,
    "sgd": tf.keras.optimizers.legacy.SGD,
}


def is_table(variable: tf.Variable) -> bool:
    """Whether a variable is an id table, which a batch reads a few rows of (IndexedSlices)."""
    return "embeddings" in variable.name or "item_factors" in variable.name


class TablesApart(CompositeOptimizer):
    """hp.table_optimizer for the id tables, hp.optimizer for the rest. `lr` is the rest's, so
    that ReduceLROnPlateau reads and cuts it as with one optimizer."""

    def __init__(self, hp: HParams, model: tf.keras.Model):
        super().__init__([
            (registered(LEGACY_OPTIMIZERS, hp.table_optimizer, "optimizer")(
                hp.table_learning_rate),
             lambda: [v for v in model.trainable_variables if is_table(v)]),
            (registered(LEGACY_OPTIMIZERS, hp.optimizer, "optimizer")(hp.learning_rate),
             lambda: [v for v in model.trainable_variables if not is_table(v)]),
        ])

    @property
    def lr(self) -> tf.Variable:
        return self.optimizers[1].lr


def make_optimizer(hp: HParams, model: tf.keras.Model | None = None
                   ) -> tf.keras.optimizers.Optimizer:
    """hp.optimizer, or with hp.table_optimizer (and the `model` it trains), TablesApart."""
    if hp.table_optimizer:
        if model is None:
            raise ValueError("table_optimizer needs the model whose tables it updates")
        return TablesApart(hp, model)
    return registered(OPTIMIZERS, hp.optimizer, "optimizer")(hp.learning_rate)


class EpochProgress(tf.keras.callbacks.Callback):
    """The rating model's progress line at the end of each epoch (models/progress.py), with the
    epoch's training seconds (its validation pass excluded), which it also keeps in
    `train_seconds` (bench/table_updates.py reads them)."""

    def __init__(self):
        super().__init__()
        self.train_seconds: list[float] = []
        self._start: float | None = None  # set while an epoch trains

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._start is not None:  # fit's validation pass, not a stand-alone evaluate
            self.train_seconds.append(time.perf_counter() - self._start)
            self._start = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        rmse = (logs or {}).get("val_rmse", float("nan"))
        timed = f" ({self.train_seconds[-1]:.1f} s)" if self.train_seconds else ""
        progress.report(f"epoch {epoch + 1}/{self.params['epochs']}: validation RMSE "
                        f"{rmse:.4f} stars{timed}")


def train(hp: HParams, num_users: int, num_movies: int, train_data: dict[str, np.ndarray],
          log_dir: str | None = None, verbose: int = 2, time_split: bool = False,
          start: Callable[[tf.keras.Model], warm_start.WarmStart] | None = None
          ) -> tf.keras.Model:
    """Fits a model on in-memory transformed columns with early stopping on a held-out slice,
    from the weights `start` sets (a warm start, `model.warm_start`) or from scratch; then, with
    hp.drift_windows and a features.TIMESTAMP column, the users' drift (models/base.py,
    UserDrift) chosen on that slice (choose_drift; `time_split`: the eval ratings are newer than
    the training ones) and fitted on all of them; then, with
    hp.new_user_shrinkages, the unknown users' ratings (models/new_users.py). The choices are
    `model.drift_choice` and `model.new_user_choice`."""
    seed_everything(hp.seed)
    timestamps = train_data.get(features.TIMESTAMP)
    fit_data, val_data = arrays.holdout(train_data, hp.validation_fraction, hp.seed)
    fit_times, val_times = fit_data.pop(features.TIMESTAMP, None), val_data.pop(
        features.TIMESTAMP, None)
    train_data = {k: v for k, v in train_data.items() if k != features.TIMESTAMP}
    global_mean = float(np.clip(fit_data[features.LABEL_XF].mean(), 0.01, 0.99))
    # The whole train split's history, as exported (validation pairs' existence included).
    history = user_history(train_data[features.USER_IDX], train_data[features.MOVIE_IDX],
                           num_users)
    model = build_model(hp, num_users, num_movies, global_mean, history)
    model.warm_start = None if start is None else start(model)
    if model.warm_start is not None:
        _LOG.info("Rating model %s", model.warm_start.describe())
    model.compile(optimizer=make_optimizer(hp, model), steps_per_execution=steps_per_execution(
        len(fit_data[features.LABEL_XF]), hp.batch_size))
    epochs = EpochProgress()
    callbacks = [epochs, tf.keras.callbacks.EarlyStopping(
        monitor="val_rmse", mode="min", patience=hp.early_stopping_patience,
        min_delta=hp.early_stopping_min_gain, restore_best_weights=True)]
    if hp.reduce_lr_patience:
        callbacks.append(tf.keras.callbacks.ReduceLROnPlateau(
            monitor="val_rmse", mode="min", factor=1 / 3, patience=hp.reduce_lr_patience,
            min_delta=hp.early_stopping_min_gain))
    if log_dir:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=log_dir))
    start = time.time()
    fitted = model.fit(arrays.to_dataset(fit_data, hp.batch_size, shuffle_seed=hp.seed),
                       validation_data=arrays.to_dataset(val_data, 8192),
                       epochs=hp.max_epochs, callbacks=callbacks, verbose=verbose)
    model.epochs = len(fitted.epoch)
    model.epoch_seconds = epochs.train_seconds
    model.validation_rmse = list(fitted.history.get("val_rmse", []))
    _LOG.info("Trained %s on %d ratings in %d epochs, %.1f s", hp.model_type,
              len(fit_data[features.LABEL_XF]), model.epochs, time.time() - start)
    model.drift_choice = None
    if hp.drift_windows and timestamps is not None:
        model.drift_choice = choose_drift(model, hp, num_users, (fit_data, fit_times),
                                          (val_data, val_times), time_split)
        _LOG.info("User drift: %s", model.drift_choice.describe())
        if model.drift_choice.window:
            model.fit_user_drift(train_data, timestamps, num_users, model.drift_choice.window,
                                 model.drift_choice.shrinkage)
    model.new_user_choice = None
    if hp.new_user_shrinkages:
        choice = new_users.choose(
            train_data[features.USER_IDX], train_data[features.MOVIE_IDX],
            train_data[features.LABEL_XF], timestamps, num_movies, hp.new_user_shrinkages,
            hp.new_user_validation_fraction, hp.new_user_min_ratings, hp.seed)
        _LOG.info("New users: %s", choice.describe())
        model.fit_new_users(train_data, num_users, num_movies, choice.kind, choice.shrinkage)
        model.new_user_choice = choice
    return model


def causal_drift(users: np.ndarray, times: np.ndarray, residuals: np.ndarray,
                 at_users: np.ndarray, at_times: np.ndarray, window: int, shrinkage: float
                 ) -> np.ndarray:
    """UserDrift's offset of each (at_users, at_times) [M] from the user's `window` ratings
    strictly before that time: sum(residuals) / (count + shrinkage), 0 with none; float [M]."""
    stride = UserDrift.USER_STRIDE  # keys sort by user, then time
    keys = users.astype(np.int64) * stride + times
    order = np.argsort(keys, kind="stable")
    keys, residuals = keys[order], residuals[order]
    cumulative = np.concatenate([[0.0], np.cumsum(residuals, dtype=np.float64)])
    first = np.searchsorted(keys, at_users.astype(np.int64) * stride, side="left")
    # The user's ratings strictly before the time are positions first..end-1.
    end = np.searchsorted(keys, at_users.astype(np.int64) * stride + at_times, side="left")
    start = np.maximum(first, end - window)
    count = (end - start + shrinkage).astype(np.float64)
    return np.divide(cumulative[end] - cumulative[start], count, out=np.zeros(len(count)),
                     where=count > 0)


@dataclasses.dataclass(frozen=True)
class DriftChoice:
    """The user drift the Trainer chose on its validation holdout (window 0: none), and the
    validation RMSE in stars of each candidate ("off", "window/shrinkage")."""

    window: int
    shrinkage: float
    validation_rmse: dict[str, float]

    def describe(self) -> str:
        off = self.validation_rmse.get("off", float("nan"))
        if not self.window:
            best = min(self.validation_rmse.values(), default=off)
            return (f"off (validation RMSE {off:.4f}; the best window gave {best:.4f}, not "
                    "enough lower)")
        chosen = self.validation_rmse[f"{self.window}/{self.shrinkage:g}"]
        return (f"window {self.window}, shrinkage {self.shrinkage:g} (validation RMSE "
                f"{chosen:.4f}, {off:.4f} without)")


def choose_drift(model: RatingModel, hp: HParams, num_users: int,
                 fit: tuple[dict[str, np.ndarray], np.ndarray],
                 val: tuple[dict[str, np.ndarray], np.ndarray], time_split: bool = False
                 ) -> DriftChoice:
    """The drift among hp.drift_windows x hp.drift_shrinkages whose offsets, built from the
    trained model's residuals on the fit rows, give the lowest validation RMSE at the validation
    rows' times; none unless that is at least hp.drift_min_gain below the RMSE without drift.
    Where the drift does not help on this data, it is left out.

    With `time_split`, a validation rating's offset is taken from the fit ratings before it
    only (causal_drift), as a user's training ratings precede their eval ratings on a time
    split (global or per user): the nearest ratings on both sides, which UserDrift would take
    inside the training period, made the drift look better than it is on the future
    (docs/benchmarks.md, "User drift")."""
    (fit_data, fit_times), (val_data, val_times) = fit, val
    if not len(val_data[features.LABEL_XF]):
        return DriftChoice(0, 0.0, {})
    residuals = fit_data[features.LABEL_XF] - predict_scaled(model, fit_data)
    base = predict_scaled(model, val_data)
    stars = features.unscale_rating(val_data[features.LABEL_XF])

    def rmse(scaled: np.ndarray) -> float:
        predicted = np.clip(features.unscale_rating(scaled), features.RATING_MIN,
                            features.RATING_MAX)
        return float(np.sqrt(np.mean((predicted - stars) ** 2)))

    scores = {"off": rmse(base)}
    users, times = tf.constant(val_data[features.USER_IDX], tf.int64), tf.constant(val_times)
    for window in hp.drift_windows:
        for shrinkage in hp.drift_shrinkages:
            if time_split:
                offsets = causal_drift(fit_data[features.USER_IDX], fit_times, residuals,
                                       val_data[features.USER_IDX], val_times, window, shrinkage)
            else:
                offsets = UserDrift(fit_data[features.USER_IDX], fit_times, residuals,
                                    num_users, window, shrinkage)(users, times).numpy()
            scores[f"{window}/{shrinkage:g}"] = rmse(base + offsets)
    best = min((k for k in scores if k != "off"), key=scores.get)
    if scores[best] > scores["off"] - hp.drift_min_gain:
        return DriftChoice(0, 0.0, scores)
    window, shrinkage = best.split("/")
    return DriftChoice(int(window), float(shrinkage), scores)


def fit_serving_module(hp: HParams, train_data: dict[str, np.ndarray],
                       user_vocabulary: list[int], num_movies: int,
                       movies: catalogue.Catalogue, log_dir: str | None = None,
                       verbose: int = 2, time_split: bool = False,
                       base_model: str | None = None, movie_vocabulary: list[int] | None = None
                       ) -> export.ServingModule:
    """Trains the configured models on transformed training columns (COLUMNS) and returns what
    is exported: the rating model, and the first stage of `recommend` when hp.item_item or
    hp.retrieval. With a `base_model` (an exported model's folder) and the `movie_vocabulary`
    (raw id of each movie index), the rating model warm-starts from it."""
    num_users = len(user_vocabulary)
    start = None
    if base_model is not None:
        def start(model: tf.keras.Model) -> warm_start.WarmStart:
            return warm_start.initialise(
                model, base_model, hp, user_vocabulary, movie_vocabulary,
                lambda base_hp, users, movies, history: build_model(
                    base_hp, users, movies, 0.5, history))
    model = train(hp, num_users, num_movies, train_data, log_dir=log_dir, verbose=verbose,
                  time_split=time_split, start=start)
    # Its progress is RankingValidation's line per epoch (models/progress.py): Keras' own
    # would list a dozen metrics.
    two_tower = (None if hp.retrieval is None
                 else train_retrieval(hp.retrieval, num_users, num_movies, train_data, verbose=0))
    item_stage, item_choice = (
        (None, None) if hp.item_item is None
        else train_item_item(hp.item_item, num_users, num_movies, train_data, movies))
    history = user_history(train_data[features.USER_IDX], train_data[features.MOVIE_IDX],
                           num_users)
    module = export.ServingModule(model, user_vocabulary, num_movies, movies, history,
                                  two_tower=two_tower, first_stage=hp.item_item or hp.retrieval,
                                  item_stage=item_stage)
    module.item_item_choice = item_choice
    # For training_choices; a float is no trackable, so it is not saved with the module.
    module.popularity_weight = None if two_tower is None else float(two_tower.popularity_weight)
    module.history_dropout_ndcg = (None if two_tower is None
                                   else dict(two_tower.history_dropout_ndcg))
    return module


def predict_scaled(model: tf.keras.Model, columns: dict[str, np.ndarray]) -> np.ndarray:
    """The model's predictions on the scaled rating range, unclipped; [N]."""
    inputs = {k: v for k, v in columns.items() if k != features.LABEL_XF}
    return model.predict(arrays.to_dataset(inputs, 8192), verbose=0).reshape(-1)


def predict_stars(model: tf.keras.Model, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Predicted ratings in stars, clipped to the rating range as the serving model does; [N]."""
    return np.clip(features.unscale_rating(predict_scaled(model, columns)),
                   features.RATING_MIN, features.RATING_MAX)


def rmse_in_stars(model: tf.keras.Model, columns: dict[str, np.ndarray]) -> float:
    error = predict_stars(model, columns) - features.unscale_rating(columns[features.LABEL_XF])
    return float(np.sqrt(np.mean(error**2)))


def is_time_split(train: dict[str, np.ndarray], eval_: dict[str, np.ndarray]) -> bool:
    """Whether each user's eval ratings are all at least as new as their train ratings (the
    time split, and the per-user time split), for the users in both; columns USER_IDX and
    TIMESTAMP."""
    users, times = train[features.USER_IDX], train[features.TIMESTAMP]
    eval_users, eval_times = eval_[features.USER_IDX], eval_[features.TIMESTAMP]
    if not len(times) or not len(eval_times):
        return False
    size = int(max(users.max(), eval_users.max())) + 1
    newest = np.full(size, np.iinfo(np.int64).min)
    np.maximum.at(newest, users, times)
    return bool((newest[eval_users] <= eval_times).all())


def training_choices(module: export.ServingModule, time_split: bool) -> dict:
    """What the Trainer chose on its validation holdouts, for the run's record and report."""
    drift: DriftChoice | None = getattr(module.model, "drift_choice", None)
    new_user: new_users.NewUserChoice | None = getattr(module.model, "new_user_choice", None)
    start: warm_start.WarmStart | None = getattr(module.model, "warm_start", None)
    return {
        # None: no base model was given (a cold start by configuration or the first run).
        "warm_start": None if start is None else dataclasses.asdict(start),
        "rating_epochs": getattr(module.model, "epochs", None),
        "drift_validated_for": "the future (time split)" if time_split else "a random split",
        "user_drift": None if drift is None else dataclasses.asdict(drift),
        "new_users": None if new_user is None else dataclasses.asdict(new_user),
        "popularity_weight": getattr(module, "popularity_weight", None),
        # Validation NDCG@10 of the retrieval stage per history dropout; the best was kept.
        "history_dropout_ndcg": getattr(module, "history_dropout_ndcg", None),
        # The item-item stage's l2 and popularity exponent, with the holdout NDCG@10 of each.
        "item_item": (None if getattr(module, "item_item_choice", None) is None
                      else module.item_item_choice.record()),
    }


def write_choices(export_dir: str, module: export.ServingModule, time_split: bool) -> None:
    """training_choices as contract.CHOICES_FILE in the exported model."""
    path = os.path.join(export_dir, CHOICES_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(training_choices(module, time_split), indent=2) + "\n")


def read_split(file_patterns: list[str], transform_output: tft.TFTransformOutput,
               collector: catalogue.Collector) -> dict[str, np.ndarray]:
    """Raw examples -> TIME_COLUMNS as arrays (arrays.HELD_DTYPES), transformed by Transform's
    graph; each batch's movies go to `collector` on the way."""
    columns = tuple(dict.fromkeys((*TIME_COLUMNS, *catalogue.COLUMNS)))
    batches = arrays.read_batches(file_patterns, transform_output.raw_feature_spec(), columns,
                                  transform=transform_output.transform_features_layer())
    return arrays.collect(collector.watch(batches), TIME_COLUMNS)


# TFX Trainer will call this function.
def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer entry point (referenced by dotted name from pipeline/pipeline.py): trains and
    exports, then returns what training freed to the system, so that the components after it
    in the same process (the local runner's) do not start from its peak."""
    memory.give_back("Before training")
    try:
        train_and_export(fn_args)
    finally:
        memory.give_back("After training")


def train_and_export(fn_args: FnArgs) -> None:
    """Reads, trains, exports: run_fn's work."""
    hp = HParams.from_config((fn_args.custom_config or {}).get(HPARAMS_KEY))
    _LOG.info("Hyper-parameters: %s", hp)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    started = time.time()
    collector = catalogue.Collector()
    train_data, eval_data = (
        read_split(files, tf_transform_output, collector)
        for files in (fn_args.train_files, fn_args.eval_files))
    train_data = arrays.sort_rows(train_data, ROW_ORDER)
    movies = collector.catalogue()
    _LOG.info("Read and transformed %d train and %d eval ratings in %.1f s",
              len(train_data[features.LABEL_XF]), len(eval_data[features.LABEL_XF]),
              time.time() - started)
    user_vocabulary = [int(u) for u in
                       tf_transform_output.vocabulary_by_name(features.USER_VOCAB)]
    movie_vocabulary = [int(m) for m in
                        tf_transform_output.vocabulary_by_name(features.MOVIE_VOCAB)]
    num_movies = len(movie_vocabulary)
    # A time split's eval ratings are all newer than its train ratings: the drift is chosen for
    # the future then (choose_drift).
    by_time = is_time_split(train_data, eval_data)
    # TFX's base_model: the latest blessed model's serving folder, when the pipeline warm-starts.
    base_model = getattr(fn_args, "base_model", None) or None
    module = fit_serving_module(hp, train_data, user_vocabulary, num_movies, movies,
                                log_dir=fn_args.model_run_dir, time_split=by_time,
                                base_model=base_model, movie_vocabulary=movie_vocabulary)
    _LOG.info("Eval-split RMSE %.4f stars on %d ratings", rmse_in_stars(module.model, eval_data),
              len(eval_data[features.LABEL_XF]))
    export.export_serving_model(module, fn_args.serving_model_dir)
    write_choices(fn_args.serving_model_dir, module, by_time)
    warm_start.write(fn_args.serving_model_dir, hp, user_vocabulary, movie_vocabulary)
    identity.write(fn_args.serving_model_dir)  # last: it covers the files above
    _LOG.info("Exported the serving model (%d movies in its catalogue) to %s", len(movies),
              fn_args.serving_model_dir)
