"""Biased matrix factorisation in TensorFlow Recommenders style."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from models import features


class StarsRMSE(tf.keras.metrics.RootMeanSquaredError):
    """RMSE in stars of predictions and labels given on the scaled [0, 1] range."""

    def __init__(self, name: str = "rmse", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(features.unscale_rating(y_true),
                                    features.unscale_rating(y_pred), sample_weight)


class BiasedMF(tfrs.Model):
    """Predicts a scaled rating: mu + b_u + b_m + <p_u, q_m>, optionally through a sigmoid.

    Inputs: a dict with `user_id_xf` and `movie_id_xf`, int64 [B] vocabulary indices, where an
    index >= num_users (num_movies) is the OOV bucket of an unknown id. Unknown ids contribute
    neither bias nor factors, so an unknown user gets mu + b_m: the movie's popularity.
    Output: float32 [B], the rating scaled to [0, 1] (see features.scale_rating).

    L2 regularisation is per example on the rows a batch uses (as in Funk/Surprise SVD), which
    treats rarely rated movies and users the same as frequent ones.
    """

    def __init__(self, num_users: int, num_movies: int, *, embedding_dim: int, l2: float,
                 squash: bool, global_mean: float):
        super().__init__()
        self.num_users = num_users
        self.num_movies = num_movies
        self.l2 = l2
        self.squash = squash
        buckets = features.NUM_OOV_BUCKETS
        # embedding_dim == 0: biases only (the "bias" baseline).
        self.has_factors = embedding_dim > 0
        if not self.has_factors:
            embedding_dim = 1  # Keras needs a positive size; the factors are never used
        self.user_factors = tf.keras.layers.Embedding(
            num_users + buckets, embedding_dim,
            embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
        self.movie_factors = tf.keras.layers.Embedding(
            num_movies + buckets, embedding_dim,
            embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
        self.user_bias = tf.keras.layers.Embedding(num_users + buckets, 1,
                                                   embeddings_initializer="zeros")
        self.movie_bias = tf.keras.layers.Embedding(num_movies + buckets, 1,
                                                    embeddings_initializer="zeros")
        # Start at the mean rating, in logit space when squashing.
        start = tf.math.log(global_mean / (1.0 - global_mean)) if squash else global_mean
        self.global_bias = tf.Variable(float(start), name="global_bias")
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[StarsRMSE()],
        )

    # No Python control flow depends on tensors here, so AutoGraph has nothing to convert; left
    # on, it transpiles Keras and TFRS internals too: the first epoch took 30 s with it, 11 s
    # without (ml-latest-small, these 2-core machines).
    @tf.autograph.experimental.do_not_convert
    def _forward(self, inputs: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns predictions [B] and the per-example L2 penalty of the rows used, [B]."""
        users = inputs[features.USER_IDX]
        movies = inputs[features.MOVIE_IDX]
        known_user = tf.cast(users < self.num_users, tf.float32)
        known_movie = tf.cast(movies < self.num_movies, tf.float32)
        b_u = tf.squeeze(self.user_bias(users), -1) * known_user
        b_m = tf.squeeze(self.movie_bias(movies), -1) * known_movie
        logit = self.global_bias + b_u + b_m
        penalty = b_u * b_u + b_m * b_m
        if self.has_factors:
            p = self.user_factors(users) * known_user[:, None]
            q = self.movie_factors(movies) * known_movie[:, None]
            logit += tf.reduce_sum(p * q, axis=-1)
            penalty += tf.reduce_sum(p * p, -1) + tf.reduce_sum(q * q, -1)
        predictions = tf.sigmoid(logit) if self.squash else logit
        return predictions, penalty

    @tf.autograph.experimental.do_not_convert
    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self._forward(inputs)[0]

    @tf.autograph.experimental.do_not_convert
    def compute_loss(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        predictions, penalty = self._forward(inputs)
        loss = self.task(labels=inputs[features.LABEL_XF][:, None],
                         predictions=predictions[:, None], training=training)
        return loss + self.l2 * tf.reduce_mean(penalty)
