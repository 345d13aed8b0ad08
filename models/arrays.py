"""Transformed examples as in-memory arrays, one per column: reading them from the TFRecords,
holding out a validation set, and batching them into a tf.data.Dataset for Keras.

The pipeline's Transform does not write transformed examples (its Beam pass over every rating
cost twice its analysis); the Trainer reads the ExampleGen's raw examples and applies
Transform's graph here, in TensorFlow, batch by batch (`transform`).

Training from arrays is several times faster than re-parsing TFRecords every epoch. The columns
are held narrow (HELD_DTYPES: int32 ids, the genre multi-hot as uint8: 28 bytes a rating
instead of 96) and widened per batch to what the models read (widen): with the year, label and
timestamp a training row is 44 bytes, ml-32m's training columns about 1.4 GB. Called by
models/trainer.py (run_fn, train) and the first stages' training
(models/item_item_training.py, models/retrieval_training.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from models import features

# How read_batches holds these columns, and the dtype the models read them in (widen). The values
# are exact in both: vocabulary indices < 2^31, a multi-hot of 0s and 1s.
HELD_DTYPES = {features.USER_IDX: np.int32, features.MOVIE_IDX: np.int32,
               features.GENRES_XF: np.uint8}
MODEL_DTYPES = {features.USER_IDX: tf.int64, features.MOVIE_IDX: tf.int64,
                features.GENRES_XF: tf.float32}


# Raw features parsed -> transformed features, on a batch (Transform's graph as a Keras layer:
# tft.TFTransformOutput.transform_features_layer()).
Transform = Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]


def read_batches(file_patterns: Iterable[str], feature_spec: dict, columns: Sequence[str],
                 batch_size: int = 16384, transform: Transform | None = None
                 ) -> Iterator[dict[str, np.ndarray]]:
    """Gzipped TFRecords of tf.Examples, files in sorted order -> {column: array [B, ...]} per
    batch of records, the HELD_DTYPES columns narrowed.

    Without `transform` the examples are transformed ones, parsed for `columns` of
    `feature_spec`; with it they are raw, parsed with `feature_spec` (every raw feature) and
    transformed, in the tf.data pipeline's parallel map."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no examples match {list(file_patterns)}")
    if transform is None:
        spec = {c: feature_spec[c] for c in columns}

        def parse(records: tf.Tensor) -> dict[str, tf.Tensor]:
            return tf.io.parse_example(records, spec)
    else:
        def parse(records: tf.Tensor) -> dict[str, tf.Tensor]:
            transformed = transform(tf.io.parse_example(records, feature_spec))
            return {c: transformed[c] for c in columns}

    dataset = (tf.data.TFRecordDataset(files, compression_type="GZIP")
               .batch(batch_size)
               .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
               .prefetch(1))
    for batch in dataset:
        yield {c: _held(c, batch[c].numpy()) for c in columns}


def collect(batches: Iterable[dict[str, np.ndarray]], columns: Sequence[str]
            ) -> dict[str, np.ndarray]:
    """{column: array [B, ...]} per batch -> {column: array [N, ...]}, the `columns` only."""
    chunks: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for batch in batches:
        for c in columns:
            chunks[c].append(batch[c])
    return {c: np.concatenate(v) for c, v in chunks.items()}


def _held(column: str, values: np.ndarray) -> np.ndarray:
    dtype = HELD_DTYPES.get(column)
    return values if dtype is None else values.astype(dtype)


def widen(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """A batch with the HELD_DTYPES columns cast to the dtypes the models read (MODEL_DTYPES);
    the other columns as they are."""
    return {k: (tf.cast(v, MODEL_DTYPES[k]) if k in MODEL_DTYPES and v.dtype != MODEL_DTYPES[k]
                else v) for k, v in batch.items()}


def sort_rows(data: dict[str, np.ndarray], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The rows in ascending order of the `keys` columns (the first the most significant), ties
    kept in their order. Beam writes the Transform's shards, and the records in them, in an order
    that can change between runs on the same data; holdout draws rows by position and training
    batches by index, so the Trainer puts its rows in this order first, and the same data gives
    the same model."""
    order = np.lexsort([data[k].reshape(len(data[k]), -1)[:, 0] for k in reversed(keys)])
    return {k: v[order] for k, v in data.items()}


def holdout(data: dict[str, np.ndarray], fraction: float, seed: int
            ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Splits columns into (train, validation), `fraction` of the rows drawn at random."""
    n = len(next(iter(data.values())))
    rng = np.random.default_rng(seed)
    is_val = rng.random(n) < fraction
    return ({k: v[~is_val] for k, v in data.items()}, {k: v[is_val] for k, v in data.items()})


def to_dataset(data: dict[str, np.ndarray], batch_size: int, shuffle_seed: int | None = None
               ) -> tf.data.Dataset:
    """In-memory columns -> batched tf.data.Dataset of dicts, reshuffled each epoch if seeded.

    Shuffled, each epoch draws one permutation of the row indices (a single op) and gathers whole
    batches from the columns, where Dataset.shuffle would pass every example through a buffer of
    the whole data set one at a time: the MF epoch's input went from 0.32 s to 0.05 s on
    ml-latest-small (docs/benchmarks.md, "Training throughput"). The orders depend on the seed
    only: a new one each epoch, the same sequence in every run with that seed. The number of
    batches stays known, which Keras' steps_per_execution needs."""
    n = len(next(iter(data.values())))
    if shuffle_seed is None:
        return tf.data.Dataset.from_tensor_slices(data).batch(batch_size).map(widen).prefetch(
            tf.data.AUTOTUNE)
    columns = {k: tf.constant(v) for k, v in data.items()}

    def epoch(epoch_seed: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([epoch_seed, tf.constant(0, tf.int64)]))
        return tf.data.Dataset.range(0, n, batch_size).map(
            lambda start: widen({k: tf.gather(v, order[start:start + batch_size])
                                 for k, v in columns.items()}))

    # Dataset.random draws again at each iteration (epoch): a new seed, hence order, per epoch.
    return (tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).take(1)
            .flat_map(epoch)
            .apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
            .prefetch(tf.data.AUTOTUNE))
