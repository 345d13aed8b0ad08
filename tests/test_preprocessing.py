"""`preprocessing_fn` with TensorFlow Transform on a small in-memory dataset, and the Trainer's
read (models/trainer.py read_split: raw TFRecords through Transform's graph in TensorFlow) giving
what TFT's Beam transform gives."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx.utils import io_utils

from models import catalogue, features, trainer
from models.preprocessing import preprocessing_fn
from pipeline import configs


def _row(user, movie, rating, genres, year=None):
    row = {"user_id": [user], "movie_id": [movie], "rating": [rating], "timestamp": [1],
           "genres": [g.encode() for g in genres], "title": [b"t"], "year": [],
           # Evaluation slices: in the schema, ignored by preprocessing_fn.
           features.USER_ACTIVITY: [b"1-19"], features.MOVIE_POPULARITY: [b"1-19"]}
    if year is not None:
        row["year"] = [year]
    return row


TRAIN = [
    _row(1, 10, 5.0, ["Drama"], 1990),
    _row(1, 20, 0.5, ["Comedy", "Drama"], 2000),
    _row(2, 10, 3.0, ["Drama"], 1990),
    _row(3, 30, 4.0, [features.NO_GENRES]),
]
EVAL = [_row(99, 10, 2.75, ["Horror"], 2010)]  # unseen user, unseen genre


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    schema = io_utils.SchemaReader().read(str(configs.SCHEMA_PATH))
    metadata = dataset_metadata.DatasetMetadata(schema)
    temp = tmp_path_factory.mktemp("tft")
    with tft_beam.Context(temp_dir=str(temp)):
        (train_out, _), transform_fn = (TRAIN, metadata) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing_fn)
        eval_out, _ = ((EVAL, metadata), transform_fn) | tft_beam.TransformDataset()
        out_dir = temp / "transform_fn"
        _ = transform_fn | tft_beam.WriteTransformFn(str(out_dir))
    # The raw features' spec, as TFX's Transform executor writes it beside the graph.
    metadata_io.write_metadata(metadata, str(out_dir / tft.TFTransformOutput.RAW_METADATA_DIR))
    return train_out, eval_out, tft.TFTransformOutput(str(out_dir))


def test_ids_get_vocabulary_indices_and_unseen_ids_the_oov_bucket(transformed):
    train, evals, output = transformed
    users = [r[features.USER_IDX] for r in train]
    assert users[0] == users[1] != users[2]  # same user, same index
    n_users = output.vocabulary_size_by_name(features.USER_VOCAB)
    assert n_users == 3
    assert evals[0][features.USER_IDX] == n_users  # the OOV bucket
    n_movies = output.vocabulary_size_by_name(features.MOVIE_VOCAB)
    assert n_movies == 3
    assert evals[0][features.MOVIE_IDX] == train[0][features.MOVIE_IDX]  # movie 10 is known


def test_rating_is_scaled_to_unit_range(transformed):
    train, evals, _ = transformed
    assert [r[features.LABEL_XF] for r in train] == pytest.approx([1.0, 0.0, 0.5556, 0.7778],
                                                                   abs=1e-3)
    assert evals[0][features.LABEL_XF] == pytest.approx(0.5)
    assert features.unscale_rating(features.scale_rating(3.5)) == pytest.approx(3.5)


def test_genres_are_a_multi_hot_over_the_fixed_genre_list(transformed):
    train, evals, _ = transformed

    def genres(row):
        hot = row[features.GENRES_XF]
        assert hot.shape == (len(features.GENRE_NAMES),) and set(hot) <= {0.0, 1.0}
        return [g for g, v in zip(features.GENRE_NAMES, hot, strict=True) if v]

    assert genres(train[1]) == ["Comedy", "Drama"]
    assert genres(train[3]) == [features.NO_GENRES]
    assert genres(evals[0]) == ["Horror"]  # a fixed list: no vocabulary, nothing unseen


def test_movie_id_and_title_pass_through_for_the_catalogue(transformed):
    train, _, _ = transformed
    assert [r[features.MOVIE_ID_PASSTHROUGH] for r in train] == [10, 20, 10, 30]
    assert train[0][features.TITLE_PASSTHROUGH] == b"t"


def test_year_is_z_scored_on_known_years_and_zero_when_missing(transformed):
    train, _, _ = transformed
    years = np.array([1990, 2000, 1990], dtype=np.float32)
    expected = (years - years.mean()) / years.std()
    assert [r[features.YEAR_XF] for r in train[:3]] == pytest.approx(expected, abs=1e-4)
    assert train[3][features.YEAR_XF] == 0.0


def test_user_vocabulary_lists_ids_by_index_as_the_exported_model_reads_it(transformed):
    # models/export.py builds its user-id table from this file: entry i is the id of index i.
    train, _, output = transformed
    vocabulary = [int(v) for v in output.vocabulary_by_name(features.USER_VOCAB)]
    raw_users = [row["user_id"][0] for row in TRAIN]
    assert [vocabulary[r[features.USER_IDX]] for r in train] == raw_users


def test_evaluation_slices_are_not_model_inputs(transformed):
    train, _, output = transformed
    assert not set(features.SLICE_FEATURES) & set(output.transformed_feature_spec())
    assert not set(features.SLICE_FEATURES) & set(train[0])


def _write_raw(path, rows: list[dict]) -> None:
    """Raw rows as the ExampleGen writes them: gzipped TFRecords of tf.Examples."""
    def feature(values):
        if values and isinstance(values[0], bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if values and isinstance(values[0], float):
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for row in rows:
            writer.write(tf.train.Example(features=tf.train.Features(
                feature={k: feature(v) for k, v in row.items()})).SerializeToString())


def test_the_trainers_read_transforms_raw_examples_as_beam_does(transformed, tmp_path):
    train, evals, output = transformed
    _write_raw(tmp_path / "train.gz", TRAIN)
    _write_raw(tmp_path / "eval.gz", EVAL)
    collector = catalogue.Collector()
    read = [trainer.read_split([str(tmp_path / name)], output, collector)
            for name in ("train.gz", "eval.gz")]
    for columns, rows in zip(read, (train, evals), strict=True):
        assert set(columns) == set(trainer.TIME_COLUMNS)
        for c in trainer.TIME_COLUMNS:
            expected = np.array([row[c] for row in rows])
            np.testing.assert_array_equal(columns[c].astype(expected.dtype), expected, err_msg=c)
    movies = collector.catalogue()
    assert movies.movie_ids.tolist() == [10, 20, 30]
    assert movies.movie_idx.tolist() == [train[i][features.MOVIE_IDX] for i in (0, 1, 3)]
    assert movies.titles.tolist() == [b"t"] * 3
