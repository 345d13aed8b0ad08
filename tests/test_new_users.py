"""What a rating model predicts for users it has never seen (models/new_users.py and
RatingModel.fit_new_users): each movie's shrunk mean rating, with the shrinkage chosen on the
training data's own new users."""

import numpy as np
import pytest
import tensorflow as tf

from models import features, new_users
from models.hparams import tuned
from models.trainer import build_model


def test_movie_means_shrink_each_movies_mean_toward_the_global_mean():
    movies = np.array([0, 0, 1, 3, 2])  # 3 is the OOV bucket of a 3-movie vocabulary
    labels = np.array([1.0, 0.8, 0.2, 0.0, 0.6])
    table = new_users.movie_means(movies, labels, num_movies=3, shrinkage=2.0)
    mu = (1.0 + 0.8 + 0.2 + 0.6) / 4  # the OOV row's rating is not data
    np.testing.assert_allclose(table, [mu + (1.8 - 2 * mu) / 4, mu + (0.2 - mu) / 3,
                                       mu + (0.6 - mu) / 3, mu]
                               + [mu] * (features.NUM_OOV_BUCKETS - 1), rtol=1e-6)
    unshrunk = new_users.movie_means(movies, labels, num_movies=3, shrinkage=0.0)
    np.testing.assert_allclose(unshrunk[:3], [0.9, 0.2, 0.6], rtol=1e-6)
    with pytest.raises(ValueError, match="shrinkage"):
        new_users.movie_means(movies, labels, 3, -1.0)


def test_the_holdout_is_the_newest_periods_newcomers_else_random_users():
    users = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    times = np.array([1, 9, 2, 3, 8, 9, 4, 5])
    rows, said = new_users.new_user_holdout(users, times, fraction=0.25, min_ratings=2, seed=0)
    # The newest quarter starts at t = 8.25; users 0 and 2 rated before it: no newcomer, so a
    # quarter of the users (one, with both their ratings) instead.
    assert rows.sum() == 2 and len(np.unique(users[rows])) == 1
    assert said == "2 ratings of 1 users held out at random"
    times = np.array([1, 2, 2, 3, 8, 9, 4, 5])
    rows, said = new_users.new_user_holdout(users, times, fraction=0.3, min_ratings=2, seed=0)
    np.testing.assert_array_equal(rows, [False, False, False, False, True, True, False, False])
    assert said == "2 ratings by 1 users new in the last 30% of the training period"
    rows, _ = new_users.new_user_holdout(users, None, fraction=0.5, min_ratings=2, seed=0)
    assert len(np.unique(users[rows])) == 2 and rows.sum() == 4  # whole users


def test_debiased_biases_recover_planted_movie_effects_that_raw_means_confound():
    # Harsh users (-0.3) rate only movie 0, lenient ones (+0.3) only movie 1: both movies are
    # equally good, but their raw means differ by 0.6.
    users = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    movies = np.array([0, 2, 0, 2, 1, 2, 1, 2, 2, 2])
    effect = np.array([-0.3, -0.3, 0.3, 0.3, 0.0])
    labels = 0.5 + effect[users]
    raw = new_users.table("mean", users, movies, labels, 3, 0.0)
    debiased = new_users.table("debiased", users, movies, labels, 3, 0.0, )
    assert raw[1] - raw[0] == pytest.approx(0.6, abs=1e-6)
    assert abs(debiased[1] - debiased[0]) < 0.05
    with pytest.raises(ValueError, match="unknown new-user rating kind 'median'"):
        new_users.table("median", users, movies, labels, 3, 0.0)


def test_the_choice_is_the_kind_and_shrinkage_of_least_mae_on_the_held_out_users():
    rng = np.random.default_rng(4)  # a draw where RMSE would pick another table than MAE
    n_movies, n_users = 50, 400
    quality = rng.normal(0.6, 0.15, n_movies)
    users = np.repeat(np.arange(n_users), 8)
    movies = rng.integers(0, n_movies, len(users))
    labels = np.clip(quality[movies] + rng.normal(0, 0.2, len(users)), 0, 1)
    choice = new_users.choose(users, movies, labels, None, n_movies, (0.0, 3.0, 1000.0), 0.2,
                              10, seed=1)
    keys = {f"{k}/{s}" for k in new_users.KINDS for s in ("0", "3", "1000")}
    assert set(choice.validation_rmse) == set(choice.validation_mae) == keys
    best = min(choice.validation_mae, key=choice.validation_mae.get)
    assert choice.key == best
    assert choice.key != min(choice.validation_rmse, key=choice.validation_rmse.get)
    # Movies differ, so a table shrunk to the global mean predicts far worse.
    assert choice.validation_mae["mean/1000"] > choice.validation_mae[best] + 0.05
    assert choice.validation_rmse["mean/1000"] > choice.validation_rmse[best] + 0.1
    assert "held out at random" in choice.validated_on


def test_an_unknown_user_gets_the_table_in_call_and_score_catalogue_and_known_users_do_not():
    num_users, num_movies = 3, 4
    model = build_model(tuned("mf", embedding_dim=4), num_users, num_movies, 0.5, None)
    movies = np.array([0, 1, 2, 3, 0], np.int64)
    columns = {features.USER_IDX: np.array([0, 1, 2, 0, 1], np.int64),
               features.MOVIE_IDX: movies,
               features.LABEL_XF: np.array([0.9, 0.1, 0.5, 0.7, 0.3], np.float32)}
    pairs = {features.USER_IDX: tf.constant([0, num_users, num_users], tf.int64),
             features.MOVIE_IDX: tf.constant([1, 1, num_movies], tf.int64)}
    before = model(pairs).numpy()
    model.fit_new_users(columns, num_users, num_movies, "mean", shrinkage=1.0)
    table = new_users.movie_means(movies, columns[features.LABEL_XF], num_movies, 1.0)
    after = model(pairs).numpy()
    np.testing.assert_allclose(after, [before[0], table[1], table[num_movies]], rtol=1e-6)
    side = model.movie_side({features.MOVIE_IDX: tf.constant(np.arange(num_movies))})
    grid = model.score_catalogue(tf.constant([1, num_users], tf.int64), side).numpy()
    np.testing.assert_allclose(grid[1], table[:num_movies], rtol=1e-6)
    known = model(
        {features.USER_IDX: tf.constant([1] * num_movies, tf.int64),
         features.MOVIE_IDX: tf.constant(np.arange(num_movies))}).numpy()
    np.testing.assert_allclose(grid[0], known, rtol=1e-5)
