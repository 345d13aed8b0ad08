"""Warm start (models/warm_start.py): a model trained on one vocabulary starts another whose
vocabulary changed (users gone, users new, movies in another order), row by row by raw id; a base
model of another shape, or without the warm-start file, leaves the model as built; the Trainer
records what it took, and the item-item stage chooses its settings again."""


import numpy as np
import pytest
import tensorflow as tf
from test_retrieval import MOVIE_IDS, N_MOVIES, USER_IDS, catalogue_of, planted_interactions

from models import contract, export, features, trainer, warm_start
from models.base import user_history
from models.hparams import HParams, ItemItemHParams

ITEM_ITEM = ItemItemHParams(l2s=(50.0, 100.0), user_weights=(0.0,), side_weights=(0.0,),
                            popularity_exponents=(0.0, 0.25), neighbours=20, rank=8)
HPARAMS = HParams(model_type="neural", embedding_dim=8, hidden_units=(8,), implicit=True,
                  learning_rate=1e-2, reduce_lr_patience=0, batch_size=256, max_epochs=3,
                  item_item=ITEM_ITEM)


def builder(hp, num_users, num_movies, history):
    return trainer.build_model(hp, num_users, num_movies, 0.5, history)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A trained, exported model of USER_IDS and MOVIE_IDS (index i is raw id USER_IDS[i])."""
    columns, genres = planted_interactions()
    module = trainer.fit_serving_module(HPARAMS, columns, list(USER_IDS), N_MOVIES,
                                        catalogue_of(genres), verbose=0)
    path = str(tmp_path_factory.mktemp("base") / "model")
    export.export_serving_model(module, path)
    trainer.write_choices(path, module, time_split=False)
    warm_start.write(path, HPARAMS, USER_IDS, MOVIE_IDS)
    return path, module, columns


def new_vocabularies():
    """The next span's: the first 10 users gone, 5 new ones, all in another order; the movies
    reversed with 3 new ones in front."""
    rng = np.random.default_rng(1)
    users = np.concatenate([USER_IDS[10:], [10_001, 10_002, 10_003, 10_004, 10_005]])
    users = users[rng.permutation(len(users))]
    movies = np.concatenate([[90_001, 90_002, 90_003], MOVIE_IDS[::-1]])
    return users, movies


def fresh_model(hp, users, movies, columns=None):
    """A built model of these vocabularies; with `columns` (the base's training columns), the
    same SVD++ history as the base's, in this model's indices."""
    rated_users, rated_movies = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if columns is not None:
        user_index = {int(u): i for i, u in enumerate(users)}
        movie_index = {int(m): i for i, m in enumerate(movies)}
        pairs = [(user_index[int(USER_IDS[u])], movie_index[int(MOVIE_IDS[m])])
                 for u, m in zip(columns[features.USER_IDX], columns[features.MOVIE_IDX],
                                 strict=True) if int(USER_IDS[u]) in user_index]
        rated_users, rated_movies = (np.array(c, np.int64) for c in zip(*pairs, strict=True))
    model = builder(hp, len(users), len(movies),
                    user_history(rated_users, rated_movies, len(users)))
    warm_start.build(model, len(movies))
    return model


def test_remap_rows_takes_the_rows_of_the_same_raw_ids():
    old = np.array([[1.0], [2.0], [3.0], [-1.0]])  # ids 30, 10, 20, then the OOV row
    new = np.array([[0.0], [0.0], [0.0], [9.0]])  # ids 20, 40, 30, then the OOV row
    rows, taken = warm_start.remap_rows(old, np.array([30, 10, 20]), new, np.array([20, 40, 30]))
    np.testing.assert_array_equal(rows, [[3.0], [0.0], [1.0], [9.0]])
    assert taken == 2
    np.testing.assert_array_equal(new, [[0.0], [0.0], [0.0], [9.0]])  # not written in place


def test_a_warm_model_predicts_as_the_base_for_the_pairs_both_know(base):
    path, module, columns = base
    users, movies = new_vocabularies()
    model = fresh_model(HPARAMS, users, movies, columns)
    start = warm_start.initialise(model, path, HPARAMS, users, movies, builder)
    assert start.warm, start.reason
    assert start.kept == {"users": [len(USER_IDS) - 10, len(users)],
                          "movies": [N_MOVIES, len(movies)]}
    # Pairs of raw ids both know, through each model's own indices; the rating model alone
    # (forward), without the drift and new-user layers fitted after training.
    pick_users = USER_IDS[10:40]
    pick_movies = MOVIE_IDS[[0, 5, 17, 60, 119] * 6]
    genres = np.zeros((len(pick_movies), len(features.GENRE_NAMES)), np.float32)
    genres[:, 2] = 1.0

    def inputs(user_vocab, movie_vocab):
        user_index = {int(u): i for i, u in enumerate(user_vocab)}
        movie_index = {int(m): i for i, m in enumerate(movie_vocab)}
        return {features.USER_IDX: tf.constant([user_index[int(u)] for u in pick_users]),
                features.MOVIE_IDX: tf.constant([movie_index[int(m)] for m in pick_movies]),
                features.GENRES_XF: tf.constant(genres),
                features.YEAR_XF: tf.zeros([len(pick_users)])}

    before = module.model.forward(inputs(USER_IDS, MOVIE_IDS), training=False).numpy()
    after = model.forward(inputs(users, movies), training=False).numpy()
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)
    # A new user keeps the bias it was built with (zeros), whatever the base had.
    new_rows = np.flatnonzero(users > 10_000)
    np.testing.assert_array_equal(
        model.biases.user_bias.embeddings.numpy()[new_rows], np.zeros((len(new_rows), 1)))


def test_a_base_model_of_another_shape_leaves_the_model_as_built(base):
    path, *_ = base
    users, movies = new_vocabularies()
    other = HParams(**{**HPARAMS.__dict__, "embedding_dim": 4})
    model = fresh_model(other, users, movies)
    weights = [w.numpy() for w in model.weights]
    start = warm_start.initialise(model, path, other, users, movies, builder)
    assert not start.warm
    assert "shape [" in start.reason and "in the base model" in start.reason
    for before, after in zip(weights, model.weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())
    assert start.describe().startswith("trained from scratch: weight ")


def test_a_base_model_without_the_file_is_a_cold_start(tmp_path):
    users, movies = new_vocabularies()
    start = warm_start.initialise(fresh_model(HPARAMS, users, movies), str(tmp_path), HPARAMS,
                                  users, movies, builder)
    assert (start.warm, start.reason) == (False, f"the base model has no "
                                          f"{contract.WARM_START_FILE}")


def test_the_trainer_warm_starts_from_a_base_model_and_records_it(base, tmp_path):
    path, module, columns = base
    warm = trainer.fit_serving_module(HPARAMS, columns, list(USER_IDS), N_MOVIES,
                                      catalogue_of(planted_interactions()[1]), verbose=0,
                                      base_model=path, movie_vocabulary=list(MOVIE_IDS))
    choices = trainer.training_choices(warm, time_split=False)
    assert choices["warm_start"]["kept"] == {"users": [len(USER_IDS)] * 2,
                                             "movies": [N_MOVIES] * 2}
    # The item-item stage chose on this run's holdout (the base model's choice, reused, cost
    # top-k NDCG): every point of the grid scored.
    assert len(choices["item_item"]["validation_ndcg"]) == 2 * 2
    # Without a base model nothing is recorded: the cold start of the first run.
    assert trainer.training_choices(module, time_split=False)["warm_start"] is None
