"""Matrix factorisation in TensorFlow Recommenders style: a bias-only baseline and biased MF."""

from __future__ import annotations

import tensorflow as tf

from models import features
from models.base import Biases, Factors, RatingModel
from models.hparams import HParams


class BiasBaseline(RatingModel):
    """mu + b_u + b_m: the baseline every other model must beat.

    Inputs: `user_id_xf`, `movie_id_xf` int64 [B]; output float32 [B] scaled rating.
    """

    def __init__(self, num_users: int, num_movies: int, *, global_mean: float, l2: float,
                 loss: str = "mse"):
        super().__init__(loss=loss)
        self.biases = Biases(num_users, num_movies, global_mean, l2=l2)

    @classmethod
    def from_hparams(cls, hp: HParams, num_users: int, num_movies: int, *, global_mean: float,
                     history: tf.RaggedTensor | None = None) -> BiasBaseline:
        return cls(num_users, num_movies, global_mean=global_mean, l2=hp.l2, loss=hp.loss)

    def forward(self, inputs, training):
        return self.biases(inputs)

    def movie_vectors(self, movies):
        return {"bias": self.biases.movie(movies[features.MOVIE_IDX])}

    def catalogue_scores(self, users, side):
        return self.biases.grid(users, side["bias"]) + self.drift_now(users)[:, None]


class BiasedMF(RatingModel):
    """mu + b_u + b_m + <p_u, q_m>, optionally through a sigmoid into the rating range.

    With a `history` (SVD++), p_u also adds the user's implicit factors (see base.Factors).

    Inputs: `user_id_xf`, `movie_id_xf` int64 [B], where an index >= num_users (num_movies) is
    the OOV bucket of an unknown id. Unknown ids contribute neither bias nor factors, so an
    unknown user gets mu + b_m (in training; the Trainer then gives unknown users the movie's
    mean rating, RatingModel.fit_new_users). Output: float32 [B], scaled rating.
    """

    def __init__(self, num_users: int, num_movies: int, *, embedding_dim: int, l2: float,
                 squash: bool, global_mean: float, loss: str = "mse",
                 history: tf.RaggedTensor | None = None):
        super().__init__(loss=loss)
        self.squash = squash
        self.factors = Factors(num_users, num_movies, embedding_dim, l2=l2, history=history)
        # Start at the mean rating, in logit space when squashing.
        start = float(tf.math.log(global_mean / (1.0 - global_mean))) if squash else global_mean
        self.biases = Biases(num_users, num_movies, start, l2=l2)

    @classmethod
    def from_hparams(cls, hp: HParams, num_users: int, num_movies: int, *, global_mean: float,
                     history: tf.RaggedTensor | None = None) -> BiasedMF:
        return cls(num_users, num_movies, embedding_dim=hp.embedding_dim, l2=hp.l2,
                   squash=hp.squash, global_mean=global_mean, loss=hp.loss, history=history)

    def _output(self, logit: tf.Tensor) -> tf.Tensor:
        return tf.sigmoid(logit) if self.squash else logit

    def forward(self, inputs, training):
        p, q = self.factors(inputs)
        return self._output(self.biases(inputs) + tf.reduce_sum(p * q, axis=-1))

    def movie_vectors(self, movies):
        movie_idx = movies[features.MOVIE_IDX]
        return {"bias": self.biases.movie(movie_idx), "factors": self.factors.movie(movie_idx)}

    def catalogue_scores(self, users, side):
        # [B, dim] x [M, dim]^T: one matrix product instead of B * M embedding lookups.
        logit = (self.biases.grid(users, side["bias"])
                 + tf.matmul(self.factors.user(users), side["factors"], transpose_b=True))
        return self._output(logit) + self.drift_now(users)[:, None]
