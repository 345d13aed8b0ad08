"""bench/ranking.py's protocol splits and popularity baseline, on tiny synthetic ratings."""

import numpy as np
import pandas as pd
import pytest

from bench import ranking
from models.ranking_metrics import PAD

# Ratings per user: multiples of 4 (75% exact) and counts where 75% is not whole.
COUNTS = {1: 4, 2: 8, 3: 10, 4: 3, 5: 7, 6: 20}


@pytest.fixture
def ratings():
    rows = [(user, 100 + i, 0.5 + i % 10 * 0.5, 1_000 + i)
            for user, count in COUNTS.items() for i in range(count)]
    frame = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    # Users interleaved, as in a file ordered by something other than user.
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


def test_strat75_trains_75_percent_of_each_user(ratings):
    train, test = ranking.split(ratings, "strat75", seed=0)
    per_user = train.groupby("userId").size()
    # python_stratified_split's rule: rank / count <= 0.75, i.e. floor(0.75 * count) train.
    assert per_user.to_dict() == {u: int(np.floor(0.75 * c)) for u, c in COUNTS.items()}
    assert set(train.userId) == set(COUNTS)
    assert len(train) + len(test) == len(ratings)
    assert not set(train.index) & set(test.index)
    assert list(train.index) == sorted(train.index)  # input order kept


def test_strat75_is_deterministic_per_seed_and_varies_with_it(ratings):
    first, _ = ranking.split(ratings, "strat75", seed=1)
    again, _ = ranking.split(ratings, "strat75", seed=1)
    other, _ = ranking.split(ratings, "strat75", seed=2)
    assert list(first.index) == list(again.index)
    assert list(first.index) != list(other.index)


def test_validation_split_applies_the_protocol_inside_train(ratings):
    train, _ = ranking.split(ratings, "strat75", seed=0)
    fit, held = ranking.validation_split(train, "strat75", seed=0)
    assert set(fit.index) | set(held.index) == set(train.index)
    assert set(fit.userId) == set(train.userId)
    fit, held = ranking.validation_split(train, "rand80", seed=0)
    assert set(fit.index) | set(held.index) == set(train.index)
    assert not set(fit.index) & set(held.index)


def test_relevant_sets_keep_known_users_with_a_relevant_movie():
    train = pd.DataFrame({"userId": [1, 2], "movieId": [10, 10], "rating": [4.0, 4.0]})
    test = pd.DataFrame({"userId": [1, 1, 2, 3], "movieId": [11, 12, 13, 14],
                         "rating": [5.0, 2.0, 3.5, 5.0]})
    users, relevant = ranking.relevant_sets(train, test, min_rating=4.0)
    assert users.tolist() == [1]  # 2: nothing >= 4; 3: no training ratings
    assert relevant == [{11}]
    users, relevant = ranking.relevant_sets(train, test, min_rating=0.0)
    assert users.tolist() == [1, 2] and relevant == [{11, 12}, {13}]


def test_popularity_excludes_movies_rated_in_training():
    # Ratings per movie: 10 x4, 20 x3, 30 x2, 40 x2, 50 x1.
    pairs = [(1, 10), (1, 20), (2, 10), (2, 20), (2, 30), (3, 10), (3, 20), (3, 40),
             (4, 10), (4, 30), (4, 40), (4, 50)]
    train = pd.DataFrame(pairs, columns=["userId", "movieId"]).assign(rating=4.0)
    recommend = ranking.fit_popularity(train, seed=0, params={})
    lists = recommend(np.array([1, 4]))
    assert lists.shape == (2, ranking.K)
    # Most rated first, ties to the lower id; what the user rated is never listed; PAD after
    # the catalogue runs out.
    assert lists[0].tolist() == [30, 40, 50] + [PAD] * (ranking.K - 3)
    assert lists[1].tolist() == [20] + [PAD] * (ranking.K - 1)


def test_the_catalogue_has_every_movie_and_unrated_ones_are_out_of_vocabulary(ratings):
    from models import features

    movie_ids = sorted(ratings.movieId.unique()) + [999]  # 999: in movies.csv, never rated
    movies = pd.DataFrame({"movieId": movie_ids, "title": [f"M {m} (2001)" for m in movie_ids],
                           "genres": "Drama"})
    columns, users, num_movies, catalogue = ranking.encoded_catalogue(ratings, movies)
    assert len(users) == len(COUNTS) and num_movies == ratings.movieId.nunique()
    assert len(columns[features.USER_IDX]) == len(ratings)
    assert list(catalogue.movie_ids) == movie_ids
    assert catalogue.movie_idx[-1] == num_movies  # the OOV index
    assert set(catalogue.movie_idx[:-1]) == set(range(num_movies))
