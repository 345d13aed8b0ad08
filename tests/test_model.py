"""The models learn a planted structure; the exported model predicts, recommends and refuses bad
input exactly as documented in models/export.py."""

import numpy as np
import pytest
import tensorflow as tf

from models import arrays, base, contract, export, features, hparams, trainer
from models.base import user_history
from models.catalogue import Catalogue
from models.hparams import HParams

N_USERS, N_MOVIES = 200, 150
# The planted problems' own settings, fixed here rather than following the defaults tuned for
# MovieLens (models/hparams.py).
SMALL = dict(embedding_dim=8, learning_rate=1e-2, reduce_lr_patience=0, hidden_units=(64, 32),
             dropout=0.2)


def planted_ratings(n=12000, rank=3, noise=0.25, seed=0):
    """Transformed columns drawn from r = mu + b_u + b_m + <p_u, q_m> + genre effect + noise."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(N_USERS, rank))
    q = rng.normal(size=(N_MOVIES, rank))
    b_u, b_m = rng.normal(scale=0.3, size=N_USERS), rng.normal(scale=0.4, size=N_MOVIES)
    genres = (rng.random((N_MOVIES, len(features.GENRE_NAMES))) < 0.15).astype(np.float32)
    genre_effect = genres @ rng.normal(scale=0.3, size=len(features.GENRE_NAMES))
    years = rng.normal(size=N_MOVIES).astype(np.float32)
    users, movies = rng.integers(0, N_USERS, n), rng.integers(0, N_MOVIES, n)
    stars = (3.5 + b_u[users] + b_m[movies] + genre_effect[movies]
             + np.sum(p[users] * q[movies], 1) * 0.5)
    stars = np.clip(stars + rng.normal(scale=noise, size=n), features.RATING_MIN,
                    features.RATING_MAX)
    columns = {features.USER_IDX: users.astype(np.int64),
               features.MOVIE_IDX: movies.astype(np.int64),
               features.GENRES_XF: genres[movies], features.YEAR_XF: years[movies],
               features.LABEL_XF: features.scale_rating(stars).astype(np.float32)}
    return columns, genres, years


def fit(model_type, **overrides):
    columns, genres, years = planted_ratings()
    train, held_out = arrays.holdout(columns, 0.2, seed=1)
    hp = HParams(model_type=model_type, **SMALL, max_epochs=60, batch_size=256, **overrides)
    return trainer.train(hp, N_USERS, N_MOVIES, train, verbose=0), train, held_out, (genres, years)


def global_mean_rmse(train, held_out):
    mean = features.unscale_rating(train[features.LABEL_XF].mean())
    return np.sqrt(np.mean((features.unscale_rating(held_out[features.LABEL_XF]) - mean) ** 2))


@pytest.fixture(scope="module")
def mf():
    return fit("mf")


@pytest.mark.parametrize("model_type,overrides,factor", [
    ("bias", {}, 0.9),  # biases only: a planted rank-3 structure stays unexplained
    ("neural", {}, 0.6),
    ("mf", {"implicit": True}, 0.6),
])
def test_each_model_beats_the_global_mean_on_held_out_ratings(model_type, overrides, factor):
    model, train, held_out, _ = fit(model_type, **overrides)
    baseline = global_mean_rmse(train, held_out)
    assert baseline > 0.85  # the planted structure leaves much to learn
    assert trainer.rmse_in_stars(model, held_out) < factor * baseline


def test_biased_mf_learns_the_planted_structure(mf):
    model, train, held_out, _ = mf
    assert trainer.rmse_in_stars(model, held_out) < 0.6 * global_mean_rmse(train, held_out)


def test_unknown_ids_get_global_mean_plus_the_known_side_bias(mf):
    model, *_ = mf
    oov_user, known_movie = N_USERS, 5
    inputs = {features.USER_IDX: tf.constant([oov_user, oov_user]),
              features.MOVIE_IDX: tf.constant([known_movie, N_MOVIES]),
              features.GENRES_XF: tf.zeros([2, len(features.GENRE_NAMES)]),
              features.YEAR_XF: tf.zeros([2])}
    mu = float(model.biases.global_bias)
    b_m = float(model.biases.movie_bias(tf.constant([known_movie]))[0, 0])
    assert model(inputs).numpy() == pytest.approx([mu + b_m, mu], abs=1e-6)


@pytest.mark.parametrize("overrides", [
    {"model_type": "bias"}, {"model_type": "mf"}, {"model_type": "mf", "squash": True},
    {"model_type": "mf", "implicit": True}, {"model_type": "neural"}])
def test_scoring_the_catalogue_equals_scoring_every_pair(overrides):
    """score_catalogue over movie_side (a matrix product for bias and MF) is what `call` gives
    pair by pair, OOV users and movies included."""
    columns, genres, years = planted_ratings(n=500)
    hp = HParams(embedding_dim=8, **overrides)
    history = user_history(columns[features.USER_IDX], columns[features.MOVIE_IDX], N_USERS)
    model = trainer.build_model(hp, N_USERS, N_MOVIES, 0.6, history)
    model(columns)  # builds the weights, which then get values far from their initialisers
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(scale=0.3, size=w.shape) for w in model.get_weights()])
    users = np.array([0, 17, N_USERS], np.int64)  # the last is the OOV bucket
    movies = {features.MOVIE_IDX: np.append(np.arange(N_MOVIES), N_MOVIES).astype(np.int64),
              features.GENRES_XF: np.vstack([genres, genres[:1]]),
              features.YEAR_XF: np.append(years, 0.5).astype(np.float32)}
    grid = model.score_catalogue(tf.constant(users), model.movie_side(movies)).numpy()
    count = N_MOVIES + 1
    pairs = {k: np.concatenate([v] * len(users)) for k, v in movies.items()}
    pairs[features.USER_IDX] = np.repeat(users, count)
    np.testing.assert_allclose(grid, model(pairs).numpy().reshape(len(users), count),
                               rtol=1e-5, atol=1e-6)


# Three users and two movies, each vocabulary followed by its OOV bucket (index 3, index 2).
B_U = np.array([0.1, -0.2, 0.05, 9.0], np.float32)  # the OOV row's 9.0 must never be used
B_M = np.array([0.3, -0.4, 9.0], np.float32)
P_U = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0], [9.0, 9.0]], np.float32)
Q_M = np.array([[0.2, 0.1], [-0.3, 0.4], [9.0, 9.0]], np.float32)
MU = 0.6


def known_weights(model_type):
    """A bias or MF model over 3 users and 2 movies whose weights are the arrays above."""
    model = trainer.build_model(HParams(model_type=model_type, embedding_dim=2), 3, 2, MU)
    model.movie_side({features.MOVIE_IDX: tf.constant([0], tf.int64)})  # builds the layers
    model.biases.user(tf.constant([0], tf.int64))
    model.biases.user_bias.embeddings.assign(B_U[:, None])
    model.biases.movie_bias.embeddings.assign(B_M[:, None])
    if model_type == "mf":
        model.factors.user(tf.constant([0], tf.int64))
        model.factors.user_factors.embeddings.assign(P_U)
        model.factors.movie_factors.embeddings.assign(Q_M)
    return model


@pytest.mark.parametrize("model_type, expected", [
    # mu + b_u + b_m for users 0, 1, 2, OOV (rows) and movies 0, 1, OOV (columns):
    # user 0: 0.6 + 0.1 + (0.3, -0.4, 0) = 1.0, 0.3, 0.7
    # user 1: 0.6 - 0.2 + (0.3, -0.4, 0) = 0.7, 0.0, 0.4
    # user 2: 0.6 + 0.05 + (0.3, -0.4, 0) = 0.95, 0.25, 0.65
    # OOV user: 0.6 + (0.3, -0.4, 0) = 0.9, 0.2, 0.6
    ("bias", [[1.0, 0.3, 0.7], [0.7, 0.0, 0.4], [0.95, 0.25, 0.65], [0.9, 0.2, 0.6]]),
    # mf adds <p_u, q_m> (0 for an OOV side): user 0 (1, 0).(0.2, 0.1) = 0.2, .(-0.3, 0.4) = -0.3;
    # user 1 (0.5, -1).q: 0.1 - 0.1 = 0.0, -0.15 - 0.4 = -0.55; user 2 (0, 2).q: 0.2, 0.8.
    ("mf", [[1.2, 0.0, 0.7], [0.7, -0.55, 0.4], [1.15, 1.05, 0.65], [0.9, 0.2, 0.6]]),
])
def test_a_prediction_is_mu_plus_both_biases_plus_the_dot_product_in_both_scoring_paths(
        model_type, expected):
    model = known_weights(model_type)
    users, movies = np.array([0, 1, 2, 3], np.int64), np.array([0, 1, 2], np.int64)
    # `call`, pair by pair: what predict_ids, serving_default and the Evaluator get.
    pairs = {features.USER_IDX: np.repeat(users, 3), features.MOVIE_IDX: np.tile(movies, 4),
             features.GENRES_XF: np.zeros((12, len(features.GENRE_NAMES)), np.float32),
             features.YEAR_XF: np.zeros(12, np.float32)}
    np.testing.assert_allclose(model(pairs).numpy().reshape(4, 3), expected, atol=1e-6)
    # score_catalogue over movie_side: what `recommend` ranks with.
    side = model.movie_side({features.MOVIE_IDX: tf.constant(movies),
                             features.GENRES_XF: tf.zeros([3, len(features.GENRE_NAMES)]),
                             features.YEAR_XF: tf.zeros([3])})
    np.testing.assert_allclose(model.score_catalogue(tf.constant(users), side).numpy(), expected,
                               atol=1e-6)


def test_hparams_reject_unknown_keys_models_and_losses():
    with pytest.raises(ValueError, match="unknown HParams fields \\['embeding_dim'\\]"):
        HParams.from_config({"embeding_dim": 8})
    with pytest.raises(ValueError, match="model_type"):
        HParams(model_type="svd")
    with pytest.raises(ValueError, match="loss"):
        HParams(loss="hinge")
    # JSON (custom_config) turns tuples into lists; the round trip must not change anything.
    hp = HParams(l2=0.5, hidden_units=(16, 8))
    assert HParams.from_config({**hp.to_config(), "hidden_units": [16, 8]}) == hp


def unchecked(**fields) -> HParams:
    """HParams with values its own validation would refuse, to test the builders' refusal."""
    hp = HParams()
    for name, value in fields.items():
        object.__setattr__(hp, name, value)
    return hp


def test_builders_refuse_unknown_names_rather_than_fall_back():
    with pytest.raises(ValueError, match=r"unknown model_type 'svd'; known: \['bias', 'mf', "
                                         r"'neural'\]"):
        trainer.build_model(unchecked(model_type="svd"), N_USERS, N_MOVIES, 0.6)
    with pytest.raises(ValueError, match=r"unknown optimizer 'rmsprop'; known: \['adagrad', "
                                         r"'adam', 'lazy_adam', 'sgd'\]"):
        trainer.make_optimizer(unchecked(optimizer="rmsprop"))
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; known: \['huber', 'mae', "
                                         r"'mse'\]"):
        trainer.build_model(unchecked(model_type="mf", loss="hinge"), N_USERS, N_MOVIES, 0.6)


def test_the_registries_are_the_names_hparams_accepts():
    assert sorted(trainer.MODELS) == sorted(hparams.MODEL_TYPES)
    assert sorted(trainer.OPTIMIZERS) == sorted(hparams.OPTIMIZERS)
    assert sorted(trainer.LEGACY_OPTIMIZERS) == sorted(hparams.TABLE_OPTIMIZERS)
    assert sorted(base.LOSSES) == sorted(hparams.LOSSES)
    assert sorted(hparams.TUNED) == sorted(hparams.MODEL_TYPES)


def test_tuned_hparams_are_the_defaults_with_the_model_types_changes():
    assert hparams.tuned("neural", seed=3) == HParams(model_type="neural", seed=3,
                                                      item_item=hparams.ItemItemHParams(),
                                                      drift_windows=(10, 25, 50),
                                                      drift_shrinkages=(5.0, 20.0),
                                                      new_user_shrinkages=(1, 2, 5, 10, 25, 50))
    assert hparams.tuned("bias").learning_rate == 1e-2
    assert not hparams.tuned("bias").new_user_shrinkages  # the textbook baseline
    with pytest.raises(ValueError, match=r"unknown model_type 'svd'; known: \['bias', 'mf', "
                                         r"'neural'\]"):
        hparams.tuned("svd")


@pytest.mark.parametrize("model_type", sorted(trainer.MODELS))
def test_each_model_type_builds_its_own_class(model_type):
    for optimizer in sorted(trainer.OPTIMIZERS):
        hp = HParams(model_type=model_type, optimizer=optimizer, embedding_dim=8)
        assert type(trainer.build_model(hp, N_USERS, N_MOVIES, 0.6)) is trainer.MODELS[model_type]
        assert type(trainer.make_optimizer(hp)) is trainer.OPTIMIZERS[optimizer]


# ---- The exported model --------------------------------------------------------------------

USER_IDS = np.arange(N_USERS, dtype=np.int64) * 3 + 7  # raw ids: not the indices
NEW_MOVIE_ID = 99_999  # rated only after training: in the catalogue, outside the vocabulary


@pytest.fixture(scope="module")
def exported(mf, tmp_path_factory):
    model, train, _, (genres, years) = mf
    movie_ids = np.arange(N_MOVIES, dtype=np.int64) * 10 + 1
    catalogue = Catalogue(
        movie_ids=np.append(movie_ids, NEW_MOVIE_ID),
        movie_idx=np.append(np.arange(N_MOVIES), N_MOVIES).astype(np.int64),
        genres=np.vstack([genres, genres[:1]]), years=np.append(years, 0.0).astype(np.float32),
        titles=np.array([f"Movie {m}".encode() for m in np.append(movie_ids, NEW_MOVIE_ID)],
                        dtype=object))
    history = user_history(train[features.USER_IDX], train[features.MOVIE_IDX], N_USERS)
    path = str(tmp_path_factory.mktemp("export") / "model")
    export.export_serving_model(
        export.ServingModule(model, list(USER_IDS), N_MOVIES, catalogue, history), path)
    return tf.saved_model.load(path), model, catalogue, history, path


def predict_ids(loaded, users, movies):
    out = loaded.signatures[contract.PREDICT_IDS](user_id=tf.constant(users, tf.int64),
                                           movie_id=tf.constant(movies, tf.int64))
    return out[contract.RATING].numpy()


def test_reloaded_model_predicts_exactly_what_the_trained_model_does(exported):
    loaded, model, catalogue, _, _ = exported
    users, movies = np.array([0, 5, 17]), np.array([3, 0, 149])
    in_process = trainer.predict_stars(model, {
        features.USER_IDX: users, features.MOVIE_IDX: movies,
        features.GENRES_XF: catalogue.genres[movies], features.YEAR_XF: catalogue.years[movies]})
    served = predict_ids(loaded, USER_IDS[users], catalogue.movie_ids[movies])
    np.testing.assert_allclose(served, in_process, rtol=1e-6)
    examples = tf.constant([
        contract.tf_example({contract.USER_ID: u, contract.MOVIE_ID: m}).SerializeToString()
        for u, m in zip(USER_IDS[users], catalogue.movie_ids[movies], strict=True)])
    signatures = loaded.signatures
    by_example = signatures[contract.SERVING_DEFAULT](examples=examples)[contract.RATING]
    by_regress = signatures[contract.REGRESS](inputs=examples)[contract.REGRESS_OUTPUTS]
    np.testing.assert_array_equal(by_example.numpy(), served)
    np.testing.assert_array_equal(by_regress.numpy(), served)


def test_regress_signature_carries_tf_servings_regress_method_name(exported):
    from tensorflow.core.protobuf import saved_model_pb2

    *_, path = exported
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(tf.io.gfile.GFile(f"{path}/saved_model.pb", "rb").read())
    signatures = proto.meta_graphs[0].signature_def
    assert signatures[contract.REGRESS].method_name == contract.REGRESS_METHOD
    assert set(signatures[contract.REGRESS].inputs) == {contract.REGRESS_INPUTS}
    assert set(signatures[contract.REGRESS].outputs) == {contract.REGRESS_OUTPUTS}
    # Exactly the contract's signatures (the loader's init op aside), the others Predict ones.
    assert {k for k in signatures if not k.startswith("__")} == set(contract.SIGNATURES)
    assert {signatures[k].method_name for k in contract.SIGNATURES
            if k != contract.REGRESS} == {contract.PREDICT_METHOD}


def test_recommend_is_the_best_unseen_movies_of_the_whole_catalogue(exported):
    loaded, model, catalogue, history, _ = exported
    user = 4
    out = loaded.signatures[contract.RECOMMEND](user_id=tf.constant([USER_IDS[user]], tf.int64),
                                         k=tf.constant([10], tf.int32))
    ids, ratings = out[contract.MOVIE_IDS].numpy()[0], out[contract.RATINGS].numpy()[0]
    seen = set(catalogue.movie_ids[history[user].numpy()])
    assert len(ids) == len(set(ids)) == 10 and not set(ids) & seen
    # Brute force: every unseen catalogue movie through predict_ids.
    unseen = np.array([m for m in catalogue.movie_ids if m not in seen])
    scores = predict_ids(loaded, np.full(len(unseen), USER_IDS[user]), unseen)
    np.testing.assert_allclose(ratings, np.sort(scores)[::-1][:10], rtol=1e-6)
    # Ranked by the unclipped score, so movies predicted above 5 stars do not tie at 5.0.
    rows = np.searchsorted(catalogue.movie_ids, unseen)
    unclipped = features.unscale_rating(model(
        {features.USER_IDX: np.full(len(rows), user), features.MOVIE_IDX: catalogue.movie_idx[rows],
         features.GENRES_XF: catalogue.genres[rows], features.YEAR_XF: catalogue.years[rows]}
    ).numpy())
    np.testing.assert_array_equal(ids, unseen[np.argsort(-unclipped, kind="stable")[:10]])
    assert [t.decode() for t in out[contract.TITLES].numpy()[0]] == [f"Movie {m}" for m in ids]


def test_recommend_gives_an_unknown_user_the_best_movies_by_bias_and_pads_batches_to_max_k(
        exported):
    loaded, model, catalogue, _, _ = exported
    out = loaded.signatures[contract.RECOMMEND](
        user_id=tf.constant([123_456, USER_IDS[0]], tf.int64), k=tf.constant([3, 5], tf.int32))
    assert out[contract.MOVIE_IDS].shape == (2, 5)  # K = max(k); the first client keeps 3
    mu = float(model.biases.global_bias)
    bias = model.biases.movie_bias.embeddings.numpy()[:N_MOVIES, 0]
    expected = catalogue.movie_ids[np.argsort(-bias)[:5]]
    np.testing.assert_array_equal(out[contract.MOVIE_IDS].numpy()[0], expected)
    np.testing.assert_allclose(out[contract.RATINGS].numpy()[0],
                               np.clip(features.unscale_rating(mu + np.sort(bias)[::-1][:5]),
                                       features.RATING_MIN, features.RATING_MAX), rtol=1e-5)


def test_movies_outside_the_catalogue_and_bad_arguments_are_invalid_argument_errors(exported):
    loaded, *_ = exported
    with pytest.raises(tf.errors.InvalidArgumentError, match="movie_id not in the catalogue"):
        predict_ids(loaded, [USER_IDS[0]], [123_456_789])
    with pytest.raises(tf.errors.InvalidArgumentError, match="user_id must be >= 1"):
        predict_ids(loaded, [0], [1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must be >= 1"):
        loaded.signatures[contract.RECOMMEND](user_id=tf.constant([7], tf.int64),
                                              k=tf.constant([0], tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"k must be <= {contract.MAX_K}"):
        loaded.signatures[contract.RECOMMEND](user_id=tf.constant([7, 7], tf.int64),
                                              k=tf.constant([10, 1_000_000], tf.int32))


def cold_start_stars(model, movie_idx: int | None) -> float:
    """What biased MF predicts for an unknown user: mu + b_movie (an unknown movie: mu alone),
    in stars, clipped as served."""
    scaled = float(model.biases.global_bias)
    if movie_idx is not None:
        scaled += float(model.biases.movie_bias(tf.constant([movie_idx]))[0, 0])
    return float(np.clip(features.unscale_rating(scaled), features.RATING_MIN,
                         features.RATING_MAX))


def test_an_unknown_user_gets_mu_plus_the_movies_bias(exported):
    """Cold start is not an error: an unknown user gets mu + b_movie; a new movie of the
    catalogue (outside the vocabulary) mu alone."""
    loaded, model, catalogue, _, _ = exported
    served = predict_ids(loaded, [123_456, 123_456], [catalogue.movie_ids[5], NEW_MOVIE_ID])
    np.testing.assert_allclose(served, [cold_start_stars(model, int(catalogue.movie_idx[5])),
                                        cold_start_stars(model, None)], rtol=1e-6)


def test_serving_default_never_fails_on_unknown_ids(exported):
    """An invalid user and a movie outside the catalogue: the cold-start prediction, mu."""
    loaded, model, *_ = exported
    example = contract.tf_example({contract.USER_ID: 0, contract.MOVIE_ID: 123_456_789})
    rating = loaded.signatures[contract.SERVING_DEFAULT](
        examples=tf.constant([example.SerializeToString()]))[contract.RATING]
    np.testing.assert_allclose(rating.numpy(), [cold_start_stars(model, None)], rtol=1e-6)

