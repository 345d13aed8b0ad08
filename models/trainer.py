"""The Trainer's `run_fn`: trains the configured model on transformed examples and exports it.

Deterministic: the same data, code, configuration and seed give bit-identical weights (rows in a
canonical order, seeded holdouts and shuffles, TensorFlow's op determinism; `seed_everything`).
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
from tfx.components.trainer.fn_args_utils import FnArgs

from models import arrays, catalogue, export, features, new_users, ranking_metrics, retrieval
from models.base import RatingModel, UserDrift, registered, user_history
from models.contract import CHOICES_FILE, HPARAMS_KEY
from models.hparams import HParams, RetrievalHParams
from models.mf import BiasBaseline, BiasedMF
from models.neural import NeuralRecommender
from models.retrieval import IndexUpdater, RetrievalModel

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


def seed_everything(seed: int) -> None:
    """Seeds Python's, numpy's and TensorFlow's generators and turns on TensorFlow's op
    determinism (for the whole process: ops without a deterministic kernel then raise), so
    that a training stage started here repeats bit for bit. No measurable Trainer time on
    these CPUs (docs/benchmarks.md, "The gate's statistics")."""
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def make_optimizer(hp: HParams) -> tf.keras.optimizers.Optimizer:
    return registered(OPTIMIZERS, hp.optimizer, "optimizer")(hp.learning_rate)


# Training steps per call from Python into the compiled train function: one call per batch cost
# more than the step of a small model (MF on ml-latest-small: 3.8x faster with the per-epoch
# permutation of arrays.to_dataset, docs/benchmarks.md "Training throughput"). Callbacks acting
# at epoch ends (early stopping, learning-rate schedules, validation) are unaffected; batch-level
# ones would see one batch end per this many steps. Not a hyper-parameter: the updates are the
# same, only grouped.
STEPS_PER_EXECUTION = 64


def steps_per_execution(examples: int, batch_size: int) -> int:
    """STEPS_PER_EXECUTION, or an epoch's steps when fewer."""
    return max(1, min(STEPS_PER_EXECUTION, -(-examples // batch_size)))


def train(hp: HParams, num_users: int, num_movies: int, train_data: dict[str, np.ndarray],
          log_dir: str | None = None, verbose: int = 2, time_split: bool = False
          ) -> tf.keras.Model:
    """Fits a model on in-memory transformed columns with early stopping on a held-out slice;
    then, with hp.drift_windows and a features.TIMESTAMP column, the users' drift
    (models/base.py, UserDrift) chosen on that slice (choose_drift; `time_split`: the eval
    ratings are newer than the training ones) and fitted on all of them; then, with
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
    model.compile(optimizer=make_optimizer(hp), steps_per_execution=steps_per_execution(
        len(fit_data[features.LABEL_XF]), hp.batch_size))
    callbacks = [tf.keras.callbacks.EarlyStopping(
        monitor="val_rmse", mode="min", patience=hp.early_stopping_patience,
        restore_best_weights=True)]
    if hp.reduce_lr_patience:
        callbacks.append(tf.keras.callbacks.ReduceLROnPlateau(
            monitor="val_rmse", mode="min", factor=1 / 3, patience=hp.reduce_lr_patience,
            min_delta=1e-4))
    if log_dir:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=log_dir))
    start = time.time()
    model.fit(arrays.to_dataset(fit_data, hp.batch_size, shuffle_seed=hp.seed),
              validation_data=arrays.to_dataset(val_data, 8192),
              epochs=hp.max_epochs, callbacks=callbacks, verbose=verbose)
    _LOG.info("Trained %s on %d ratings in %.1f s", hp.model_type,
              len(fit_data[features.LABEL_XF]), time.time() - start)
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
    users, times = tf.constant(val_data[features.USER_IDX]), tf.constant(val_times)
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


VALIDATION_USERS_PER_BATCH = 1024


class RankingValidation(tf.keras.callbacks.Callback):
    """Logs `val_ndcg`: NDCG@k of full-catalogue top-k lists on held-out interactions, with the
    movies of the training history excluded, as `recommend` serves them and bench/ranking.py
    judges them; and `val_ndcg_smoothed`, its mean over the last `smoothing` epochs, which
    early stopping and the refit's epoch count follow: a single lucky epoch of a noisy curve
    stopped the per-user objective too early (docs/benchmarks.md, "Retrieval objective")."""

    def __init__(self, users: np.ndarray, relevant: list[set[int]], k: int = 10,
                 smoothing: int = 1):
        super().__init__()
        self.users, self.relevant, self.k = users, relevant, k
        self.smoothing = smoothing
        self.scores: list[float] = []

    def ndcg(self, popularity_weight: float) -> float:
        """Validation NDCG@k of the model's top k with this popularity boost."""
        model: RetrievalModel = self.model
        top = []
        # Users in chunks: all of them at once held a float32 [users, movies] score matrix
        # (6k x 21k, 0.5 GB, at 1M ratings) and its copy with the seen movies excluded.
        for start in range(0, len(self.users), VALIDATION_USERS_PER_BATCH):
            histories = model.histories(
                tf.constant(self.users[start:start + VALIDATION_USERS_PER_BATCH], tf.int64))
            scores = retrieval.exclude(model.score(histories, popularity_weight), histories)
            top.append(tf.math.top_k(scores, self.k).indices.numpy())
        top = np.concatenate(top) if top else np.zeros((0, self.k), np.int32)
        return ranking_metrics.mean(ranking_metrics.per_user(top, self.relevant, self.k))["ndcg"]

    def on_epoch_end(self, epoch, logs=None):
        ndcg = self.ndcg(0.0)
        self.scores.append(ndcg)
        if logs is not None:
            logs["val_ndcg"] = ndcg
            # -inf until `smoothing` epochs exist: a mean of the first few alone would let one
            # good first epoch win (it did on a 100-user fixture, whose curve starts high).
            logs["val_ndcg_smoothed"] = (float(np.mean(self.scores[-self.smoothing:]))
                                         if len(self.scores) >= self.smoothing else -np.inf)
        # FactorizedTopK's accuracies: is the held-out movie among the top k of the catalogue?
        accuracies = sorted((len(name), name, value) for name, value in (logs or {}).items()
                            if name.startswith("val_factorized_top_k/"))
        top_k = ", ".join(f"{name.split('/')[-1].split('_categorical')[0].replace('_', '-')} "
                          f"{value:.4f}" for _, name, value in accuracies)
        _LOG.info("Retrieval epoch %d: validation NDCG@%d %.4f; accuracy %s", epoch + 1, self.k,
                  ndcg, top_k)


def build_retrieval_model(hp: RetrievalHParams, num_users: int, num_movies: int,
                          users: np.ndarray, movies: np.ndarray, batch_size: int
                          ) -> RetrievalModel:
    """A compiled RetrievalModel whose histories and popularity are those of these pairs,
    trained in batches of batch_size."""
    model = RetrievalModel(num_movies, user_history(users, movies, num_users),
                           np.bincount(movies, minlength=num_movies),
                           dim=hp.embedding_dim, history_dropout=hp.history_dropout,
                           temperature=hp.temperature,
                           in_batch_negatives=hp.in_batch_negatives,
                           sampled_negatives=hp.sampled_negatives)
    steps = (steps_per_execution(len(np.unique(users)), hp.users_per_batch)
             if hp.objective == "users" else steps_per_execution(len(users), batch_size))
    model.compile(optimizer=tf.keras.optimizers.Adam(hp.learning_rate),
                  steps_per_execution=steps)
    return model


# With objective "pairs", hp.refit applies up to this many training interactions. The refit
# adds the held-out tenth of the positives and repeats the best epoch count on all of them:
# about double the retrieval training, whose "pairs" epochs cost interactions x catalogue; at
# 1M ratings it was the larger half of a 47-minute stage (docs/benchmarks.md, "Scaling"). A
# "users" epoch costs users x catalogue: its refit always runs.
REFIT_MAX_INTERACTIONS = 500_000


def user_batches(users: np.ndarray, hp: RetrievalHParams) -> tf.data.Dataset:
    """The distinct users of these pairs, in shuffled batches of hp.users_per_batch."""
    return arrays.to_dataset({features.USER_IDX: np.unique(users)}, hp.users_per_batch,
                             shuffle_seed=hp.seed)


@dataclasses.dataclass
class _HoldoutFit:
    """A retrieval model trained on the fit part of train_retrieval's holdout: its validation
    NDCG@10 at the best popularity weight, that weight, and the best epoch count."""

    model: RetrievalModel
    history_dropout: float
    ndcg: float
    popularity_weight: float
    best_epochs: int
    has_validation: bool


def _fit_on_holdout(hp: RetrievalHParams, num_users: int, num_movies: int,
                    fit: dict[str, np.ndarray], val: dict[str, np.ndarray], verbose: int
                    ) -> _HoldoutFit:
    """Trains hp's retrieval model on `fit` with early stopping on the NDCG@10 of `val`
    (user and movie index columns), then picks the popularity weight on `val`."""
    seed_everything(hp.seed)
    fit_users, fit_movies = fit[features.USER_IDX], fit[features.MOVIE_IDX]
    batch_size = min(hp.batch_size, max(1, len(fit_users) // hp.min_steps_per_epoch))
    model = build_retrieval_model(hp, num_users, num_movies, fit_users, fit_movies, batch_size)
    relevant: dict[int, set[int]] = {}
    for user, movie in zip(val[features.USER_IDX], val[features.MOVIE_IDX], strict=True):
        relevant.setdefault(int(user), set()).add(int(movie))
    val_users = np.array(sorted(relevant), np.int64)
    smoothing = min(hp.validation_smoothing, hp.max_epochs)
    validation = RankingValidation(val_users, [relevant[u] for u in val_users],
                                   smoothing=smoothing)
    callbacks = [
        validation,
        tf.keras.callbacks.EarlyStopping(monitor="val_ndcg_smoothed", mode="max",
                                         patience=hp.early_stopping_patience,
                                         start_from_epoch=smoothing - 1,
                                         restore_best_weights=True),
        _schedule(hp),
    ]
    start = time.time()
    if hp.objective == "users":
        # Batches of users; validation is RankingValidation's NDCG alone (the FactorizedTopK
        # pass over the validation pairs would cost more than the epoch).
        history = model.fit(user_batches(fit_users, hp), epochs=hp.max_epochs,
                            callbacks=callbacks, verbose=verbose)
    else:
        # Validation batches as the training ones: each is scored against the whole catalogue,
        # and batches of 8192 held 3.6 GB more at 1M ratings, and were slower
        # (docs/benchmarks.md, "Retrieval validation memory").
        history = model.fit(arrays.to_dataset(fit, batch_size, shuffle_seed=hp.seed),
                            validation_data=arrays.to_dataset(val, batch_size),
                            epochs=hp.max_epochs, callbacks=[IndexUpdater(), *callbacks],
                            verbose=verbose)
    # The model's softmax spreads its picks over more of the catalogue than the top-k metric
    # rewards; a popularity boost, chosen on the same validation split, corrects that.
    scores = {w: validation.ndcg(w) for w in hp.popularity_weights}
    popularity_weight = max(scores, key=scores.get)
    best_epochs = int(np.argmax(history.history["val_ndcg_smoothed"])) + 1
    _LOG.info("Trained the retrieval model (history dropout %g) on %d interactions in %.1f s; "
              "best epoch %d; popularity weight %g (validation NDCG@10 %s)",
              hp.history_dropout, len(fit_users), time.time() - start, best_epochs,
              popularity_weight, ", ".join(f"{w:g}: {v:.4f}" for w, v in scores.items()))
    return _HoldoutFit(model, hp.history_dropout, scores[popularity_weight], popularity_weight,
                       best_epochs, bool(len(val_users)))


def _schedule(hp: RetrievalHParams) -> tf.keras.callbacks.LearningRateScheduler:
    return tf.keras.callbacks.LearningRateScheduler(
        lambda epoch: hp.learning_rate * hp.learning_rate_decay**epoch)


def train_retrieval(hp: RetrievalHParams, num_users: int, num_movies: int,
                    train_data: dict[str, np.ndarray], verbose: int = 2) -> RetrievalModel:
    """Fits the retrieval model on the training interactions, with early stopping on the
    validation NDCG of a held-out fraction of them (removed from the histories it trains on),
    once per hp.history_dropouts value (or with hp.history_dropout alone), keeping the best on
    that validation; with hp.refit,
    then fits a fresh model with it on all of them for the best epoch count. The model's
    `popularity_weight`, `history_dropout_ndcg` (validation NDCG@10 per dropout) and
    `validation_ndcg` say what was chosen."""
    pairs = {c: train_data[c] for c in (features.USER_IDX, features.MOVIE_IDX)}
    fit, val = arrays.holdout(pairs, hp.validation_fraction, hp.seed)
    trials = [_fit_on_holdout(dataclasses.replace(hp, history_dropout=d), num_users,
                              num_movies, fit, val, verbose)
              for d in hp.history_dropouts or (hp.history_dropout,)]
    best = max(trials, key=lambda t: t.ndcg)  # the first of equals: the listed order
    hp = dataclasses.replace(hp, history_dropout=best.history_dropout)
    model, best_epochs = best.model, best.best_epochs
    refit = hp.refit and best.has_validation
    if (refit and hp.objective == "pairs"
            and len(pairs[features.USER_IDX]) > REFIT_MAX_INTERACTIONS):
        refit = False
        _LOG.info("No refit: %d interactions > %d, the held-out tenth is worth less than the "
                  "%d epochs it would repeat", len(pairs[features.USER_IDX]),
                  REFIT_MAX_INTERACTIONS, best_epochs)
    if refit:
        start = time.time()
        seed_everything(hp.seed)
        users, movies = pairs[features.USER_IDX], pairs[features.MOVIE_IDX]
        batch_size = min(hp.batch_size, max(1, len(fit[features.USER_IDX])
                                            // hp.min_steps_per_epoch))
        model = build_retrieval_model(hp, num_users, num_movies, users, movies, batch_size)
        # Its progress line per epoch: with verbose=0 the console would show nothing for minutes.
        progress = tf.keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: _LOG.info(
            "Retrieval refit epoch %d/%d: loss %.4f", epoch + 1, best_epochs,
            (logs or {}).get("loss", float("nan"))))
        if hp.objective == "users":
            data = user_batches(users, hp)
        else:
            data = arrays.to_dataset(pairs, batch_size, shuffle_seed=hp.seed)
        model.fit(data, epochs=best_epochs, callbacks=[_schedule(hp), progress],
                  verbose=verbose)
        _LOG.info("Refitted the retrieval model on all %d interactions for %d epochs in %.1f s",
                  len(users), best_epochs, time.time() - start)
    model.popularity_weight = best.popularity_weight
    model.validation_ndcg = best.ndcg
    model.history_dropout_ndcg = {f"{t.history_dropout:g}": t.ndcg for t in trials}
    return model


def fit_serving_module(hp: HParams, train_data: dict[str, np.ndarray],
                       user_vocabulary: list[int], num_movies: int,
                       movies: catalogue.Catalogue, log_dir: str | None = None,
                       verbose: int = 2, time_split: bool = False
                       ) -> export.ServingModule:
    """Trains the configured models on transformed training columns (COLUMNS) and returns what
    is exported: the rating model, and the retrieval stage of `recommend` when hp.retrieval."""
    num_users = len(user_vocabulary)
    model = train(hp, num_users, num_movies, train_data, log_dir=log_dir, verbose=verbose,
                  time_split=time_split)
    # Its progress is RankingValidation's line per epoch: Keras' own would list a dozen metrics.
    retriever = (None if hp.retrieval is None
                 else train_retrieval(hp.retrieval, num_users, num_movies, train_data, verbose=0))
    history = user_history(train_data[features.USER_IDX], train_data[features.MOVIE_IDX],
                           num_users)
    module = export.ServingModule(model, user_vocabulary, num_movies, movies, history,
                                  retriever=retriever, retrieval=hp.retrieval)
    # For training_choices; a float is no trackable, so it is not saved with the module.
    module.popularity_weight = None if retriever is None else float(retriever.popularity_weight)
    module.history_dropout_ndcg = (None if retriever is None
                                   else dict(retriever.history_dropout_ndcg))
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
    return {
        "drift_validated_for": "the future (time split)" if time_split else "a random split",
        "user_drift": None if drift is None else dataclasses.asdict(drift),
        "new_users": None if new_user is None else dataclasses.asdict(new_user),
        "popularity_weight": getattr(module, "popularity_weight", None),
        # Validation NDCG@10 of the retrieval stage per history dropout; the best was kept.
        "history_dropout_ndcg": getattr(module, "history_dropout_ndcg", None),
    }


def write_choices(export_dir: str, module: export.ServingModule, time_split: bool) -> None:
    """training_choices as contract.CHOICES_FILE in the exported model."""
    path = os.path.join(export_dir, CHOICES_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(training_choices(module, time_split), indent=2) + "\n")


# TFX Trainer will call this function.
def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer entry point (referenced by dotted name from pipeline/pipeline.py)."""
    hp = HParams.from_config((fn_args.custom_config or {}).get(HPARAMS_KEY))
    _LOG.info("Hyper-parameters: %s", hp)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = tf_transform_output.transformed_feature_spec()
    wanted = sorted(set(TIME_COLUMNS) | set(catalogue.COLUMNS))
    train_all = arrays.load_columns(fn_args.train_files, spec, wanted)
    eval_all = arrays.load_columns(fn_args.eval_files, spec, wanted)
    movies = catalogue.Catalogue.from_columns(train_all, eval_all)
    train_data = arrays.sort_rows({c: train_all[c] for c in TIME_COLUMNS}, ROW_ORDER)
    eval_data = {c: eval_all[c] for c in TIME_COLUMNS}
    user_vocabulary = [int(u) for u in
                       tf_transform_output.vocabulary_by_name(features.USER_VOCAB)]
    num_movies = tf_transform_output.vocabulary_size_by_name(features.MOVIE_VOCAB)
    # A time split's eval ratings are all newer than its train ratings: the drift is chosen for
    # the future then (choose_drift).
    by_time = is_time_split(train_data, eval_data)
    module = fit_serving_module(hp, train_data, user_vocabulary, num_movies, movies,
                                log_dir=fn_args.model_run_dir, time_split=by_time)
    _LOG.info("Eval-split RMSE %.4f stars on %d ratings", rmse_in_stars(module.model, eval_data),
              len(eval_data[features.LABEL_XF]))
    export.export_serving_model(module, fn_args.serving_model_dir)
    write_choices(fn_args.serving_model_dir, module, by_time)
    _LOG.info("Exported the serving model (%d movies in its catalogue) to %s", len(movies),
              fn_args.serving_model_dir)
