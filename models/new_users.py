"""What a rating model predicts for a user it has never seen: a rating per movie, chosen on the
training data's own new users.

A user who is not in the vocabulary has no bias, factors or drift, so a model can only predict
from the movie. The model's own fallback, mu + b_m (plus content for the neural model), comes
from a b_m fitted jointly with everything else and shrunk by the model's L2; on
ml-latest-small's time split (nine in ten eval ratings by new users) it was less accurate than
the bias baseline's (docs/benchmarks.md, "New users"). Two estimates of what a new user gives a
movie, each shrunk toward the global mean mu where the movie has few ratings:

  - "mean": what users in general gave it, mu + sum(r - mu) / (n + shrinkage) (movie_means);
    best where who rates a movie says something about it (ml-latest-small);
  - "debiased": its effect net of its raters' own biases, b_m of mu + b_u + b_m fitted by
    alternating least squares as Surprise's BaselineOnly (movie_biases); best where raters
    are a random draw of harsh and lenient users (synthetic data with few users).

The Trainer picks the kind and the shrinkage per run (`choose`, by the mean absolute error on
the training data's own new users; docs/benchmarks.md "New users" says why MAE) and adds the
table to the model after training (`RatingModel.fit_new_users`, models/base.py); the choice
goes in the run record with the user drift's (trainer.training_choices).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from models import features


def movie_means(movies: np.ndarray, labels: np.ndarray, num_movies: int, shrinkage: float
                ) -> np.ndarray:
    """mu + sum(r - mu) / (n + shrinkage) of each movie index, mu for movies without ratings
    and for the OOV buckets.

    movies: int [N] movie indices (OOV ones ignored); labels: float [N] scaled ratings.
    Returns float32 [num_movies + NUM_OOV_BUCKETS], on the scaled rating range."""
    if shrinkage < 0:
        raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
    size = num_movies + features.NUM_OOV_BUCKETS
    keep = movies < num_movies
    movies, labels = movies[keep], np.asarray(labels, np.float64)[keep]
    mu = float(labels.mean()) if len(labels) else 0.5
    sums = np.bincount(movies, weights=labels - mu, minlength=size)
    counts = np.bincount(movies, minlength=size).astype(np.float64)
    offsets = np.divide(sums, counts + shrinkage, out=np.zeros(size), where=counts > 0)
    return (mu + offsets).astype(np.float32)


def movie_biases(users: np.ndarray, movies: np.ndarray, labels: np.ndarray, num_movies: int,
                 shrinkage: float, iterations: int = 10) -> np.ndarray:
    """mu + b_m of mu + b_u + b_m, fitted by `iterations` rounds of alternating least squares
    with both biases shrunk by `shrinkage`; mu for movies without ratings and the OOV buckets.

    users, movies: int [N] indices (ratings of OOV movies ignored); labels: float [N] scaled.
    Returns float32 [num_movies + NUM_OOV_BUCKETS]."""
    if shrinkage < 0:
        raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
    size = num_movies + features.NUM_OOV_BUCKETS
    keep = movies < num_movies
    users, movies = users[keep], movies[keep]
    labels = np.asarray(labels, np.float64)[keep]
    mu = float(labels.mean()) if len(labels) else 0.5
    user_count = np.bincount(users).astype(np.float64)
    movie_count = np.bincount(movies, minlength=size).astype(np.float64)
    b_u, b_m = np.zeros(len(user_count)), np.zeros(size)
    for _ in range(iterations):
        b_u = np.bincount(users, labels - mu - b_m[movies], len(user_count)) / (
            user_count + shrinkage + 1e-12)
        b_m = np.bincount(movies, labels - mu - b_u[users], size) / (
            movie_count + shrinkage + 1e-12)
    return (mu + b_m).astype(np.float32)


def table(kind: str, users: np.ndarray, movies: np.ndarray, labels: np.ndarray,
          num_movies: int, shrinkage: float) -> np.ndarray:
    """The new users' ratings of `kind` ("mean": movie_means, "debiased": movie_biases)."""
    if kind == "mean":
        return movie_means(movies, labels, num_movies, shrinkage)
    if kind == "debiased":
        return movie_biases(users, movies, labels, num_movies, shrinkage)
    raise ValueError(f"unknown new-user rating kind {kind!r}; known: {list(KINDS)}")


KINDS = ("mean", "debiased")


class NewUserRatings(tf.keras.layers.Layer):
    """The scaled rating an unknown user is predicted to give each movie (a `table`).

    Input: movie indices int64 [B] (the OOV bucket: the global mean); output float32 [B].
    `unknown(users)` says which user indices [B] it applies to (bool [B])."""

    def __init__(self, table: np.ndarray, num_users: int, **kwargs):
        super().__init__(**kwargs)
        self.num_users = num_users
        self.table = tf.constant(table, tf.float32)

    def unknown(self, users: tf.Tensor) -> tf.Tensor:
        return users >= self.num_users

    def call(self, movies: tf.Tensor) -> tf.Tensor:
        return tf.gather(self.table, movies)


@dataclasses.dataclass(frozen=True)
class NewUserChoice:
    """The kind of table and the shrinkage the Trainer chose, what they were validated on, and
    the validation RMSE and MAE in stars of each candidate ("kind/shrinkage"). Records written
    before the choice was made by MAE have no validation_mae."""

    kind: str
    shrinkage: float
    validated_on: str
    validation_rmse: dict[str, float]
    validation_mae: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.shrinkage:g}"

    def describe(self) -> str:
        return describe(dataclasses.asdict(self))


def describe(choice: dict) -> str:
    """What a NewUserChoice's record (its dataclasses.asdict, as the run record stores it) serves
    and its validation errors: MAE and RMSE, the RMSE alone for records older than
    validation_mae."""
    what = "mean rating" if choice["kind"] == "mean" else "bias net of its raters' biases"
    key = f"{choice['kind']}/{choice['shrinkage']:g}"
    rmse = choice["validation_rmse"].get(key, float("nan"))
    mae = choice.get("validation_mae", {}).get(key)
    errors = (f"validation RMSE {rmse:.4f}" if mae is None
              else f"validation MAE {mae:.4f}, RMSE {rmse:.4f}")
    return (f"each movie's {what} shrunk by {choice['shrinkage']:g} ({errors} on "
            f"{choice['validated_on']})")


def new_user_holdout(users: np.ndarray, times: np.ndarray | None, fraction: float,
                     min_ratings: int, seed: int) -> tuple[np.ndarray, str]:
    """Which rows [N] (bool) validate the new-user predictions, and a description.

    Preferably the ratings of the newest `fraction` of the training period by users with no
    rating before it: new users as a time split meets them. Where there are fewer than
    `min_ratings` of those (a random split, or few newcomers), all ratings of `fraction` of the
    users drawn at random (seeded)."""
    if times is not None and len(times):
        cutoff = np.quantile(times, 1.0 - fraction)
        before = np.zeros(int(users.max()) + 1, bool)
        before[users[times < cutoff]] = True
        rows = (times >= cutoff) & ~before[users]
        if rows.sum() >= min_ratings:
            return rows, (f"{int(rows.sum())} ratings by {len(np.unique(users[rows]))} users new "
                          f"in the last {fraction:.0%} of the training period")
    distinct = np.unique(users)
    rng = np.random.default_rng(seed)
    held = rng.choice(distinct, size=max(1, int(round(fraction * len(distinct)))), replace=False)
    rows = np.isin(users, held)
    return rows, f"{int(rows.sum())} ratings of {len(held)} users held out at random"


def choose(users: np.ndarray, movies: np.ndarray, labels: np.ndarray, times: np.ndarray | None,
           num_movies: int, shrinkages: tuple[float, ...], fraction: float, min_ratings: int,
           seed: int) -> NewUserChoice:
    """The kind (KINDS) and shrinkage of `table` with the lowest MAE (stars, clipped) on the
    new users of new_user_holdout, the table fitted on the other rows. Columns are the training
    split's [N]: user and movie indices, scaled labels and (optional) timestamps.

    MAE rather than RMSE: the two pick the same table or neighbours (shrinkage 2 or 5), and
    where they differ MAE's pick cost little RMSE and gained more MAE (docs/benchmarks.md,
    "New users")."""
    rows, described = new_user_holdout(users, times, fraction, min_ratings, seed)
    stars = features.unscale_rating(labels[rows])
    rmse, mae = {}, {}
    for kind in KINDS:
        for shrinkage in shrinkages:
            fitted = table(kind, users[~rows], movies[~rows], labels[~rows], num_movies,
                           shrinkage)
            errors = np.clip(features.unscale_rating(fitted[movies[rows]]),
                             features.RATING_MIN, features.RATING_MAX) - stars
            key = f"{kind}/{shrinkage:g}"
            rmse[key] = float(np.sqrt(np.mean(errors ** 2)))
            mae[key] = float(np.mean(np.abs(errors)))
    best = min(mae, key=mae.get)
    kind, shrinkage = best.split("/")
    return NewUserChoice(kind, float(shrinkage), described, rmse, mae)
