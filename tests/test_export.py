"""The serving module (models/export.py) on a bias model with known weights, in process: what
each signature computes for raw ids, worked out by hand. No training, so these run in seconds;
test_model.py and test_retrieval.py check the same signatures on trained and saved models.

bench/mutations.py names these tests as the ones that must catch its mutations of export.py.
"""

import numpy as np
import pytest
import tensorflow as tf

from models import contract, export, features, retrieval, trainer
from models.base import UserDrift, row_ids, user_history
from models.catalogue import Catalogue
from models.hparams import HParams, RetrievalHParams

USERS = [11, 12, 13]  # raw ids of the user vocabulary's indices 0, 1, 2
MOVIES = np.array([101, 102, 103, 104], np.int64)  # raw ids of movie indices 0-3
# Scaled ratings: stars = 0.5 + 4.5 * scaled.
MU = 0.5
B_U = [0.1, -0.2, 0.0, 9.0]  # the OOV row's 9.0 must never be used
B_M = [0.3, 0.2, 0.1, -0.1, 9.0]


def stars(scaled):
    return 0.5 + 4.5 * np.asarray(scaled)


def catalogue() -> Catalogue:
    return Catalogue(movie_ids=MOVIES, movie_idx=np.arange(4, dtype=np.int64),
                     genres=np.zeros((4, len(features.GENRE_NAMES)), np.float32),
                     years=np.zeros(4, np.float32),
                     titles=np.array([f"Movie {m}".encode() for m in MOVIES], dtype=object))


def bias_model():
    model = trainer.build_model(HParams(model_type="bias"), 3, 4, MU)
    model.movie_side({features.MOVIE_IDX: tf.constant([0], tf.int64)})
    model.biases.user(tf.constant([0], tf.int64))
    model.biases.user_bias.embeddings.assign(np.array(B_U, np.float32)[:, None])
    model.biases.movie_bias.embeddings.assign(np.array(B_M, np.float32)[:, None])
    return model


# User 11 rated movie 101; users 12 and 13 nothing.
HISTORY = user_history(np.array([0]), np.array([0]), 3)


@pytest.fixture(scope="module")
def module():
    return export.ServingModule(bias_model(), USERS, 4, catalogue(), HISTORY)


def predict_ids(module, users, movies):
    return module.predict_ids(user_id=tf.constant(users, tf.int64),
                              movie_id=tf.constant(movies, tf.int64))[contract.RATING].numpy()


def test_predict_ids_is_mu_plus_the_biases_of_the_raw_ids_and_an_unknown_user_has_none(module):
    # User 11 (b_u 0.1) and movie 103 (b_m 0.1): 0.5 + 0.1 + 0.1 = 0.7 -> 3.65 stars; user 12
    # (-0.2) and 101 (0.3): 0.6 -> 3.2; an unknown user (999) and 102: 0.5 + 0.2 = 0.7 -> 3.65,
    # not user 11's 0.8 (the first vocabulary entry) nor the OOV row's.
    np.testing.assert_allclose(predict_ids(module, [11, 12, 999], [103, 101, 102]),
                               stars([0.7, 0.6, 0.7]), rtol=1e-6)


def test_predict_ids_refuses_user_id_0_and_movies_outside_the_catalogue(module):
    with pytest.raises(tf.errors.InvalidArgumentError, match="user_id must be >= 1"):
        predict_ids(module, [0], [101])
    with pytest.raises(tf.errors.InvalidArgumentError, match="movie_id not in the catalogue"):
        predict_ids(module, [11], [105])


def test_recommend_ranks_the_unseen_catalogue_by_predicted_rating(module):
    out = module.recommend(user_id=tf.constant([11, 12], tf.int64),
                           k=tf.constant([2, 4], tf.int32))
    # User 11 rated 101 (the best, 0.9): then 102 (0.8) and 103 (0.7). User 12 rated nothing:
    # 101 0.6, 102 0.5, 103 0.4, 104 0.2. K = max(k) = 4; user 11's row is padded past its
    # three unseen movies with the seen one at -inf, which a client keeping k = 2 never sees.
    ids = out[contract.MOVIE_IDS].numpy()
    np.testing.assert_array_equal(ids[0, :2], [102, 103])
    np.testing.assert_array_equal(ids[1], [101, 102, 103, 104])
    np.testing.assert_allclose(out[contract.RATINGS].numpy()[1], stars([0.6, 0.5, 0.4, 0.2]),
                               rtol=1e-6)
    assert [t.decode() for t in out[contract.TITLES].numpy()[1]] == [
        "Movie 101", "Movie 102", "Movie 103", "Movie 104"]


def test_the_second_stage_adds_rating_weight_times_stars_to_the_retrieval_logit():
    # Movie vectors of zeros: every user's retrieval logits are the movie biases 0, 0.1, 0.2,
    # 0.3, so the top N = 3 retrieved are 104, 103, 102. User 12 (b_u -0.2) predicts 1.4, 2.3
    # and 2.75 stars for them: logit + 1.0 * stars = 1.7, 2.5, 2.85 -> 102, 103, 104; the 4th
    # (k > N) is the next in retrieval order, 101.
    retriever = retrieval.RetrievalModel(4, HISTORY, np.ones(4), dim=2, history_dropout=0.0,
                                         temperature=1.0)
    retriever.movie_tower.embeddings.assign(np.zeros((4, 2), np.float32))
    retriever.movie_tower.bias.assign([0.0, 0.1, 0.2, 0.3])
    module = export.ServingModule(bias_model(), USERS, 4, catalogue(), HISTORY,
                                  two_tower=retriever,
                                  first_stage=RetrievalHParams(num_candidates=3, rating_weight=1.0))
    out = module.recommend(user_id=tf.constant([12], tf.int64), k=tf.constant([4], tf.int32))
    np.testing.assert_array_equal(out[contract.MOVIE_IDS].numpy()[0], [102, 103, 104, 101])
    np.testing.assert_allclose(out[contract.RATINGS].numpy()[0], stars([0.5, 0.4, 0.2, 0.6]),
                               rtol=1e-6)


def test_an_example_without_a_timestamp_takes_the_users_drift_now():
    # User 11 has two training residuals: +0.1 at t = 10, -0.1 at t = 20. With a window of 1
    # and no shrinkage, the drift "now" is the last one (-0.1) and at t = 0 the nearest (+0.1).
    model = bias_model()
    model.user_drift = UserDrift(np.array([0, 0]), np.array([10, 20]), np.array([0.1, -0.1]),
                                 num_users=3, window=1, shrinkage=0.0)
    module = export.ServingModule(model, USERS, 4, catalogue(), HISTORY)
    without = contract.tf_example({contract.USER_ID: 11, contract.MOVIE_ID: 104})
    at_zero = contract.tf_example({contract.USER_ID: 11, contract.MOVIE_ID: 104,
                                   contract.TIMESTAMP: 0})
    examples = tf.constant([without.SerializeToString(), at_zero.SerializeToString()])
    # 0.5 + 0.1 - 0.1 = 0.5, then -0.1 now (0.4) or +0.1 at t = 0 (0.6).
    np.testing.assert_allclose(module.serve_examples(examples)[contract.RATING].numpy(),
                               stars([0.4, 0.6]), rtol=1e-6)


def test_row_ids_are_tensorflows_value_rowids_without_its_block():
    history = user_history(np.array([2, 0, 2, 2, 4]), np.array([5, 1, 3, 5, 0]), 5)
    assert row_ids(history).tolist() == history.value_rowids().numpy().tolist() == [0, 2, 2, 4]
