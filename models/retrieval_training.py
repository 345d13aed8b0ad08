"""Training the retrieval stage of `recommend` (models/retrieval.py's RetrievalModel).

The Trainer (models/trainer.py, fit_serving_module) calls `train_retrieval` after the rating
model: a holdout of the training interactions, one model per history dropout candidate trained
on the rest with early stopping on the holdout's NDCG@10 of all-movie top-10 lists (seen
movies excluded, as `recommend` serves them), the popularity weight chosen on the same
holdout, then a refit of the best on every interaction for the best epoch count.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import tensorflow as tf

from models import arrays, features, progress, ranking_metrics, retrieval
from models.base import user_history
from models.fitting import seed_everything, steps_per_execution
from models.hparams import RetrievalHParams
from models.retrieval import IndexUpdater, RetrievalModel

_LOG = logging.getLogger(__name__)

VALIDATION_USERS_PER_BATCH = 1024


class RankingValidation(tf.keras.callbacks.Callback):
    """Logs `val_ndcg`: NDCG@k of all-movie top-k lists on held-out interactions, with the
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
        # FactorizedTopK's accuracies: is the held-out movie among the top k of all movies?
        accuracies = sorted((len(name), name, value) for name, value in (logs or {}).items()
                            if name.startswith("val_factorized_top_k/"))
        top_k = ", ".join(f"{name.split('/')[-1].split('_categorical')[0].replace('_', '-')} "
                          f"{value:.4f}" for _, name, value in accuracies)
        progress.report(f"retrieval epoch {epoch + 1}: validation NDCG@{self.k} {ndcg:.4f}",
                        f"accuracy {top_k}")


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
# about double the retrieval training, whose "pairs" epochs cost interactions x movies; at
# 1M ratings it was the larger half of a 47-minute stage (docs/benchmarks.md, "Scaling"). A
# "users" epoch costs users x movies: its refit always runs.
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
        # Validation batches as the training ones: each is scored against all movies,
        # and batches of 8192 held 3.6 GB more at 1M ratings, and were slower
        # (docs/benchmarks.md, "Retrieval validation memory").
        history = model.fit(arrays.to_dataset(fit, batch_size, shuffle_seed=hp.seed),
                            validation_data=arrays.to_dataset(val, batch_size),
                            epochs=hp.max_epochs, callbacks=[IndexUpdater(), *callbacks],
                            verbose=verbose)
    # The model's softmax spreads its picks over more movies than the top-k metric
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
        refit_progress = tf.keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: progress.report(
                f"retrieval refit on all interactions, epoch {epoch + 1}/{best_epochs}",
                f"loss {(logs or {}).get('loss', float('nan')):.4f}"))
        if hp.objective == "users":
            data = user_batches(users, hp)
        else:
            data = arrays.to_dataset(pairs, batch_size, shuffle_seed=hp.seed)
        model.fit(data, epochs=best_epochs, callbacks=[_schedule(hp), refit_progress],
                  verbose=verbose)
        _LOG.info("Refitted the retrieval model on all %d interactions for %d epochs in %.1f s",
                  len(users), best_epochs, time.time() - start)
    model.popularity_weight = best.popularity_weight
    model.validation_ndcg = best.ndcg
    model.history_dropout_ndcg = {f"{t.history_dropout:g}": t.ndcg for t in trials}
    return model
