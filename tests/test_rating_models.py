"""The rating models' user drift (models/base.py, UserDrift): offsets from the residuals of a
user's training ratings nearest in time, "now" when no time is given, saved with the model."""

import numpy as np
import pytest
import tensorflow as tf

from models import contract, export, features, trainer
from models.base import UserDrift, user_history
from models.catalogue import Catalogue
from models.hparams import HParams, tuned

N_USERS, N_MOVIES = 30, 20


def drift(window, shrinkage):
    # User 0 rated at t = 10, 20, 30, 40 (given out of order), with residuals 1, 1, -1, -1;
    # user 1 once; user 2 never; index 3 (N_USERS here) is the OOV bucket.
    users = np.array([0, 1, 0, 0, 0], np.int64)
    times = np.array([30, 5, 10, 40, 20], np.int64)
    residuals = np.array([-1.0, 0.5, 1.0, -1.0, 1.0])
    return UserDrift(users, times, residuals, num_users=3, window=window, shrinkage=shrinkage)


def test_now_is_the_shrunk_mean_residual_of_each_users_last_ratings():
    layer = drift(window=2, shrinkage=1.0)
    now = layer(tf.constant([0, 1, 2, 3], tf.int64)).numpy()
    np.testing.assert_allclose(now, [-2 / 3, 0.5 / 2, 0.0, 0.0])


def test_at_a_time_the_window_is_the_users_ratings_nearest_to_it():
    layer = drift(window=2, shrinkage=0.0)
    users = tf.constant([0, 0, 0, 0, 0, 1, 2, 3], tf.int64)
    times = tf.constant([0, 10, 25, 35, 99, 0, 50, 50], tf.int64)
    # Before the first rating: the first two; between: the two around it; after: the last two.
    np.testing.assert_allclose(layer(users, times).numpy(),
                               [1.0, 1.0, 0.0, -1.0, -1.0, 0.5, 0.0, 0.0])
    # A window wider than the history takes all of it.
    wide = drift(window=10, shrinkage=0.0)
    np.testing.assert_allclose(wide(users[:2], times[:2]).numpy(), [0.0, 0.0], atol=1e-7)


def test_a_batch_may_mix_given_and_missing_times():
    # Served tf.Examples may leave the time out row by row (features.NO_TIMESTAMP): those rows
    # are "now"; so is any other negative time, and a time past the key range is after every
    # rating rather than one of the next user's keys.
    layer = drift(window=2, shrinkage=0.0)
    users = tf.constant([0, 0, 1, 0, 0, 1], tf.int64)
    times = tf.constant([0, features.NO_TIMESTAMP, features.NO_TIMESTAMP, -7, 2**62, 2**40],
                        tf.int64)
    np.testing.assert_allclose(layer(users, times).numpy(), [1.0, -1.0, 0.5, -1.0, -1.0, 0.5])


def test_bad_windows_and_timestamps_are_refused():
    with pytest.raises(ValueError, match="window"):
        drift(window=0, shrinkage=1.0)
    with pytest.raises(ValueError, match="timestamps"):
        UserDrift(np.array([0]), np.array([-1]), np.array([0.0]), 1, 2, 1.0)


def ratings(n=2000, seed=0, rise=1 / 500):
    """Columns whose users' ratings rise over time (by `rise` stars a time unit, 2 stars over
    the range): what a static bias cannot follow."""
    rng = np.random.default_rng(seed)
    users, movies = rng.integers(0, N_USERS, n), rng.integers(0, N_MOVIES, n)
    times = rng.integers(0, 1000, n)
    stars = np.clip(3.0 + 0.3 * rng.normal(size=N_MOVIES)[movies] + times * rise
                    + rng.normal(scale=0.3, size=n), features.RATING_MIN, features.RATING_MAX)
    genres = (rng.random((N_MOVIES, len(features.GENRE_NAMES))) < 0.2).astype(np.float32)
    years = rng.normal(size=N_MOVIES).astype(np.float32)
    columns = {features.USER_IDX: users.astype(np.int64),
               features.MOVIE_IDX: movies.astype(np.int64),
               features.GENRES_XF: genres[movies], features.YEAR_XF: years[movies],
               features.LABEL_XF: features.scale_rating(stars).astype(np.float32),
               features.TIMESTAMP: times.astype(np.int64)}
    return columns, genres, years


@pytest.fixture(scope="module", params=["bias", "mf", "neural"])
def drifted(request):
    columns, genres, years = ratings()
    # No drift_windows: the trainer leaves the drift out, fitted below by hand.
    hp = HParams(model_type=request.param, embedding_dim=4, hidden_units=(8,), max_epochs=5,
                 batch_size=256)
    model = trainer.train(hp, N_USERS, N_MOVIES, columns, verbose=0)
    static = trainer.predict_stars(model, columns)
    model.fit_user_drift(columns, columns[features.TIMESTAMP], N_USERS, window=25,
                         shrinkage=5.0)
    return model, columns, genres, years, static


def test_drift_follows_ratings_that_change_over_time(drifted):
    model, columns, _, _, static = drifted
    stars = features.unscale_rating(columns[features.LABEL_XF])
    timed = trainer.predict_stars(model, columns)  # the columns carry each rating's time
    assert np.sqrt(np.mean((timed - stars) ** 2)) < 0.8 * np.sqrt(np.mean((static - stars) ** 2))


def test_without_a_time_the_prediction_is_now_in_call_and_score_catalogue(drifted):
    model, _, genres, years, _ = drifted
    users = np.array([0, 7, N_USERS], np.int64)  # the last is the OOV bucket
    movies = {features.MOVIE_IDX: np.arange(N_MOVIES + 1, dtype=np.int64),
              features.GENRES_XF: np.vstack([genres, genres[:1]]),
              features.YEAR_XF: np.append(years, 0.0).astype(np.float32)}
    pairs = {k: np.concatenate([v] * len(users)) for k, v in movies.items()}
    pairs[features.USER_IDX] = np.repeat(users, N_MOVIES + 1)
    now = model(pairs).numpy()
    later = dict(pairs, **{features.TIMESTAMP: np.full(len(now), 10**6, np.int64)})
    np.testing.assert_allclose(now, model(later).numpy(), rtol=1e-5, atol=1e-6)
    without = model.forward({k: tf.constant(v) for k, v in pairs.items()}, False).numpy()
    offsets = model.user_drift(tf.constant(pairs[features.USER_IDX])).numpy()
    np.testing.assert_allclose(now, without + offsets, rtol=1e-5, atol=1e-6)
    assert offsets[-1] == 0.0 and np.abs(offsets).max() > 0.01  # OOV: none
    grid = model.score_catalogue(tf.constant(users), model.movie_side(movies)).numpy()
    np.testing.assert_allclose(grid, now.reshape(len(users), -1), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def exported(drifted, tmp_path_factory):
    """(the reloaded SavedModel, the in-process ServingModule, the model and its data)."""
    model, columns, genres, years, _ = drifted
    if not hasattr(model, "factors"):
        pytest.skip("one export is enough: the bias model's is the same code")
    movie_ids = np.arange(N_MOVIES, dtype=np.int64) + 100
    catalogue = Catalogue(movie_ids=movie_ids, movie_idx=np.arange(N_MOVIES, dtype=np.int64),
                          genres=genres, years=years,
                          titles=np.array([b"m"] * N_MOVIES, dtype=object))
    history = user_history(columns[features.USER_IDX], columns[features.MOVIE_IDX], N_USERS)
    module = export.ServingModule(model, list(range(1, N_USERS + 1)), N_MOVIES, catalogue,
                                  history)
    path = str(tmp_path_factory.mktemp("drift") / "model")
    export.export_serving_model(module, path)
    return tf.saved_model.load(path), module, path, drifted


# Raw user ids are the indices + 1 (ids start at 1), movie ids the indices + 100. Users 0 and 3
# at the start and the end of the ratings' time span; user 9 without a time.
USERS, MOVIES = np.array([0, 3, 0, 3, 9], np.int64), np.array([0, 5, 19, 7, 2], np.int64)
TIMES = np.array([0, 1000, 1000, 0, features.NO_TIMESTAMP], np.int64)


def model_stars(model, genres, years, users, movies, times=None):
    """The in-process model's stars for indices, at `times` when given (all >= 0) or now."""
    columns = {features.USER_IDX: users, features.MOVIE_IDX: movies,
               features.GENRES_XF: genres[movies], features.YEAR_XF: years[movies]}
    if times is not None:
        columns[features.TIMESTAMP] = times
    return trainer.predict_stars(model, columns)


def serialized(users, movies, times):
    """tf.Examples of raw ids; a negative time is left out of its example."""
    return tf.constant([contract.tf_example(
        {contract.USER_ID: u + 1, contract.MOVIE_ID: m + 100,
         **({contract.TIMESTAMP: t} if t >= 0 else {})}).SerializeToString()
        for u, m, t in zip(users, movies, times, strict=True)])


def test_the_exported_model_serves_the_drift_now_without_a_time(exported):
    loaded, _, _, (model, _, genres, years, _) = exported
    served = loaded.signatures[contract.PREDICT_IDS](
        user_id=tf.constant(USERS + 1), movie_id=tf.constant(MOVIES + 100))[contract.RATING].numpy()
    expected = model_stars(model, genres, years, USERS, MOVIES)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
    untimed = serialized(USERS, MOVIES, np.full(len(USERS), features.NO_TIMESTAMP))
    by_example = loaded.signatures[contract.SERVING_DEFAULT](examples=untimed)[contract.RATING]
    np.testing.assert_array_equal(by_example.numpy(), served)


def test_serving_default_and_regress_take_the_drift_at_the_examples_time(exported):
    loaded, module, _, (model, _, genres, years, _) = exported
    given = TIMES >= 0
    expected = model_stars(model, genres, years, USERS, MOVIES)  # now
    expected[given] = model_stars(model, genres, years, USERS[given], MOVIES[given], TIMES[given])
    # The ratings rise over time: at the start of the data the drift is far from now.
    now = model_stars(model, genres, years, USERS, MOVIES)
    assert np.abs(expected - now)[TIMES == 0].min() > 0.05
    examples = serialized(USERS, MOVIES, TIMES)  # given and missing times in one batch
    by_example = loaded.signatures[contract.SERVING_DEFAULT](examples=examples)[contract.RATING]
    np.testing.assert_allclose(by_example.numpy(), expected, rtol=1e-5, atol=1e-5)
    by_regress = loaded.signatures[contract.REGRESS](inputs=examples)[contract.REGRESS_OUTPUTS]
    np.testing.assert_array_equal(by_regress.numpy(), by_example.numpy())
    # In process, the module's functions are the signatures.
    in_process = module.serve_examples(examples)[contract.RATING]
    np.testing.assert_allclose(in_process.numpy(), by_example.numpy(), rtol=1e-6, atol=1e-6)


def test_the_warmup_requests_still_succeed(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    loaded, _, path, _ = exported
    records = list(tf.data.TFRecordDataset(f"{path}/{contract.WARMUP_FILE}"))
    assert records
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") == "regress_log":
            examples = [e.SerializeToString()
                        for e in log.regress_log.request.input.example_list.examples]
            out = loaded.signatures[contract.REGRESS](inputs=tf.constant(examples))
        else:
            request = log.predict_log.request
            out = loaded.signatures[request.model_spec.signature_name](
                **{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
        assert all(np.isfinite(v.numpy()).all() for v in out.values() if v.dtype.is_floating)


def test_the_pipelines_models_may_drift_and_the_baseline_does_not():
    # The Trainer chooses among these per run (trainer.choose_drift); the bias baseline stays
    # the blessing rules' reference, without drift.
    assert tuned("neural").drift_windows == tuned("mf").drift_windows == (10, 25, 50)
    assert tuned("neural").drift_shrinkages == tuned("mf").drift_shrinkages == (5.0, 20.0)
    assert tuned("bias").drift_windows == HParams().drift_windows == ()


def test_evaluate_scores_the_drifted_predictions(drifted):
    model, columns, *_ = drifted
    stars = features.unscale_rating(columns[features.LABEL_XF])
    rmse = np.sqrt(np.mean((features.unscale_rating(model.predict(
        tf.data.Dataset.from_tensor_slices(columns).batch(512), verbose=0).reshape(-1))
        - stars) ** 2))
    evaluated = model.evaluate(tf.data.Dataset.from_tensor_slices(columns).batch(512),
                               verbose=0, return_dict=True)["rmse"]
    assert evaluated == pytest.approx(rmse, rel=1e-4)


def test_the_trainer_fits_the_drift_when_the_columns_carry_timestamps():
    columns, _, _ = ratings()
    # drift_min_gain -1: the best candidate is kept whatever validation says.
    hp = HParams(model_type="mf", embedding_dim=4, max_epochs=2, batch_size=256,
                 drift_windows=(25,), drift_min_gain=-1.0)
    model = trainer.train(hp, N_USERS, N_MOVIES, columns, verbose=0)
    assert model.user_drift is not None and model.drift_choice.window == 25
    untimed = {k: v for k, v in columns.items() if k != features.TIMESTAMP}
    model = trainer.train(hp, N_USERS, N_MOVIES, untimed, verbose=0)
    assert model.user_drift is None and model.drift_choice is None
    off = HParams(model_type="mf", embedding_dim=4, max_epochs=2)
    assert trainer.train(off, N_USERS, N_MOVIES, columns, verbose=0).user_drift is None


@pytest.mark.parametrize("time_split", [False, True])
def test_the_trainer_keeps_the_drift_only_where_validation_says_it_helps(time_split):
    hp = HParams(model_type="mf", embedding_dim=4, max_epochs=5, batch_size=256,
                 drift_windows=(10, 25), drift_shrinkages=(5.0,), validation_fraction=0.1)
    rising, _, _ = ratings()
    model = trainer.train(hp, N_USERS, N_MOVIES, rising, verbose=0, time_split=time_split)
    choice = model.drift_choice
    # Ratings rise by 2 stars over the time range: a window of the nearest ratings follows.
    assert choice.window in (10, 25) and model.user_drift is not None
    chosen = choice.validation_rmse[f"{choice.window}/5"]
    assert chosen <= choice.validation_rmse["off"] - hp.drift_min_gain
    assert set(choice.validation_rmse) == {"off", "10/5", "25/5"}
    steady, _, _ = ratings(rise=0.0)  # the users' offsets in time are noise: drift fits it
    model = trainer.train(hp, N_USERS, N_MOVIES, steady, verbose=0, time_split=time_split)
    assert model.drift_choice.window == 0 and model.user_drift is None
    assert "off (validation RMSE" in model.drift_choice.describe()


def test_causal_drift_takes_only_the_ratings_before_each_time():
    # drift()'s ratings: user 0 at t = 10, 20, 30, 40 with residuals 1, 1, -1, -1; user 1 at 5.
    users = np.array([0, 1, 0, 0, 0], np.int64)
    times = np.array([30, 5, 10, 40, 20], np.int64)
    residuals = np.array([-1.0, 0.5, 1.0, -1.0, 1.0])
    at_users = np.array([0, 0, 0, 0, 1, 1, 2])
    at_times = np.array([10, 25, 35, 99, 5, 6, 50])
    # Window 2, shrinkage 1: user 0 at 10 has none before (0); at 25: (1 + 1) / 3; at 35: the
    # two before, 20 and 30: (1 - 1) / 3; at 99: (-1 - 1) / 3; user 1 at 5: none (its own
    # time is not before it), at 6: 0.5 / 2; user 2 has no ratings.
    np.testing.assert_allclose(
        trainer.causal_drift(users, times, residuals, at_users, at_times, 2, 1.0),
        [0.0, 2 / 3, 0.0, -2 / 3, 0.0, 0.25, 0.0])
    # After all of a user's ratings it is UserDrift's "now"; shrinkage 0 and no ratings: 0.
    layer = drift(window=2, shrinkage=1.0)
    assert trainer.causal_drift(users, times, residuals, np.array([0]), np.array([99]), 2,
                                1.0) == pytest.approx(layer(tf.constant([0], tf.int64)).numpy())
    assert trainer.causal_drift(users, times, residuals, np.array([2]), np.array([1]), 2,
                                0.0).tolist() == [0.0]


def test_a_time_split_is_one_whose_eval_ratings_are_all_newer():
    def columns(users, times):
        return {features.USER_IDX: np.array(users, np.int64),
                features.TIMESTAMP: np.array(times, np.int64)}

    # A global cut: every eval rating after every train rating.
    assert trainer.is_time_split(columns([0, 1], [1, 5]), columns([0, 1], [5, 9]))
    # Per user: user 0's eval rating (4) is after their train ratings, user 1's (7) after theirs,
    # though user 1 trained at 6, after user 0's eval rating; user 2 only evaluates.
    assert trainer.is_time_split(columns([0, 1, 1], [1, 2, 6]), columns([0, 1, 2], [4, 7, 0]))
    assert not trainer.is_time_split(columns([0, 1], [1, 6]), columns([0, 1], [5, 5]))
    assert not trainer.is_time_split(columns([], []), columns([0], [5]))
