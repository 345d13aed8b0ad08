"""A neural rating model: id embeddings and movie content through an MLP, on top of biases."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from models import features
from models.base import Biases, ImplicitUser, RatingModel, known, oov_embedding


class NeuralRecommender(RatingModel):
    """mu + b_u + b_m + <p_u, q_m> + MLP([p_u, q_m, genres, year]).

    With a `history`, p_u also adds the user's implicit factors (SVD++, see ImplicitUser).

    Inputs: `user_id_xf`, `movie_id_xf` int64 [B] (OOV bucket = unknown, contributes zeros);
    `genres_xf` float32 [B, G] multi-hot; `year_xf` float32 [B] z-scored release year.
    Output: float32 [B], the scaled rating.

    The dot product keeps what MF learns well (user-movie affinity); the MLP adds what ids cannot
    carry for new or rarely rated movies: their genres and age.
    """

    def __init__(self, num_users: int, num_movies: int, *, embedding_dim: int,
                 hidden_units: Sequence[int], dropout: float, l2: float, global_mean: float,
                 loss: str = "mse", history: tf.RaggedTensor | None = None):
        super().__init__(l2=l2, loss=loss)
        self.num_users = num_users
        self.num_movies = num_movies
        self.user_factors = oov_embedding(num_users, embedding_dim, stddev=0.05)
        self.movie_factors = oov_embedding(num_movies, embedding_dim, stddev=0.05)
        self.biases = Biases(num_users, num_movies, global_mean)
        self.implicit = (None if history is None
                         else ImplicitUser(num_users, num_movies, embedding_dim, history))
        layers = []
        for units in hidden_units:
            layers += [tf.keras.layers.Dense(units, activation="relu"),
                       tf.keras.layers.Dropout(dropout)]
        layers.append(tf.keras.layers.Dense(1, kernel_initializer="zeros"))
        self.mlp = tf.keras.Sequential(layers)

    def forward(self, inputs, training):
        users, movies = inputs[features.USER_IDX], inputs[features.MOVIE_IDX]
        p = self.user_factors(users)
        if self.implicit is not None:
            p += self.implicit(users)
        p *= known(users, self.num_users)[:, None]
        q = self.movie_factors(movies) * known(movies, self.num_movies)[:, None]
        bias, penalty = self.biases(inputs)
        content = tf.concat([p, q, inputs[features.GENRES_XF],
                             inputs[features.YEAR_XF][:, None]], axis=-1)
        mlp = tf.squeeze(self.mlp(content, training=training), -1)
        predictions = bias + tf.reduce_sum(p * q, axis=-1) + mlp
        return predictions, penalty + tf.reduce_sum(p * p, -1) + tf.reduce_sum(q * q, -1)
