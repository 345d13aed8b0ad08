"""What every rating model shares: OOV-aware biases and factors, each adding its own L2 loss, and
the ranking task."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from models import arrays, features, new_users
from models.hparams import HParams


def served_variable(value: Any, dtype: tf.DType | None = None) -> tf.Variable:
    """An array a served model holds (histories, item-item lists, drift sums) as a non-trainable
    variable: saved in the checkpoint, not in the graph. As graph constants, ml-25m's arrays
    made saved_model.pb hundreds of MB, which a TF1 session (TF Serving's loader) imports and
    optimises with every signature's graph, at several times that in memory
    (docs/benchmarks.md, "Scaling")."""
    return tf.Variable(value, dtype=dtype, trainable=False)

class StarsRMSE(tf.keras.metrics.RootMeanSquaredError):
    """RMSE in stars of predictions and labels given on the scaled [0, 1] range."""

    def __init__(self, name: str = "rmse", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(features.unscale_rating(y_true),
                                    features.unscale_rating(y_pred), sample_weight)


# The losses HParams.loss may name: "mse" fits the mean rating (best RMSE); "mae" the median (best
# MAE); "huber" sits between (delta 0.1 on the [0, 1] scale, about half a star).
LOSSES: dict[str, Callable[[], tf.keras.losses.Loss]] = {
    "mse": tf.keras.losses.MeanSquaredError,
    "mae": tf.keras.losses.MeanAbsoluteError,
    "huber": lambda: tf.keras.losses.Huber(delta=0.1),
}

T = TypeVar("T")


def registered(registry: dict[str, T], name: str, what: str) -> T:
    """registry[name], or a ValueError naming the known names: an unknown name never falls back
    to a default."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; known: {sorted(registry)}")
    return registry[name]


def make_loss(name: str) -> tf.keras.losses.Loss:
    return registered(LOSSES, name, "loss")()


def known(ids: tf.Tensor, vocab_size: int) -> tf.Tensor:
    """1.0 where an index is in the vocabulary, 0.0 for the OOV bucket; float32 [B]."""
    return tf.cast(ids < vocab_size, tf.float32)


def oov_embedding(vocab_size: int, dim: int, stddev: float = 0.0) -> tf.keras.layers.Embedding:
    """An embedding with room for the OOV buckets (whose rows the models mask to zero),
    initialised N(0, stddev) (zeros when 0)."""
    # A new initializer per layer: one instance reused returns the same values each time.
    initializer = (tf.keras.initializers.RandomNormal(stddev=stddev) if stddev
                   else tf.keras.initializers.Zeros())
    return tf.keras.layers.Embedding(vocab_size + features.NUM_OOV_BUCKETS, dim,
                                     embeddings_initializer=initializer)


def l2_loss(layer: tf.keras.layers.Layer, l2: float, penalty: tf.Tensor) -> None:
    """Adds l2 * the batch mean of a per-example penalty [B] to the layer's losses, which
    tfrs.Model's train and test steps add to the task loss (its "regularization_loss").

    Per example, on the rows a batch uses (as in Funk/Surprise SVD), rather than on whole tables:
    rarely rated movies are regularised as much as popular ones relative to their data."""
    layer.add_loss(l2 * tf.reduce_mean(penalty))


class Biases(tf.keras.layers.Layer):
    """mu + b_u + b_m, where an unknown (OOV) user or movie contributes no bias.

    Input: `user_id_xf`, `movie_id_xf` int64 [B]. Output: bias [B]. Adds the loss
    l2 * mean(b_u^2 + b_m^2) (see l2_loss).
    """

    def __init__(self, num_users: int, num_movies: int, global_mean: float, *, l2: float,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_users = num_users
        self.num_movies = num_movies
        self.l2 = l2
        self.user_bias = oov_embedding(num_users, 1)
        self.movie_bias = oov_embedding(num_movies, 1)
        self.global_bias = tf.Variable(float(global_mean), name="global_bias")

    def user(self, users: tf.Tensor) -> tf.Tensor:
        """b_u of user indices [N]: float32 [N], 0 for OOV."""
        return tf.squeeze(self.user_bias(users), -1) * known(users, self.num_users)

    def movie(self, movies: tf.Tensor) -> tf.Tensor:
        """b_m of movie indices [N]: float32 [N], 0 for OOV."""
        return tf.squeeze(self.movie_bias(movies), -1) * known(movies, self.num_movies)

    def grid(self, users: tf.Tensor, movie_bias: tf.Tensor) -> tf.Tensor:
        """mu + b_u + b_m for user indices [B] and movie biases [M] (see `movie`): [B, M]."""
        return self.global_bias + self.user(users)[:, None] + movie_bias[None, :]

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        b_u = self.user(inputs[features.USER_IDX])
        b_m = self.movie(inputs[features.MOVIE_IDX])
        l2_loss(self, self.l2, b_u * b_u + b_m * b_m)
        return self.global_bias + b_u + b_m


class ImplicitUser(tf.keras.layers.Layer):
    """SVD++'s implicit feedback: a user is also the movies they rated, |N(u)|^-1/2 sum y_j.

    Knowing *which* movies a user chose to rate carries signal beyond the ratings themselves. The
    history is that of the training data and is saved with the model (it is also what recommend
    excludes). Input: `user_id_xf` int64 [B]; output: float32 [B, dim] (zeros for OOV users).
    """

    def __init__(self, num_users: int, num_movies: int, dim: int, history: tf.RaggedTensor,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_users = num_users
        self.item_factors = self.add_weight(
            name="item_factors", shape=(num_movies + features.NUM_OOV_BUCKETS, dim),
            initializer=tf.keras.initializers.RandomNormal(stddev=0.01))
        # Constant row splits and values, one row per user index (OOV bucket rows empty).
        self.history_values = tf.constant(history.flat_values, tf.int64)
        self.history_splits = tf.constant(history.row_splits, tf.int64)

    def call(self, users: tf.Tensor) -> tf.Tensor:
        # Each distinct user of the batch once: the cost is their histories, not B of them.
        unique, position = tf.unique(users)
        history = tf.RaggedTensor.from_row_splits(self.history_values, self.history_splits,
                                                  validate=False)
        rows = tf.gather(history, unique)
        summed = tf.math.unsorted_segment_sum(
            tf.gather(self.item_factors, rows.flat_values), rows.value_rowids(),
            num_segments=tf.shape(unique, out_type=tf.int64)[0])
        lengths = tf.cast(rows.row_lengths(), tf.float32)
        implicit = summed * tf.math.rsqrt(tf.maximum(lengths, 1.0))[:, None]
        return tf.gather(implicit, position)


class Factors(tf.keras.layers.Layer):
    """The factors p_u and q_m of a user and a movie, zeros for an unknown (OOV) id.

    With a `history` (SVD++), p_u also adds the user's implicit factors (see ImplicitUser).

    Input: `user_id_xf`, `movie_id_xf` int64 [B]. Output: (p [B, dim], q [B, dim]). Adds the loss
    l2 * mean(|p_u|^2 + |q_m|^2) (see l2_loss).
    """

    def __init__(self, num_users: int, num_movies: int, dim: int, *, l2: float,
                 history: tf.RaggedTensor | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_users = num_users
        self.num_movies = num_movies
        self.l2 = l2
        self.user_factors = oov_embedding(num_users, dim, stddev=0.05)
        self.movie_factors = oov_embedding(num_movies, dim, stddev=0.05)
        self.implicit = (None if history is None
                         else ImplicitUser(num_users, num_movies, dim, history))

    def user(self, users: tf.Tensor) -> tf.Tensor:
        """p_u of user indices [N]: float32 [N, dim], zeros for OOV."""
        p = self.user_factors(users)
        if self.implicit is not None:
            p += self.implicit(users)
        return p * known(users, self.num_users)[:, None]

    def movie(self, movies: tf.Tensor) -> tf.Tensor:
        """q_m of movie indices [N]: float32 [N, dim], zeros for OOV."""
        return self.movie_factors(movies) * known(movies, self.num_movies)[:, None]

    def call(self, inputs: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        p, q = self.user(inputs[features.USER_IDX]), self.movie(inputs[features.MOVIE_IDX])
        l2_loss(self, self.l2, tf.reduce_sum(p * p, -1) + tf.reduce_sum(q * q, -1))
        return p, q


class UserDrift(tf.keras.layers.Layer):
    """A user's rating offset at a point in time, from what the trained model got wrong then.

    Users' ratings drift (a user who rated 3.4 on average in 2002 rated 2.3 in 2017, and
    sessions have moods), which a bias b_u fitted on all of a user's ratings averages away. As
    timeSVD++'s b_u(t), this adds to a prediction at time t the shrunk mean residual of the
    user's `window` training ratings nearest to t:
        sum(r - r_hat) / (count + shrinkage)
    (0 for unknown users). Without a time (none given, or a negative one) it is "now", after the
    training data: the user's last `window` ratings, which is what predict_ids, recommend and
    the pipeline's time-split evaluation need.

    Built after training from the training ratings' residuals (RatingModel.fit_user_drift);
    holds them, sorted by user and time, as constants saved with the model.
    Input: user indices int64 [B], optionally timestamps int64 [B] (seconds; negative: now, see
    features.NO_TIMESTAMP); output float32 [B] on the scaled rating range.
    """

    # Keys user * 2**33 + timestamp sort by user, then time (timestamps up to the year 2242).
    USER_STRIDE = 2**33

    def __init__(self, users: np.ndarray, timestamps: np.ndarray, residuals: np.ndarray,
                 num_users: int, window: int, shrinkage: float, **kwargs):
        super().__init__(**kwargs)
        if window < 1 or shrinkage < 0:
            raise ValueError(f"need window >= 1 and shrinkage >= 0, got {window}, {shrinkage}")
        users, timestamps = np.asarray(users, np.int64), np.asarray(timestamps, np.int64)
        if timestamps.size and not 0 <= timestamps.min() <= timestamps.max() < self.USER_STRIDE:
            raise ValueError("timestamps must be seconds in [0, 2**33)")
        keep = users < num_users  # OOV users have no usable ratings
        users, timestamps = users[keep], timestamps[keep]
        residuals = np.asarray(residuals, np.float64)[keep]
        order = np.lexsort((timestamps, users))
        counts = np.bincount(users, minlength=num_users + features.NUM_OOV_BUCKETS)
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        cumulative = np.concatenate([[0.0], np.cumsum(residuals[order])])
        self.window, self.shrinkage = int(window), float(shrinkage)
        # One key and one sum a rating: variables, so an export does not hold them as constants.
        self.keys = served_variable(users[order] * self.USER_STRIDE + timestamps[order], tf.int64)
        self.starts = served_variable(starts, tf.int64)
        self.cumulative = served_variable(cumulative, tf.float64)
        # "Now": each user's last `window` ratings.
        lo = np.maximum(counts - self.window, 0)
        total = cumulative[starts[:-1] + counts] - cumulative[starts[:-1] + lo]
        now = np.divide(total, counts - lo + self.shrinkage, out=np.zeros_like(total),
                        where=counts > lo)
        self.now = served_variable(now, tf.float32)

    def call(self, users: tf.Tensor, timestamps: tf.Tensor | None = None) -> tf.Tensor:
        now = tf.gather(self.now, users)
        if timestamps is None:
            return now
        users, timestamps = tf.cast(users, tf.int64), tf.cast(timestamps, tf.int64)
        # Served tf.Examples may leave the time out (features.NO_TIMESTAMP), row by row: a
        # negative time is "now". Later times are clamped into the key range, where they are
        # after every rating (now too) rather than keys of the next user.
        given = timestamps >= 0
        timestamps = tf.clip_by_value(timestamps, 0, self.USER_STRIDE - 1)
        start = tf.gather(self.starts, users)
        count = tf.gather(self.starts, users + 1) - start
        position = tf.searchsorted(self.keys, users * self.USER_STRIDE + timestamps,
                                   out_type=tf.int64) - start
        lo = tf.clip_by_value(position - self.window // 2, 0,
                              tf.maximum(count - self.window, 0))
        hi = tf.minimum(count, lo + self.window)
        total = tf.gather(self.cumulative, start + hi) - tf.gather(self.cumulative, start + lo)
        timed = tf.cast(tf.math.divide_no_nan(total, tf.cast(hi - lo, tf.float64)
                                              + self.shrinkage), tf.float32)
        return tf.where(given, timed, now)


class RatingModel(tfrs.Model):
    """Base of the rating models: subclasses define `forward`; this adds the task and metrics.

    Inputs: a dict of the features in features.MODEL_INPUTS (and the label `rating_xf` when
    training). Output of `call`: float32 [B], the rating scaled to [0, 1].

    L2 regularisation is the layers' own losses (Biases, Factors), which tfrs.Model's train and
    test steps add to the task loss, as in TFRS models. After training, the Trainer may add the
    users' drift (fit_user_drift) and the predictions for unknown users (fit_new_users).
    """

    def __init__(self, *, loss: str = "mse"):
        super().__init__()
        self.task = tfrs.tasks.Ranking(loss=make_loss(loss), metrics=[StarsRMSE()])
        self.user_drift: UserDrift | None = None  # see fit_user_drift
        self.new_users: new_users.NewUserRatings | None = None  # see fit_new_users

    @classmethod
    def from_hparams(cls, hp: HParams, num_users: int, num_movies: int, *, global_mean: float,
                     history: tf.RaggedTensor | None = None) -> RatingModel:
        """The model of `hp` for vocabularies of the given sizes (OOV excluded), starting at the
        scaled `global_mean`; `history` (see user_history) adds SVD++'s implicit factors."""
        raise NotImplementedError

    def forward(self, inputs: dict[str, tf.Tensor], training: bool) -> tf.Tensor:
        """Returns predictions [B]."""
        raise NotImplementedError

    # No Python control flow depends on tensors in the models, so AutoGraph has nothing to
    # convert; left on, it transpiles Keras and TFRS internals too, and the first epoch took
    # about three times as long (docs/benchmarks.md, "Measurements behind settings").
    @tf.autograph.experimental.do_not_convert
    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self._after_training(inputs, self.forward(inputs, training))

    def _after_training(self, inputs: dict[str, tf.Tensor], predictions: tf.Tensor
                        ) -> tf.Tensor:
        """Predictions [B] plus the users' drift at the inputs' times (now without a
        features.TIMESTAMP), once fit_user_drift has run; for unknown users, the movie's
        new-user rating, once fit_new_users has run."""
        users = inputs[features.USER_IDX]
        if self.user_drift is not None:
            predictions += self.user_drift(users, inputs.get(features.TIMESTAMP))
        if self.new_users is not None:
            predictions = tf.where(self.new_users.unknown(users),
                                   self.new_users(inputs[features.MOVIE_IDX]), predictions)
        return predictions

    def drift_now(self, users: tf.Tensor) -> tf.Tensor:
        """The users' drift offsets now (see UserDrift), zeros before fit_user_drift: [B]."""
        if self.user_drift is None:
            return tf.zeros(tf.shape(users), tf.float32)
        return self.user_drift(users)

    def fit_user_drift(self, columns: dict[str, np.ndarray], timestamps: np.ndarray,
                       num_users: int, window: int, shrinkage: float) -> None:
        """After training: adds UserDrift, built from the trained model's residuals on the
        training columns (features.MODEL_INPUTS and the label) rated at `timestamps` [N]."""
        self.user_drift = None
        inputs = {k: columns[k] for k in features.MODEL_INPUTS}
        predicted = self.predict(arrays.to_dataset(inputs, 8192), verbose=0).reshape(-1)
        self.user_drift = UserDrift(columns[features.USER_IDX], timestamps,
                                    columns[features.LABEL_XF] - predicted, num_users,
                                    window, shrinkage)
        # Keras keeps the predict and evaluate functions it traced without the drift.
        self.predict_function = self.test_function = None

    def fit_new_users(self, columns: dict[str, np.ndarray], num_users: int, num_movies: int,
                      kind: str, shrinkage: float) -> None:
        """After training: users outside the vocabulary (>= num_users) are predicted the
        new_users.table of `kind` and `shrinkage` over the training columns."""
        table = new_users.table(kind, columns[features.USER_IDX], columns[features.MOVIE_IDX],
                                columns[features.LABEL_XF], num_movies, shrinkage)
        self.new_users = new_users.NewUserRatings(table, num_users)
        self.predict_function = self.test_function = None

    # Scoring a whole catalogue, for `recommend`. Like a TFRS BruteForce index: what depends on
    # the movies only is computed once, when the model is exported, not at every request.

    def movie_side(self, movies: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """What `score_catalogue` needs of each movie. Input: the movie features of
        features.MODEL_INPUTS (all but the user index), each [M, ...]; output: tensors [M, ...],
        the movie indices and movie_vectors'."""
        return {**self.movie_vectors(movies), features.MOVIE_IDX: movies[features.MOVIE_IDX]}

    def movie_vectors(self, movies: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The movie_side of a subclass. This default keeps the features; factorised models
        return their movie vectors."""
        return dict(movies)

    def score_catalogue(self, users: tf.Tensor, side: dict[str, tf.Tensor]) -> tf.Tensor:
        """Scaled ratings of each user index [B] for each movie of `side` (see movie_side):
        float32 [B, M], equal to `call` on each of the B * M pairs, unknown users included."""
        scores = self.catalogue_scores(users, side)
        if self.new_users is None:
            return scores
        return tf.where(self.new_users.unknown(users)[:, None],
                        self.new_users(side[features.MOVIE_IDX])[None, :], scores)

    def catalogue_scores(self, users: tf.Tensor, side: dict[str, tf.Tensor]) -> tf.Tensor:
        """score_catalogue of a subclass, [B, M]. This default runs `call` on each pair;
        factorised models override it with a matrix product."""
        batch, count = tf.shape(users)[0], tf.shape(side[features.MOVIE_IDX])[0]
        pairs = {k: tf.tile(v, tf.concat([[batch], tf.ones(tf.rank(v) - 1, tf.int32)], 0))
                 for k, v in side.items()}
        pairs[features.USER_IDX] = tf.repeat(users, count)
        return tf.reshape(self(pairs, training=False), [batch, count])

    @tf.autograph.experimental.do_not_convert
    def compute_loss(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        # The drift and the new users' ratings are fitted after training; evaluate() includes
        # them then.
        predictions = self._after_training(inputs, self.forward(inputs, training))
        return self.task(labels=inputs[features.LABEL_XF][:, None],
                         predictions=predictions[:, None], training=training)


def row_ids(ragged: tf.RaggedTensor) -> np.ndarray:
    """The row of each value of a ragged tensor, [values], in numpy: RaggedTensor.value_rowids()
    goes through tf.repeat, which builds a [rows, longest row] block (17 GiB for the users'
    histories at 25M ratings, docs/benchmarks.md "Trainer memory")."""
    splits = ragged.row_splits.numpy()
    return np.repeat(np.arange(len(splits) - 1), np.diff(splits))


def user_history(users: np.ndarray, movies: np.ndarray, num_users: int) -> tf.RaggedTensor:
    """The distinct movies each user index rated: ragged int64 [num_users + OOV, None]."""
    pairs = np.unique(np.stack([users, movies], axis=1), axis=0)
    pairs = pairs[pairs[:, 0] < num_users]  # OOV users have no usable history
    lengths = np.bincount(pairs[:, 0], minlength=num_users + features.NUM_OOV_BUCKETS)
    return tf.RaggedTensor.from_row_lengths(pairs[:, 1].astype(np.int64), lengths)
