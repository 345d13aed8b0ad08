"""The retrieval stage finds planted tastes, and the exported two-stage `recommend` is exactly the
in-process retrieval + ranking, with seen movies excluded and unknown users served."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from components.evaluation import topk
from models import (
    arrays,
    contract,
    export,
    features,
    ranking_metrics,
    retrieval,
    retrieval_training,
    trainer,
)
from models.base import user_history
from models.catalogue import Catalogue
from models.hparams import HParams, RetrievalHParams

N_USERS, N_MOVIES, N_TASTES = 240, 120, 4
USER_IDS = np.arange(N_USERS, dtype=np.int64) * 5 + 2  # raw ids: not the indices
MOVIE_IDS = np.arange(N_MOVIES, dtype=np.int64) * 7 + 1
RETRIEVAL = RetrievalHParams(embedding_dim=16, history_dropout=0.2, learning_rate=1e-2,
                             learning_rate_decay=0.97, users_per_batch=32, max_epochs=60,
                             early_stopping_patience=6, num_candidates=20, rating_weight=0.3)
# The planted problem's own settings, not the defaults tuned for MovieLens (models/hparams.py).
HPARAMS = HParams(model_type="mf", embedding_dim=8, learning_rate=1e-2, reduce_lr_patience=0,
                  batch_size=256, max_epochs=20, retrieval=RETRIEVAL)


def planted_interactions(per_user=30, seed=0):
    """Transformed columns of users who choose movies of their taste: each user has one of
    N_TASTES tastes, each movie one; a user picks movies with weight popularity * (12 if the
    movie is of the user's taste). Ratings follow the same affinity plus noise."""
    rng = np.random.default_rng(seed)
    user_taste = rng.integers(0, N_TASTES, N_USERS)
    movie_taste = np.arange(N_MOVIES) % N_TASTES
    popularity = 1.0 / np.arange(1, N_MOVIES + 1) ** 0.5  # a long tail
    users, movies = [], []
    for u in range(N_USERS):
        weight = popularity * np.where(movie_taste == user_taste[u], 12.0, 1.0)
        chosen = rng.choice(N_MOVIES, size=per_user, replace=False, p=weight / weight.sum())
        users += [u] * per_user
        movies += list(chosen)
    users, movies = np.array(users, np.int64), np.array(movies, np.int64)
    stars = np.clip(3.0 + np.where(movie_taste[movies] == user_taste[users], 1.0, -0.5)
                    + rng.normal(scale=0.3, size=len(users)), 0.5, 5.0)
    genres = np.zeros((N_MOVIES, len(features.GENRE_NAMES)), np.float32)
    genres[np.arange(N_MOVIES), movie_taste] = 1.0
    return {features.USER_IDX: users, features.MOVIE_IDX: movies,
            features.GENRES_XF: genres[movies], features.YEAR_XF: np.zeros(len(users), np.float32),
            features.LABEL_XF: features.scale_rating(stars).astype(np.float32)}, genres


def catalogue_of(genres):
    return Catalogue(movie_ids=MOVIE_IDS, movie_idx=np.arange(N_MOVIES, dtype=np.int64),
                     genres=genres, years=np.zeros(N_MOVIES, np.float32),
                     titles=np.array([f"Movie {m}".encode() for m in MOVIE_IDS], dtype=object))


@pytest.fixture(scope="module")
def two_stage(tmp_path_factory):
    columns, genres = planted_interactions()
    train, test = arrays.holdout(columns, 0.2, seed=3)
    module = trainer.fit_serving_module(HPARAMS, train, list(USER_IDS), N_MOVIES,
                                        catalogue_of(genres), verbose=0)
    path = str(tmp_path_factory.mktemp("two_stage") / "model")
    export.export_serving_model(module, path)
    return module, tf.saved_model.load(path), train, test


def most_rated_unseen(train, seen, users, k=10):
    """The popularity baseline's top k indices [U, k] for each user: the most rated training
    movies the user has not seen, as the TopKEvaluator's baseline (each history read once:
    indexing a RaggedTensor row per movie cost 18 s)."""
    order = np.argsort(-np.bincount(train[features.MOVIE_IDX], minlength=N_MOVIES), kind="stable")
    return topk.popularity_lists(order, [np.unique(seen[u].numpy()) for u in users], k)


def recommend(signatures_owner, user_ids, k):
    out = signatures_owner.signatures[contract.RECOMMEND](
        user_id=tf.constant(user_ids, tf.int64), k=tf.fill([len(user_ids)], tf.constant(k)))
    return {name: value.numpy() for name, value in out.items()}


def test_the_exported_model_records_the_popularity_weight_chosen_on_validation(two_stage,
                                                                            tmp_path):
    module, *_ = two_stage
    trainer.write_choices(str(tmp_path), module, time_split=False)
    choices = json.loads((tmp_path / contract.CHOICES_FILE).read_text())
    assert choices["popularity_weight"] in HPARAMS.retrieval.popularity_weights
    assert choices["popularity_weight"] == module.popularity_weight


def test_retrieval_finds_the_planted_tastes_far_above_popularity(two_stage):
    module, loaded, train, test = two_stage
    seen = user_history(train[features.USER_IDX], train[features.MOVIE_IDX], N_USERS)
    relevant = {}
    for u, m in zip(test[features.USER_IDX], test[features.MOVIE_IDX], strict=True):
        relevant.setdefault(int(u), set()).add(int(MOVIE_IDS[m]))
    users = np.array(sorted(relevant))
    ours = recommend(loaded, USER_IDS[users], 10)[contract.MOVIE_IDS]
    popular = MOVIE_IDS[most_rated_unseen(train, seen, users)]
    wanted = [relevant[u] for u in users]
    recall = ranking_metrics.mean(ranking_metrics.per_user(ours, wanted, 10))["recall"]
    baseline = ranking_metrics.mean(ranking_metrics.per_user(popular, wanted, 10))["recall"]
    assert recall > 1.5 * baseline and recall > 0.3, (recall, baseline)


def test_exported_recommend_equals_both_stages_computed_in_process(two_stage):
    module, loaded, train, _ = two_stage
    users = np.array([0, 7, 31, 199])
    served = recommend(loaded, USER_IDS[users], 10)
    in_process = module.recommend(user_id=tf.constant(USER_IDS[users]), k=tf.fill([4], 10))
    np.testing.assert_array_equal(served[contract.MOVIE_IDS],
                                  in_process[contract.MOVIE_IDS].numpy())
    # By hand: retrieval logits of every unseen movie, the top N, then logit + w * stars.
    history = user_history(train[features.USER_IDX], train[features.MOVIE_IDX], N_USERS)
    model, candidates = module.model, module.retrieval_candidates.numpy()
    pooled = module.query_tower(tf.gather(history, users)).numpy()
    logits = pooled @ candidates[:, :-1].T + candidates[:, -1]  # [query, 1] . [movie, bias]
    for row, u in enumerate(users):
        seen = history[u].numpy()
        logits[row, seen] = -np.inf
        candidates = np.argsort(-logits[row], kind="stable")[:RETRIEVAL.num_candidates]
        stars = features.unscale_rating(model({
            features.USER_IDX: np.full(len(candidates), u), features.MOVIE_IDX: candidates,
            features.GENRES_XF: module.genres.numpy()[candidates],
            features.YEAR_XF: np.zeros(len(candidates), np.float32)}).numpy())
        order = np.argsort(-(logits[row, candidates] + RETRIEVAL.rating_weight * stars),
                           kind="stable")[:10]
        np.testing.assert_array_equal(served[contract.MOVIE_IDS][row], MOVIE_IDS[candidates[order]])
        np.testing.assert_allclose(served[contract.RATINGS][row], np.clip(stars[order], 0.5, 5.0),
                                   rtol=1e-5)
        assert not set(served[contract.MOVIE_IDS][row]) & set(MOVIE_IDS[seen])


def test_an_unknown_user_gets_the_popularity_bias_order(two_stage):
    module, loaded, _, _ = two_stage
    served = recommend(loaded, [987_654], 5)[contract.MOVIE_IDS][0]
    bias = module.retrieval_candidates.numpy()[:, -1]
    # An empty history is a zero query: the retrieval logits are the movie biases alone; with
    # rating_weight > 0 the ranker reorders the top N, so compare the retrieved set.
    top_n = set(MOVIE_IDS[np.argsort(-bias)[:RETRIEVAL.num_candidates]])
    assert set(served) <= top_n and len(set(served)) == 5


def test_k_above_the_candidate_count_and_predict_ids_keep_working(two_stage):
    _, loaded, _, _ = two_stage
    out = recommend(loaded, [USER_IDS[3]], RETRIEVAL.num_candidates + 15)
    ids = out[contract.MOVIE_IDS][0]
    assert len(ids) == RETRIEVAL.num_candidates + 15 and len(set(ids)) == len(ids)
    # A row's first k never depend on the K it is batched with (TF Serving merges requests).
    for k in (3, RETRIEVAL.num_candidates):
        np.testing.assert_array_equal(recommend(loaded, [USER_IDS[3]], k)[contract.MOVIE_IDS][0],
                                      ids[:k])
    rating = loaded.signatures[contract.PREDICT_IDS](
        user_id=tf.constant([USER_IDS[3]], tf.int64),
        movie_id=tf.constant([MOVIE_IDS[0]], tf.int64))[contract.RATING]
    assert features.RATING_MIN <= float(rating[0]) <= features.RATING_MAX


def test_retrieval_hparams_round_trip_and_refuse_unknown_fields():
    config = HPARAMS.to_config()
    assert isinstance(config["retrieval"], dict)
    assert HParams.from_config(config) == HPARAMS
    with pytest.raises(ValueError, match="unknown RetrievalHParams fields \\['dim'\\]"):
        HParams.from_config({**config, "retrieval": {"dim": 3}})
    with pytest.raises(ValueError, match="num_candidates"):
        dataclasses.replace(RETRIEVAL, num_candidates=0)
    with pytest.raises(ValueError, match="objective must be one of \\('users', 'pairs'\\)"):
        dataclasses.replace(RETRIEVAL, objective="items")
    with pytest.raises(ValueError, match="needs history_dropout > 0"):
        dataclasses.replace(RETRIEVAL, history_dropout=0.0)


def test_the_per_user_objective_is_the_softmax_of_each_held_out_entry():
    """cloze_loss: sum over a user's dropped history entries of the catalogue softmax
    cross-entropy given the kept ones (scaled by 1 / (1 - rate), normalised by sqrt(|H|))."""
    hp = dataclasses.replace(RETRIEVAL, history_dropout=0.25)
    users = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2], np.int64)
    movies = np.array([1, 4, 5, 0, 5, 2, 3, 4, 6], np.int64)
    model = retrieval_training.build_retrieval_model(hp, 3, 7, users, movies, batch_size=2)
    batch = tf.constant([2, 0], tf.int64)
    keep = tf.constant([True, False, True, True, False, True, False], tf.bool)  # rows 2, then 0
    loss = float(model.cloze_loss(batch, keep))
    embeddings = model.query_tower.embeddings.numpy()
    candidates = model.candidates().numpy()
    expected = 0.0
    for history, kept in (([2, 3, 4, 6], [True, False, True, True]),
                          ([1, 4, 5], [False, True, False])):
        query = embeddings[[m for m, k in zip(history, kept, strict=True) if k]].sum(0) / 0.75
        query /= np.sqrt(len(history))
        logits = candidates @ np.append(query, 1.0)
        log_softmax = logits - np.log(np.exp(logits).sum())
        expected -= sum(log_softmax[m] for m, k in zip(history, kept, strict=True) if not k)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_the_per_pair_objective_finds_the_planted_tastes():
    columns, _ = planted_interactions()
    train, test = arrays.holdout(columns, 0.2, seed=3)
    hp = dataclasses.replace(RETRIEVAL, objective="pairs", batch_size=256,
                             learning_rate_decay=0.9, max_epochs=30, early_stopping_patience=4)
    model = retrieval_training.train_retrieval(hp, N_USERS, N_MOVIES, train, verbose=0)
    seen = user_history(train[features.USER_IDX], train[features.MOVIE_IDX], N_USERS)
    relevant = {}
    for u, m in zip(test[features.USER_IDX], test[features.MOVIE_IDX], strict=True):
        relevant.setdefault(int(u), set()).add(int(m))
    users = np.array(sorted(relevant))
    histories = tf.gather(seen, users)
    top = tf.math.top_k(retrieval.exclude(model.score(histories), histories), 10).indices
    popular = most_rated_unseen(train, seen, users)
    wanted = [relevant[u] for u in users]
    recall = ranking_metrics.mean(ranking_metrics.per_user(top.numpy(), wanted, 10))["recall"]
    baseline = ranking_metrics.mean(ranking_metrics.per_user(popular, wanted, 10))["recall"]
    assert recall > 1.5 * baseline and recall > 0.3, (recall, baseline)


def test_validation_ndcg_is_averaged_only_once_enough_epochs_exist():
    """Early stopping follows val_ndcg_smoothed: -inf until `smoothing` epochs exist, so one
    good first epoch cannot win (a partial mean of it alone did, on a small fixture)."""
    validation = retrieval_training.RankingValidation(np.array([0]), [{1}], smoothing=3)
    scores = iter([0.5, 0.1, 0.1, 0.4, 0.1])
    validation.ndcg = lambda popularity_weight: next(scores)
    smoothed = []
    for epoch in range(5):
        logs: dict[str, float] = {}
        validation.on_epoch_end(epoch, logs)
        smoothed.append(logs["val_ndcg_smoothed"])
    np.testing.assert_allclose(smoothed, [-np.inf, -np.inf, 0.7 / 3, 0.2, 0.2])


def test_exclude_puts_seen_movies_below_every_unseen_score_even_negative_ones():
    # Retrieval logits are dot products: a user's unseen movies may all score below 0, so a seen
    # movie set to any finite value (0.0, say) would outrank them and be recommended again.
    scores = tf.constant([[-0.5, 2.0, -3.0, -0.1],
                          [-4.0, -2.0, -1.0, -3.0],
                          [1.0, 0.5, -2.0, 3.0]])
    # User 0 rated movie 1; user 1 movies 2 and 0; user 2 nothing.
    seen = tf.ragged.constant([[1], [2, 0], []], dtype=tf.int64)
    excluded = retrieval.exclude(scores, seen).numpy()
    np.testing.assert_array_equal(excluded, np.array([[-0.5, -np.inf, -3.0, -0.1],
                                                      [-np.inf, -2.0, -np.inf, -3.0],
                                                      [1.0, 0.5, -2.0, 3.0]], np.float32))
    # The top 2 of each row: user 0's best unseen are -0.1 (movie 3), -0.5 (movie 0); user 1's
    # are -2.0 (movie 1), -3.0 (movie 3); user 2 keeps every movie.
    top = tf.math.top_k(excluded, 2).indices.numpy()
    np.testing.assert_array_equal(top, [[3, 0], [1, 3], [3, 0]])


def test_the_history_tower_is_the_rsqrt_normalised_sum():
    tower = retrieval.HistoryTower(num_movies=3, dim=2)
    tower.embeddings.assign([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    histories = tf.ragged.constant([[0, 1], [2], [], [0, 1, 2]], dtype=tf.int64)
    # |H|^-1/2 * sum of the rows: (1, 2) / sqrt(2); (3, 4) / 1; zeros for an empty history (a
    # new user); (4, 6) / sqrt(3).
    np.testing.assert_allclose(tower(histories).numpy(),
                               [[1 / 2**0.5, 2 / 2**0.5], [3.0, 4.0], [0.0, 0.0],
                                [4 / 3**0.5, 6 / 3**0.5]], rtol=1e-6)
    # Training's weights (dropout) scale each entry; `counts` replaces |H|: with weights 2, 0 on
    # the first history and counts 4: (2 * (1, 0) + 0 * (0, 2)) / sqrt(4) = (1, 0).
    weighted = tower(histories[:1], weights=tf.constant([2.0, 0.0]), counts=tf.constant([4.0]))
    np.testing.assert_allclose(weighted.numpy(), [[1.0, 0.0]], rtol=1e-6)


def test_movies_never_trained_on_are_never_retrieved():
    # Four trained movies (vocabulary indices 0-3) and one first rated after training (movie
    # 50, the OOV index 4): the exported candidates give it a zero vector and a bias of -inf.
    num_movies = 4
    history = user_history(np.array([0, 0]), np.array([0, 1]), 2)  # user 7 rated 10 and 20
    retriever = retrieval.RetrievalModel(num_movies, history, np.array([5, 4, 3, 2]), dim=2,
                                         history_dropout=0.0, temperature=1.0)
    # Every trained movie's logit far below 0 (bias -5, embeddings ~N(0, 0.05)): the untrained
    # one at any finite bias would be retrieved first.
    retriever.movie_tower.bias.assign([-5.0] * num_movies)
    model = trainer.build_model(HParams(model_type="bias"), 2, num_movies, 0.5)
    ids = np.array([10, 20, 30, 40, 50], np.int64)
    catalogue = Catalogue(movie_ids=ids, movie_idx=np.arange(5, dtype=np.int64),
                          genres=np.zeros((5, len(features.GENRE_NAMES)), np.float32),
                          years=np.zeros(5, np.float32),
                          titles=np.array([b"a", b"b", b"c", b"d", b"e"], dtype=object))
    module = export.ServingModule(model, [7, 8], num_movies, catalogue, history,
                                  two_tower=retriever,
                                  first_stage=RetrievalHParams(num_candidates=2, rating_weight=0.3))
    out = module.recommend(user_id=tf.constant([7, 8, 999], tf.int64),
                           k=tf.constant([2, 4, 4], tf.int32))[contract.MOVIE_IDS].numpy()
    # User 7: the two trained movies they did not rate; user 8 (no history) and an unknown
    # user: the four trained movies, never 50.
    assert set(out[0, :2]) == {30, 40}
    assert set(out[1]) == set(out[2]) == {10, 20, 30, 40}
