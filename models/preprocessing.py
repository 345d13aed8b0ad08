"""Transform's `preprocessing_fn`: id vocabularies, multi-hot genres, year and rating scaling.

Analyzers run on the train split only, so ids first seen in eval (or at serving time) fall into the
OOV bucket, exactly as they will in production.

The exported model does not carry this graph: models/export.py builds hash tables from the
vocabulary files it writes and keeps each movie's transformed genres and year in the model's
catalogue, so that clients send raw MovieLens ids. tests/test_transform_parity.py checks that
both give the same features for every vocabulary entry and a sample of raw examples.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from models import features


def _dense(x: tf.Tensor | tf.SparseTensor, default) -> tf.Tensor:
    """[batch, 1] dense or sparse (0..1 values per row) -> [batch], `default` where missing."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value=default)
    return tf.reshape(x, [-1])


def _multi_hot(genres: tf.SparseTensor) -> tf.Tensor:
    """Genre strings, sparse [B, None] -> float32 [B, len(GENRE_NAMES)] multi-hot.

    The genre set is fixed (the schema's domain), so no vocabulary is needed and the width is
    static; a genre outside it (which ExampleValidator reports) is ignored here.
    """
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(features.GENRE_NAMES), tf.range(len(features.GENRE_NAMES), dtype=tf.int64)),
        default_value=-1)
    ids = table.lookup(genres.values)
    known = ids >= 0
    indices = tf.stack([tf.boolean_mask(genres.indices[:, 0], known), tf.boolean_mask(ids, known)],
                       axis=1)
    hot = tf.SparseTensor(indices, tf.ones_like(indices[:, 0], tf.float32),
                          [genres.dense_shape[0], len(features.GENRE_NAMES)])
    dense = tf.sparse.to_dense(tf.sparse.reorder(hot), validate_indices=False)
    return tf.reshape(dense, [-1, len(features.GENRE_NAMES)])  # a static width for the schema


def _rounded(statistic: tf.Tensor, unit: float = 1e-6) -> tf.Tensor:
    """A float64 analyzer result rounded to `unit`: equal however Beam ordered its sums."""
    return tf.round(statistic / unit) * unit


def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Raw features (see models/features.py) -> transformed features.

    Outputs, batch size B:
      user_id_xf, movie_id_xf: int64 [B], vocabulary index; OOV ids map to vocab_size.
      genres_xf: float32 [B, len(GENRE_NAMES)], multi-hot genres.
      year_xf: float32 [B], z-scored release year, 0 (the mean) where unknown.
      rating_xf: float32 [B], rating scaled to [0, 1] (only when the label is present).
      movie_id: int64 [B], title: bytes [B], passed through for the movie catalogue.
      timestamp: int64 [B], passed through for the rating models' user drift (UserDrift).
    """
    outputs = {}
    for raw, vocab in ((features.USER_ID, features.USER_VOCAB),
                       (features.MOVIE_ID, features.MOVIE_VOCAB)):
        outputs[features.transformed_name(raw)] = tft.compute_and_apply_vocabulary(
            _dense(inputs[raw], -1), num_oov_buckets=features.NUM_OOV_BUCKETS,
            vocab_filename=vocab)
    outputs[features.GENRES_XF] = _multi_hot(inputs[features.GENRES])
    outputs[features.MOVIE_ID_PASSTHROUGH] = _dense(inputs[features.MOVIE_ID], -1)
    outputs[features.TITLE_PASSTHROUGH] = _dense(inputs[features.TITLE], b"")
    outputs[features.TIMESTAMP] = _dense(inputs[features.TIMESTAMP], 0)

    year = inputs[features.YEAR]
    known = tf.cast(_dense(tf.sparse.map_values(tf.ones_like, year), 0), tf.bool)
    year = tf.cast(_dense(year, 0), tf.float64)
    # Beam sums the analyzers' partial results in an order that changes between runs: in
    # float32 the mean moved by ~5e-7 and the trained weights with it. In float64, rounded to
    # 1e-6 years, the statistics are the same every run.
    year_mean = _rounded(tft.mean(tf.boolean_mask(year, known)))
    year_std = _rounded(tf.sqrt(tft.var(tf.boolean_mask(year, known))))
    outputs[features.YEAR_XF] = tf.cast(tf.where(
        known, (year - year_mean) / tf.maximum(year_std, 1e-6), tf.zeros_like(year)), tf.float32)

    if features.LABEL_KEY in inputs:
        outputs[features.LABEL_XF] = features.scale_rating(
            _dense(inputs[features.LABEL_KEY], features.RATING_MIN))
    return outputs
