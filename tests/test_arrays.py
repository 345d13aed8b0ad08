"""models/arrays.py and catalogue.Collector on real gzipped TFRecords: the training columns
are held narrow with their values unchanged, the catalogue collected batch by batch is the one
built from every row, and a model trained on narrow columns is the model trained on wide ones."""

import numpy as np
import tensorflow as tf

from models import arrays, features, trainer
from models.catalogue import COLUMNS as CATALOGUE_COLUMNS
from models.catalogue import Catalogue, Collector
from models.hparams import HParams

GENRES = len(features.GENRE_NAMES)
SPEC = {
    features.USER_IDX: tf.io.FixedLenFeature([], tf.int64),
    features.MOVIE_IDX: tf.io.FixedLenFeature([], tf.int64),
    features.GENRES_XF: tf.io.FixedLenFeature([GENRES], tf.float32),
    features.YEAR_XF: tf.io.FixedLenFeature([], tf.float32),
    features.LABEL_XF: tf.io.FixedLenFeature([], tf.float32),
    features.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
    features.MOVIE_ID_PASSTHROUGH: tf.io.FixedLenFeature([], tf.int64),
    features.TITLE_PASSTHROUGH: tf.io.FixedLenFeature([], tf.string),
}


def rows(n: int, seed: int, oov_from: int | None = None) -> dict[str, np.ndarray]:
    """Transformed rows of 40 movies; movie m has id 1000 + m, its own genres, year and title.
    With oov_from, movies from that index on carry the OOV index 40 (an eval split's new ones)."""
    rng = np.random.default_rng(seed)
    genres = (np.random.default_rng(0).random((40, GENRES)) < 0.2).astype(np.float32)
    movies = rng.integers(0, 40, n)
    idx = movies if oov_from is None else np.where(movies >= oov_from, 40, movies)
    return {features.USER_IDX: rng.integers(0, 30, n), features.MOVIE_IDX: idx,
            features.GENRES_XF: genres[movies], features.YEAR_XF: (movies / 40).astype(np.float32),
            features.LABEL_XF: rng.random(n).astype(np.float32),
            features.TIMESTAMP: rng.integers(10**9, 2 * 10**9, n),
            features.MOVIE_ID_PASSTHROUGH: 1000 + movies,
            features.TITLE_PASSTHROUGH: np.array([f"Movie {m}".encode() for m in movies], object)}


def write(path, columns: dict[str, np.ndarray]) -> None:
    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        value = np.atleast_1d(value)
        if value.dtype.kind == "f":
            return tf.train.Feature(float_list=tf.train.FloatList(value=value))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=value))

    n = len(columns[features.USER_IDX])
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for i in range(n):
            example = tf.train.Example(features=tf.train.Features(
                feature={k: feature(v[i]) for k, v in columns.items()}))
            writer.write(example.SerializeToString())


def test_read_batches_holds_ids_and_genres_narrow_with_their_values(tmp_path):
    parts = [rows(300, 1), rows(200, 2)]
    for i, part in enumerate(parts):
        write(tmp_path / f"part-{i}.gz", part)
    loaded = arrays.collect(arrays.read_batches([str(tmp_path / "part-*.gz")], SPEC,
                                                trainer.TIME_COLUMNS, batch_size=64),
                            trainer.TIME_COLUMNS)
    for column in trainer.TIME_COLUMNS:
        expected = np.concatenate([p[column] for p in parts])
        assert loaded[column].dtype == arrays.HELD_DTYPES.get(column, expected.dtype), column
        np.testing.assert_array_equal(loaded[column], expected, err_msg=column)
    batch = next(iter(arrays.to_dataset(loaded, 8)))
    assert {k: v.dtype for k, v in batch.items() if k in arrays.MODEL_DTYPES} == \
        arrays.MODEL_DTYPES


def test_the_catalogue_read_batch_by_batch_is_the_one_built_from_every_row(tmp_path):
    train, eval_ = rows(500, 3), rows(300, 4, oov_from=30)
    for name, part in (("train", train), ("eval", eval_)):
        (tmp_path / name).mkdir()
        write(tmp_path / name / "part-0.gz", {k: v[:200] for k, v in part.items()})
        write(tmp_path / name / "part-1.gz", {k: v[200:] for k, v in part.items()})
    collector = Collector()
    for split in ("train", "eval"):
        batches = arrays.read_batches([str(tmp_path / split / "*")], SPEC, CATALOGUE_COLUMNS,
                                      batch_size=64)
        for _ in collector.watch(batches):
            pass
    streamed = collector.catalogue()
    whole = Catalogue.from_columns({c: train[c] for c in CATALOGUE_COLUMNS},
                                   {c: eval_[c] for c in CATALOGUE_COLUMNS})
    assert len(streamed) == len(whole) > 30
    for field in ("movie_ids", "movie_idx", "genres", "years", "titles"):
        np.testing.assert_array_equal(getattr(streamed, field), getattr(whole, field), field)


def test_a_model_trained_on_narrow_columns_is_the_model_trained_on_wide_ones():
    wide = {k: v for k, v in rows(3000, 5).items() if k in trainer.TIME_COLUMNS}
    narrow = {k: v.astype(arrays.HELD_DTYPES.get(k, v.dtype)) for k, v in wide.items()}
    hp = HParams(model_type="neural", embedding_dim=8, hidden_units=(16,), max_epochs=2,
                 batch_size=256, drift_windows=(5,), new_user_shrinkages=(5.0,))
    predictions = []
    for columns in (wide, narrow):
        model = trainer.train(hp, 30, 40, columns, verbose=0)
        predictions.append(trainer.predict_scaled(model, wide))
    np.testing.assert_array_equal(predictions[0], predictions[1])
