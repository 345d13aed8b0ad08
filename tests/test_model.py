"""BiasedMF learns a planted low-rank structure; unknown ids fall back to biases."""

import numpy as np
import pytest
import tensorflow as tf

from models import data, features, trainer
from models.hparams import HParams


def planted_ratings(n_users=200, n_movies=150, n=12000, rank=3, noise=0.25, seed=0):
    """Transformed-feature columns drawn from r = mu + b_u + b_m + <p_u, q_m> + noise."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n_users, rank))
    q = rng.normal(size=(n_movies, rank))
    b_u, b_m = rng.normal(scale=0.3, size=n_users), rng.normal(scale=0.4, size=n_movies)
    users, movies = rng.integers(0, n_users, n), rng.integers(0, n_movies, n)
    stars = 3.5 + b_u[users] + b_m[movies] + np.sum(p[users] * q[movies], 1) * 0.5
    stars = np.clip(stars + rng.normal(scale=noise, size=n), features.RATING_MIN,
                    features.RATING_MAX)
    return {features.USER_IDX: users.astype(np.int64), features.MOVIE_IDX: movies.astype(np.int64),
            features.LABEL_XF: features.scale_rating(stars).astype(np.float32)}


@pytest.fixture(scope="module")
def fitted():
    columns = planted_ratings()
    fit, held_out = data.holdout(columns, 0.2, seed=1)
    hp = HParams(embedding_dim=8, max_epochs=60, batch_size=256)
    model = trainer.train(hp, 200, 150, fit)
    return model, fit, held_out


def test_biased_mf_beats_the_global_mean_by_far_on_held_out_ratings(fitted):
    model, fit, held_out = fitted
    mean = features.unscale_rating(fit[features.LABEL_XF].mean())
    baseline = np.sqrt(np.mean((features.unscale_rating(held_out[features.LABEL_XF]) - mean) ** 2))
    rmse = trainer.rmse_in_stars(model, held_out)
    assert baseline > 0.85  # the planted structure leaves much to learn
    assert rmse < 0.6 * baseline, (rmse, baseline)


def test_unknown_ids_get_global_mean_plus_the_known_side_bias(fitted):
    model, *_ = fitted
    oov_user, known_movie = 200, 5
    both = {features.USER_IDX: tf.constant([oov_user]),
            features.MOVIE_IDX: tf.constant([known_movie])}
    squash = tf.sigmoid if model.squash else tf.identity
    logit = model.global_bias + model.movie_bias(tf.constant([known_movie]))[0, 0]
    assert float(model(both)[0]) == pytest.approx(float(squash(logit)), abs=1e-6)
    nobody = {features.USER_IDX: tf.constant([oov_user]), features.MOVIE_IDX: tf.constant([150])}
    assert float(model(nobody)[0]) == pytest.approx(float(squash(model.global_bias)), abs=1e-6)


def test_hparams_reject_unknown_keys_and_models():
    with pytest.raises(ValueError, match="unknown hyper-parameters \\['embeding_dim'\\]"):
        HParams.from_config({"embeding_dim": 8})
    with pytest.raises(ValueError, match="model_type"):
        HParams(model_type="svd")
    assert HParams.from_config(HParams(l2=0.5).to_config()) == HParams(l2=0.5)
