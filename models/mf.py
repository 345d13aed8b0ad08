"""Matrix factorisation in TensorFlow Recommenders style: a bias-only baseline and biased MF."""

from __future__ import annotations

import tensorflow as tf

from models import features
from models.base import Biases, ImplicitUser, RatingModel, known, oov_embedding


class BiasBaseline(RatingModel):
    """mu + b_u + b_m: the baseline every other model must beat.

    Inputs: `user_id_xf`, `movie_id_xf` int64 [B]; output float32 [B] scaled rating.
    """

    def __init__(self, num_users: int, num_movies: int, *, global_mean: float, l2: float,
                 loss: str = "mse"):
        super().__init__(l2=l2, loss=loss)
        self.biases = Biases(num_users, num_movies, global_mean)

    def forward(self, inputs, training):
        return self.biases(inputs)

    def movie_side(self, movies):
        return {"bias": self.biases.movie(movies[features.MOVIE_IDX])}

    def score_catalogue(self, users, side):
        return self.biases.grid(users, side["bias"])


class BiasedMF(RatingModel):
    """mu + b_u + b_m + <p_u, q_m>, optionally through a sigmoid into the rating range.

    With a `history` (SVD++), p_u also adds the user's implicit factors (see ImplicitUser).

    Inputs: `user_id_xf`, `movie_id_xf` int64 [B], where an index >= num_users (num_movies) is
    the OOV bucket of an unknown id. Unknown ids contribute neither bias nor factors, so an
    unknown user gets mu + b_m: the movie's popularity. Output: float32 [B], scaled rating.
    """

    def __init__(self, num_users: int, num_movies: int, *, embedding_dim: int, l2: float,
                 squash: bool, global_mean: float, loss: str = "mse",
                 history: tf.RaggedTensor | None = None):
        super().__init__(l2=l2, loss=loss)
        self.num_users = num_users
        self.num_movies = num_movies
        self.squash = squash
        self.user_factors = oov_embedding(num_users, embedding_dim, stddev=0.05)
        self.movie_factors = oov_embedding(num_movies, embedding_dim, stddev=0.05)
        # Start at the mean rating, in logit space when squashing.
        start = float(tf.math.log(global_mean / (1.0 - global_mean))) if squash else global_mean
        self.biases = Biases(num_users, num_movies, start)
        self.implicit = (None if history is None
                         else ImplicitUser(num_users, num_movies, embedding_dim, history))

    def _user(self, users: tf.Tensor) -> tf.Tensor:
        """p_u of user indices [N]: float32 [N, dim], zeros for OOV."""
        p = self.user_factors(users)
        if self.implicit is not None:
            p += self.implicit(users)
        return p * known(users, self.num_users)[:, None]

    def _movie(self, movies: tf.Tensor) -> tf.Tensor:
        """q_m of movie indices [N]: float32 [N, dim], zeros for OOV."""
        return self.movie_factors(movies) * known(movies, self.num_movies)[:, None]

    def _output(self, logit: tf.Tensor) -> tf.Tensor:
        return tf.sigmoid(logit) if self.squash else logit

    def forward(self, inputs, training):
        p, q = self._user(inputs[features.USER_IDX]), self._movie(inputs[features.MOVIE_IDX])
        bias, penalty = self.biases(inputs)
        logit = bias + tf.reduce_sum(p * q, axis=-1)
        return self._output(logit), penalty + tf.reduce_sum(p * p, -1) + tf.reduce_sum(q * q, -1)

    def movie_side(self, movies):
        movie_idx = movies[features.MOVIE_IDX]
        return {"bias": self.biases.movie(movie_idx), "factors": self._movie(movie_idx)}

    def score_catalogue(self, users, side):
        # [B, dim] x [M, dim]^T: one matrix product instead of B * M embedding lookups.
        logit = (self.biases.grid(users, side["bias"])
                 + tf.matmul(self._user(users), side["factors"], transpose_b=True))
        return self._output(logit)
