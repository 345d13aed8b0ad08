"""The item-item stage of `recommend`: the sparse + low-rank form of EDLAE (models/item_item.py),
its fit and choice on a holdout (models/item_item_training.py), and the exported recommend
against the same computation in numpy (models/export.py). Small planted data: seconds."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf
from test_item_item import planted

from models import contract, export, features, item_item, item_item_training, trainer
from models.base import user_history
from models.catalogue import Catalogue
from models.hparams import HParams, ItemItemHParams, RetrievalHParams


def test_sparse_plus_full_rank_residual_is_b_itself_with_the_popularity_scale():
    x, _, _ = planted(users=200, blocks=3, per_block=8)
    counts = np.asarray(x.sum(axis=0)).reshape(-1)
    head = np.arange(x.shape[1])
    b = item_item.regularised_solve(x, head, 10.0, 0.1, 0.25)
    scale = item_item.popularity_scale(counts, -0.2)
    stage = item_item.sparse_low_rank(b.copy(), head, scale, n=3, rank=x.shape[1], seed=0)
    np.testing.assert_allclose(stage.scores(x[:20]), np.asarray(x[:20] @ b) * scale,
                               atol=1e-4)
    # At rank 0 only the 3 neighbours a movie remain: the residual is what the low rank adds.
    sparse = item_item.sparse_low_rank(b.copy(), head, scale, n=3, rank=0, seed=0)
    assert (sparse.lists.weights != 0).sum(axis=1).max() == 3
    assert np.abs(sparse.scores(x[:20]) - stage.scores(x[:20])).max() > 1e-3


def test_user_weight_shrinks_the_heavy_users_co_occurrences():
    x = sp.csr_matrix(np.array([[1, 1, 1, 1], [1, 1, 0, 0]], np.float32))
    plain = item_item.gram(x, np.arange(4))
    weighted = item_item.gram(x, np.arange(4), user_weight=1.0)
    assert plain[0, 1] == 2.0
    # |h| = 4 and 2: each user's co-occurrences weigh 1/4 and 1/2.
    np.testing.assert_allclose(weighted[0, 1], 0.25 + 0.5)
    np.testing.assert_allclose(weighted[2, 3], 0.25)


def pairs(x: sp.csr_matrix) -> dict[str, np.ndarray]:
    users, movies = x.nonzero()
    return {features.USER_IDX: users.astype(np.int64), features.MOVIE_IDX: movies.astype(np.int64)}


def test_train_item_item_chooses_on_the_holdout_and_recommends_the_users_block():
    x, blocks, per_block = planted(users=400, blocks=4, per_block=10, noise=0.0)
    hp = ItemItemHParams(l2s=(1.0, 30.0), popularity_exponents=(0.0, -0.5),
                         user_weights=(0.25, 0.0), neighbours=5, rank=4)
    stage, choice = item_item_training.train_item_item(hp, x.shape[0], x.shape[1], pairs(x))
    # Both l2s at the first user weight, then the second user weight at the better l2; no
    # catalogue, so no side weight but the first.
    first = {k: v for k, v in choice.validation_ndcg.items() if k.endswith("/0.25/0")}
    assert set(first) == {"1/0/0.25/0", "1/-0.5/0.25/0", "30/0/0.25/0", "30/-0.5/0.25/0"}
    best_l2 = max(first, key=first.get).split("/")[0]
    assert set(choice.validation_ndcg) - set(first) == {f"{best_l2}/0/0/0",
                                                         f"{best_l2}/-0.5/0/0"}
    best = item_item_training.record_key(choice.record())
    assert choice.validation_ndcg[best] == max(choice.validation_ndcg.values())
    scores = stage.scores(x)
    scores[x.nonzero()] = -np.inf
    for user in range(0, 400, 37):
        block = user % blocks
        unseen_in_block = per_block - int(x[user, block * per_block:(block + 1) * per_block].sum())
        top = np.argsort(-scores[user])[:unseen_in_block]
        assert set(top // per_block) <= {block}, (user, top)


def test_the_choice_solves_the_choice_dense_most_rated_movies_and_the_fit_max_dense(monkeypatch):
    x, _, _ = planted(users=300, blocks=3, per_block=10, noise=0.0)
    counts = np.asarray(x.sum(axis=0)).reshape(-1)
    solved, grams = [], []
    solve, weighted_gram = item_item.solve_weighted, item_item.weighted_gram

    def recording_solve(g, shrink, head, *args):
        solved.append(head)
        return solve(g, shrink, head, *args)

    def recording_gram(x, head, user_weight):
        grams.append((len(head), user_weight))
        return weighted_gram(x, head, user_weight)

    monkeypatch.setattr(item_item_training.item_item, "solve_weighted", recording_solve)
    monkeypatch.setattr(item_item_training.item_item, "weighted_gram", recording_gram)
    hp = ItemItemHParams(l2s=(1.0, 30.0), user_weights=(0.0, 0.5), neighbours=5, rank=4,
                         choice_dense=12, max_dense=25)
    item_item_training.train_item_item(hp, x.shape[0], x.shape[1], pairs(x))
    assert [len(head) for head in solved] == [12, 12, 12, 25]
    # X'WX once per user weight in the choice (its l2s share it), once for the fit.
    assert grams[:2] == [(12, 0.0), (12, 0.5)] and len(grams) == 3 and grams[2][0] == 25
    # The fit's: the most rated of all the interactions (the choice's: of the holdout's rest).
    left_out = np.setdiff1d(np.arange(x.shape[1]), solved[-1])
    assert counts[left_out].max() <= counts[solved[-1]].min()


def test_the_choice_scores_a_seeded_sample_of_at_most_choice_users_holdout_users(monkeypatch):
    x, _, _ = planted(users=300, blocks=3, per_block=10, noise=0.0)
    scored, score = [], item_item_training.holdout_ndcg

    def recording(b, head, scales, seen, users, relevant):
        scored.append(users.copy())
        return score(b, head, scales, seen, users, relevant)

    monkeypatch.setattr(item_item_training, "holdout_ndcg", recording)
    hp = ItemItemHParams(l2s=(1.0,), user_weights=(0.0,), neighbours=5, rank=4)
    item_item_training.train_item_item(hp, x.shape[0], x.shape[1], pairs(x))
    every = scored.pop()
    assert len(every) > 100  # the whole holdout: fewer users than choice_users
    for _ in range(2):
        item_item_training.train_item_item(dataclasses.replace(hp, choice_users=100),
                                           x.shape[0], x.shape[1], pairs(x))
    first, again = scored
    assert len(first) == 100 and np.all(np.diff(first) > 0)
    assert set(first) <= set(every)
    np.testing.assert_array_equal(first, again)  # seeded: a rerun scores the same users
    with pytest.raises(ValueError, match="choice_users"):
        ItemItemHParams(choice_users=0)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_holdout_top_k_equals_a_ranking_of_every_movie(sign):
    """top_k ranks the head alone when its K-th best scores above 0 (positive weights) and
    every movie otherwise (negative weights: the unsolved movies' 0 beats them): both as a
    ranking of all M movies, seen ones excluded and the unsolved scoring 0."""
    rng = np.random.default_rng(7)
    num_users, num_movies = 60, 40
    head = np.sort(rng.choice(num_movies, 25, replace=False))
    b = (sign * (np.abs(rng.normal(size=(25, 25))) + 0.1)).astype(np.float32)
    scale = item_item.popularity_scale(rng.integers(1, 50, num_movies), -0.1)
    seen = sp.csr_matrix((rng.random((num_users, num_movies)) < 0.15).astype(np.float32))
    every = np.zeros((num_users, num_movies), np.float32)
    every[:, head] = np.asarray(seen[:, head] @ b) * scale[head]
    every[seen.nonzero()] = -np.inf
    expected = np.argsort(-every, axis=1, kind="stable")[:, :item_item_training.K]
    top = item_item_training.top_k(seen, np.asarray(seen[:, head] @ b) * scale[head], head)
    # The same scores best first (movies of equal score, e.g. the unsolved ones' 0, may be
    # any of them), K distinct movies a user, none seen.
    np.testing.assert_array_equal(np.take_along_axis(every, top, axis=1),
                                  np.take_along_axis(every, expected, axis=1))
    assert all(len(set(row)) == item_item_training.K for row in top)
    assert not np.isinf(np.take_along_axis(every, top, axis=1)).any()
    in_head = np.isin(top, head).all(axis=1)
    # Both paths ran: the head alone (positive weights) and every movie (negative ones).
    assert in_head.any() if sign > 0 else not in_head.any()


def catalogue(genres: np.ndarray, years: np.ndarray, oov: int = 0) -> Catalogue:
    """Catalogue of len(genres) movies, index = row, the last `oov` rows not trained on."""
    m = len(genres)
    index = np.arange(m)
    index[m - oov:] = m - oov  # the OOV index: the vocabulary's size
    full = np.zeros((m, len(features.GENRE_NAMES)), np.float32)
    full[:, :genres.shape[1]] = genres
    return Catalogue(movie_ids=np.arange(1, m + 1), movie_idx=index, genres=full,
                     years=np.asarray(years, np.float32),
                     titles=np.array([b"m%d" % i for i in range(m)], dtype=object))


def test_side_features_are_genres_their_combination_and_year_buckets_by_movie_index():
    genres = np.eye(3, dtype=np.float32)[[0, 1, 1, 2]]
    genres[1, 0] = 1.0  # movie 1: genres 0 and 1
    movies = catalogue(genres, [-1.2, -0.1, 0.3, 0.4], oov=1)
    movies.genres[2, features.GENRE_NAMES.index(features.NO_GENRES)] = 1.0
    side = item_item_training.side_features(movies, 3, year_buckets=(0.5, 1.0),
                                            title_max_share=0.0).toarray()
    genre_count = len(features.GENRE_NAMES) - 1  # "(no genres listed)" is no likeness
    # 3 distinct combinations; buckets of -1.2, -0.1, 0.3 by 0.5: -3, -1, 0; by 1: -2, -1, 0
    # (the OOV movie's 0.4 is not a row).
    assert side.shape == (3, genre_count + 3 + 3 + 3)
    np.testing.assert_array_equal(side[:, :3], genres[:3])
    combos, by_half, by_one = np.split(side[:, genre_count:], 3, axis=1)
    assert sorted(map(tuple, combos)) == sorted(map(tuple, np.eye(3)))
    np.testing.assert_array_equal(by_half, np.eye(3))
    np.testing.assert_array_equal(by_one, np.eye(3))


def test_title_words_are_the_rarer_words_that_titles_share():
    titles = np.array([t.encode() for t in (
        "Star Wars: Episode IV - A New Hope (1977)", "Star Wars: Episode V (1980)",
        "The Empire of the Sun (1987)", "Sun, The (2001)", "Amélie (2001)", "Amélie Poulain",
        "Up (2009)", "The Matrix (1999)", "Matrix, The (1999)", "The End (1999)")])
    words = item_item_training.title_words(titles, max_share=0.3)
    # "the" is in 5 titles (> 0.3 x 10); "up" is too short; "(1999)" is no word; each of the
    # rest in 2 titles.
    shared = {"amélie": [4, 5], "episode": [0, 1], "matrix": [7, 8], "star": [0, 1],
              "sun": [2, 3], "wars": [0, 1]}
    assert words.shape == (10, len(shared))
    for column, rows in enumerate(shared.values()):  # columns in word order
        assert list(words[:, column].nonzero()[0]) == rows


def test_side_features_link_movies_that_no_user_rated_together():
    # Movies 0 and 1 have disjoint raters (movie 2 with both): only their shared genre links
    # them directly.
    x = sp.csr_matrix(np.array([[1, 0, 1], [1, 0, 0], [0, 1, 1], [0, 1, 0]], np.float32))
    side = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1]], np.float32))
    head = np.arange(3)
    plain = item_item.regularised_solve(x, head, 1.0, 0.0, 0.0)
    linked = item_item.regularised_solve(x, head, 1.0, 0.0, 0.0, side, 2.0)
    g = item_item.gram(x, head)
    g += 2.0 * (side @ side.T).toarray()
    np.testing.assert_allclose(linked, item_item.solve(g, 1.0), rtol=1e-5)
    assert linked[0, 1] > plain[0, 1] + 0.1


def side_gain(genre_of_movie: np.ndarray, rng: np.random.Generator
              ) -> tuple[item_item_training.ItemItemChoice, float]:
    """The choice on planted data (8 blocks of 40 movies; each of 800 users rates 3 movies of
    their block and 2 anywhere: few co-occurrences a pair, much noise) with one genre a movie,
    and how much the best side weight's holdout NDCG@10 beats the best without."""
    blocks, per_block, users = 8, 40, 800
    x = np.zeros((users, blocks * per_block), np.float32)
    for u in range(users):
        x[u, (u % blocks) * per_block + rng.choice(per_block, 3, replace=False)] = 1.0
        x[u, rng.choice(blocks * per_block, 2, replace=False)] = 1.0
    movies = catalogue(np.eye(blocks, dtype=np.float32)[genre_of_movie], np.zeros(len(x.T)))
    hp = ItemItemHParams(l2s=(2.0, 8.0), popularity_exponents=(0.0,), user_weights=(0.0,),
                         side_weights=(0.0, 1.0, 4.0), neighbours=5, rank=4)
    x = sp.csr_matrix(x)
    _, choice = item_item_training.train_item_item(hp, users, x.shape[1], pairs(x), movies)
    ndcg = choice.validation_ndcg
    # Each side weight at the best l2 without (8) and the next larger (none here).
    assert set(ndcg) == {"2/0/0/0", "8/0/0/0", "8/0/0/1", "8/0/0/4"}
    return choice, max(ndcg["8/0/0/1"], ndcg["8/0/0/4"]) - max(ndcg["2/0/0/0"], ndcg["8/0/0/0"])


def test_the_side_weight_is_chosen_where_genres_carry_the_taste():
    """A genre per block fills in the co-occurrences the users' few ratings miss; the same
    genres dealt at random carry nothing of the taste and gain a third as much at most (a little
    shrinkage)."""
    genre = np.repeat(np.arange(8), 40)
    choice, gain = side_gain(genre, np.random.default_rng(5))
    assert choice.side_weight > 0 and gain > 0.01
    _, random_gain = side_gain(np.random.default_rng(0).permutation(genre),
                               np.random.default_rng(5))
    assert random_gain < gain / 3


def test_one_first_stage_only():
    with pytest.raises(ValueError, match="one first stage"):
        HParams(item_item=ItemItemHParams(), retrieval=RetrievalHParams())
    assert HParams.from_config(HParams(item_item=ItemItemHParams()).to_config()).item_item == \
        ItemItemHParams()


@pytest.fixture(scope="module")
def served():
    """A ServingModule with the item-item stage of planted data: 40 trained movies, and a 41st
    in the catalogue that no one rated in training (the OOV index)."""
    x, _, _ = planted(users=120, blocks=4, per_block=10, noise=0.05, seed=3)
    num_users, num_movies = x.shape
    hp = ItemItemHParams(l2s=(5.0,), popularity_exponents=(-0.1,), neighbours=6, rank=5,
                         num_candidates=10)
    columns = pairs(x)
    stage, _ = item_item_training.train_item_item(hp, num_users, num_movies, columns)
    ids = np.arange(1000, 1000 + num_movies + 1, dtype=np.int64)
    movies = Catalogue(movie_ids=ids, movie_idx=np.minimum(np.arange(num_movies + 1), num_movies),
                       genres=np.zeros((num_movies + 1, len(features.GENRE_NAMES)), np.float32),
                       years=np.zeros(num_movies + 1, np.float32),
                       titles=np.array([b"m%d" % m for m in ids], dtype=object))
    model = trainer.build_model(HParams(model_type="bias"), num_users, num_movies, 0.5)
    history = user_history(columns[features.USER_IDX], columns[features.MOVIE_IDX], num_users)
    module = export.ServingModule(model, list(range(1, num_users + 1)), num_movies, movies,
                                  history, first_stage=hp, item_stage=stage)
    return module, stage, x


def test_exported_recommend_ranks_by_the_stages_numpy_scores(served):
    module, stage, x = served
    users = np.arange(0, 120, 7)
    out = module.recommend(user_id=tf.constant(users + 1, tf.int64),
                           k=tf.fill([len(users)], 10))[contract.MOVIE_IDS].numpy()
    counts = np.asarray(x.sum(axis=0)).reshape(-1)
    prior = item_item.TIE_BREAK * np.log1p(counts) / np.log1p(counts).max()
    scores = stage.scores(x[users]) + prior
    scores[x[users].nonzero()] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :10] + 1000
    np.testing.assert_array_equal(out, expected)
    assert 1000 + x.shape[1] not in out  # never trained on: never recommended


def test_a_new_user_gets_the_most_rated_movies(served):
    module, _, x = served
    out = module.recommend(user_id=tf.constant([10**6], tf.int64),
                           k=tf.constant([5], tf.int32))[contract.MOVIE_IDS].numpy()[0]
    counts = np.asarray(x.sum(axis=0)).reshape(-1)
    np.testing.assert_array_equal(out, np.argsort(-counts, kind="stable")[:5] + 1000)
