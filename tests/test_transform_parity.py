"""Transform and the exported model give the rating model the same features.

The exported model does not carry Transform's graph: models/export.py rebuilds the id lookups as
hash tables from Transform's vocabulary files and stores each movie's transformed content in its
catalogue (cheaper per request than Transform's layer). Two definitions of the same features, so
this checks them against each other on the pipeline's own Transform output: every vocabulary
entry and a sample of raw examples go through Transform (`TFTransformOutput
.transform_raw_features`) and through the exported model's input path (`model_inputs`, the code
every signature runs), and must come out the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from models import contract, features
from pipeline.pipeline import EXAMPLE_GEN_ID, TRANSFORM_ID

pytestmark = pytest.mark.e2e
SAMPLE = 500  # raw eval examples, besides one train example per vocabulary entry
UNKNOWN_ID = 10**9  # and ids never rated, from here up


def _only(pattern: str, root: Path) -> Path:
    (path,) = root.glob(pattern)
    return path


def _records(pipeline_root: Path, split: str) -> list[bytes]:
    folder = _only(f"{EXAMPLE_GEN_ID}/examples/*/Split-{split}", pipeline_root)
    files = [str(f) for f in sorted(folder.glob("*.gz"))]
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _with_id(record: bytes, feature: str, value: int) -> bytes:
    example = tf.train.Example.FromString(record)
    example.features.feature[feature].int64_list.value[:] = [value]
    return example.SerializeToString()


def _ids(records: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    spec = {k: tf.io.FixedLenFeature([], tf.int64) for k in (features.USER_ID, features.MOVIE_ID)}
    parsed = tf.io.parse_example(records, spec)
    return parsed[features.USER_ID].numpy(), parsed[features.MOVIE_ID].numpy()


@pytest.fixture(scope="module")
def both_paths(pushed_model):
    """((user ids, movie ids), Transform's features, the exported model's features,
    vocabularies), of the same raw examples."""
    base_path, _, pipeline_root = pushed_model
    transform_output = tft.TFTransformOutput(
        str(_only(f"{TRANSFORM_ID}/transform_graph/*", pipeline_root)))
    vocabularies = {name: [int(v) for v in transform_output.vocabulary_by_name(name)]
                    for name in (features.USER_VOCAB, features.MOVIE_VOCAB)}

    # One train example of every user and every movie of the vocabularies (they were computed
    # on the train split), a sample of the eval split, and some of those for users never seen.
    train = _records(pipeline_root, "train")
    users, movies = _ids(train)
    first = {}
    for i, (user, movie) in enumerate(zip(users, movies, strict=True)):
        first.setdefault(("user", user), i)
        first.setdefault(("movie", movie), i)
    records = [train[i] for i in sorted(set(first.values()))]
    eval_records = _records(pipeline_root, "eval")
    eval_users, eval_movies = _ids(eval_records)
    unknown = {i for i, (user, movie) in enumerate(zip(eval_users, eval_movies, strict=True))
               if ("user", user) not in first or ("movie", movie) not in first}
    rng = np.random.default_rng(0)
    sample = set(rng.choice(len(eval_records), min(SAMPLE, len(eval_records)), replace=False))
    records += [eval_records[i] for i in sorted(unknown | sample)]
    records += [_with_id(eval_records[i], features.USER_ID, UNKNOWN_ID + i)
                for i in sorted(sample)[:50]]

    raw = tf.io.parse_example(records, transform_output.raw_feature_spec())
    transformed = transform_output.transform_raw_features(raw)
    by_transform = {k: transformed[k].numpy() for k in features.MODEL_INPUTS}

    user_ids, movie_ids = _ids(records)
    model = _exported_model(base_path)  # kept: its functions read the model's variables
    exported = model.model_inputs(
        **{contract.USER_ID: tf.constant(user_ids), contract.MOVIE_ID: tf.constant(movie_ids)})
    by_model = {k: exported[k].numpy() for k in features.MODEL_INPUTS}
    return (user_ids, movie_ids), by_transform, by_model, vocabularies


def _exported_model(base_path: Path):
    """The pushed SavedModel; callers keep it while they call its functions (the catalogue is
    in its variables, which go with it)."""
    (version,) = [p for p in base_path.iterdir() if p.name.isdigit()]
    return tf.saved_model.load(str(version))


def test_every_vocabulary_entry_and_unknown_ids_are_in_the_comparison(both_paths):
    (user_ids, movie_ids), by_transform, _, vocabularies = both_paths
    assert set(vocabularies[features.USER_VOCAB]) <= set(user_ids.tolist())
    assert set(vocabularies[features.MOVIE_VOCAB]) <= set(movie_ids.tolist())
    # Users never seen: both paths' OOV bucket.
    assert (by_transform[features.USER_IDX] == len(vocabularies[features.USER_VOCAB])).sum() \
        >= 50


@pytest.mark.parametrize("feature", [features.USER_IDX, features.MOVIE_IDX, features.GENRES_XF])
def test_ids_and_genres_are_identical(both_paths, feature):
    _, by_transform, by_model, _ = both_paths
    np.testing.assert_array_equal(by_model[feature], by_transform[feature])


def test_a_movie_never_rated_gets_transforms_oov_index(pushed_model, both_paths):
    """Outside the catalogue, the model knows no content of the movie (predict_ids refuses it,
    serving_default predicts as for any unknown movie); its index is Transform's OOV one."""
    base_path, _, pipeline_root = pushed_model
    _, _, _, vocabularies = both_paths
    model = _exported_model(base_path)  # kept: its functions read the model's variables
    exported = model.model_inputs(
        **{contract.USER_ID: tf.constant([1, UNKNOWN_ID], tf.int64),
           contract.MOVIE_ID: tf.constant([UNKNOWN_ID, UNKNOWN_ID], tf.int64)})
    oov = len(vocabularies[features.MOVIE_VOCAB])
    transform_output = tft.TFTransformOutput(
        str(_only(f"{TRANSFORM_ID}/transform_graph/*", pipeline_root)))
    record = _with_id(_records(pipeline_root, "train")[0], features.MOVIE_ID, UNKNOWN_ID)
    transformed = transform_output.transform_raw_features(
        tf.io.parse_example([record], transform_output.raw_feature_spec()))
    assert transformed[features.MOVIE_IDX].numpy().tolist() == [oov]
    assert exported[features.MOVIE_IDX].numpy().tolist() == [oov, oov]


def test_release_years_are_transforms_z_scores(both_paths):
    _, by_transform, by_model, _ = both_paths
    # The catalogue stores Transform's own outputs; only float rounding may differ.
    np.testing.assert_allclose(by_model[features.YEAR_XF], by_transform[features.YEAR_XF],
                               rtol=1e-6, atol=1e-7)
