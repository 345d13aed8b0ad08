"""A neural rating model: id embeddings and movie content through an MLP, on top of biases."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from models import features
from models.base import Biases, Factors, RatingModel
from models.hparams import HParams


class NeuralRecommender(RatingModel):
    """mu + b_u + b_m + <p_u, q_m> + MLP([p_u, q_m, genres, year]).

    With a `history`, p_u also adds the user's implicit factors (SVD++, see base.Factors).

    Inputs: `user_id_xf`, `movie_id_xf` int64 [B] (OOV bucket = unknown, contributes zeros);
    `genres_xf` float32 [B, G] multi-hot; `year_xf` float32 [B] z-scored release year.
    Output: float32 [B], the scaled rating.

    The dot product keeps what MF learns well (user-movie affinity); the MLP adds what ids cannot
    carry for new or rarely rated movies: their genres and age.
    """

    def __init__(self, num_users: int, num_movies: int, *, embedding_dim: int,
                 hidden_units: Sequence[int], dropout: float, l2: float, global_mean: float,
                 loss: str = "mse", history: tf.RaggedTensor | None = None):
        super().__init__(loss=loss)
        self.factors = Factors(num_users, num_movies, embedding_dim, l2=l2, history=history)
        self.biases = Biases(num_users, num_movies, global_mean, l2=l2)
        layers = []
        for units in hidden_units:
            layers += [tf.keras.layers.Dense(units, activation="relu"),
                       tf.keras.layers.Dropout(dropout)]
        layers.append(tf.keras.layers.Dense(1, kernel_initializer="zeros"))
        self.mlp = tf.keras.Sequential(layers)

    @classmethod
    def from_hparams(cls, hp: HParams, num_users: int, num_movies: int, *, global_mean: float,
                     history: tf.RaggedTensor | None = None) -> NeuralRecommender:
        return cls(num_users, num_movies, embedding_dim=hp.embedding_dim,
                   hidden_units=hp.hidden_units, dropout=hp.dropout, l2=hp.l2,
                   global_mean=global_mean, loss=hp.loss, history=history)

    def forward(self, inputs, training):
        p, q = self.factors(inputs)
        content = tf.concat([p, q, inputs[features.GENRES_XF],
                             inputs[features.YEAR_XF][:, None]], axis=-1)
        mlp = tf.squeeze(self.mlp(content, training=training), -1)
        return self.biases(inputs) + tf.reduce_sum(p * q, axis=-1) + mlp
