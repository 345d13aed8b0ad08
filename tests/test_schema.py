"""The curated schema agrees with models/features.py and loads as TFX reads it."""

import pytest
from tensorflow_transform.tf_metadata import schema_utils
from tfx.utils import io_utils

from models import features
from pipeline import configs


@pytest.fixture(scope="module")
def schema():
    return io_utils.SchemaReader().read(str(configs.SCHEMA_PATH))


def test_schema_features_match_the_feature_names(schema):
    assert {f.name for f in schema.feature} == set(features.RAW_FEATURES) | set(
        features.SLICE_FEATURES)


def test_slice_features_are_not_expected_at_serving_time(schema):
    by_name = {f.name: f for f in schema.feature}
    for name in features.SLICE_FEATURES:
        assert list(by_name[name].not_in_environment) == ["SERVING"], name


def test_rating_domain_and_genre_vocabulary(schema):
    by_name = {f.name: f for f in schema.feature}
    rating = by_name[features.RATING]
    assert (rating.float_domain.min, rating.float_domain.max) == (
        features.RATING_MIN, features.RATING_MAX)
    assert list(rating.not_in_environment) == ["SERVING"]
    genres = {d.name: d for d in schema.string_domain}["genres"]
    assert tuple(genres.value) == features.GENRE_NAMES
    assert len(features.GENRE_NAMES) == 20


def test_required_features_parse_as_fixed_length(schema):
    spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    for name in (features.USER_ID, features.MOVIE_ID, features.RATING, features.TIMESTAMP):
        assert spec[name].shape == [1], name
    assert type(spec[features.GENRES]).__name__ == "VarLenFeature"
    assert type(spec[features.YEAR]).__name__ == "VarLenFeature"
