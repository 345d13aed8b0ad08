"""`preprocessing_fn` with TensorFlow Transform on a small in-memory dataset."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tfx.utils import io_utils

from models import features
from models.preprocessing import preprocessing_fn
from pipeline import configs


def _row(user, movie, rating, genres, year=None):
    row = {"user_id": [user], "movie_id": [movie], "rating": [rating], "timestamp": [1],
           "genres": [g.encode() for g in genres], "title": [b"t"], "year": []}
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


def test_genres_are_encoded_as_a_multi_valued_vocabulary(transformed):
    train, evals, output = transformed
    vocab = [v.decode() for v in output.vocabulary_by_name(features.GENRE_VOCAB)]
    assert sorted(vocab) == sorted(["Drama", "Comedy", features.NO_GENRES])
    assert [vocab[i] for i in train[1][features.GENRES_IDX]] == ["Comedy", "Drama"]
    assert list(evals[0][features.GENRES_IDX]) == [len(vocab)]  # unseen genre -> OOV


def test_year_is_z_scored_on_known_years_and_zero_when_missing(transformed):
    train, _, _ = transformed
    years = np.array([1990, 2000, 1990], dtype=np.float32)
    expected = (years - years.mean()) / years.std()
    assert [r[features.YEAR_XF] for r in train[:3]] == pytest.approx(expected, abs=1e-4)
    assert train[3][features.YEAR_XF] == 0.0


def test_transform_layer_accepts_ids_only_as_at_serving_time(transformed):
    *_, output = transformed
    layer = output.transform_features_layer()
    out = layer({"user_id": tf.constant([[1], [42]], tf.int64),
                 "movie_id": tf.constant([[10], [10]], tf.int64)})
    assert out[features.USER_IDX].numpy()[1] == 3  # unknown user -> OOV
    assert features.LABEL_XF not in out
