"""bench/synthetic.py: valid MovieLens files, deterministic, with the structure it plants."""

import collections

import numpy as np
import pytest

from bench import synthetic
from components.movielens_example_gen import parsing
from models import features

N_RATINGS = 20_000


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    assert synthetic.main(["--ratings", str(N_RATINGS), "--out", str(out), "--seed", "3"]) == 0
    return out


def read_ratings(folder) -> list[parsing.Rating]:
    with open(folder / parsing.RATINGS_FILE, encoding="utf-8") as f:
        parsing.check_header(f.readline().strip().split(","), parsing.RATINGS_HEADER, "ratings")
        return [parsing.parse_rating(line) for line in f]  # raises BadRowError on a bad row


def test_the_pipeline_parser_accepts_every_row(generated):
    with open(generated / parsing.MOVIES_FILE, encoding="utf-8", newline="") as f:
        movies, rejected = parsing.read_movies(f)
    assert rejected == []
    ratings = read_ratings(generated)
    users, movie_count = synthetic.sizes(N_RATINGS)
    assert len(ratings) == N_RATINGS and len(movies) == movie_count
    assert len({r.user_id for r in ratings}) == users
    assert all(r.movie_id in movies for r in ratings)
    assert len({(r.user_id, r.movie_id) for r in ratings}) == N_RATINGS  # no pair twice
    assert {r.rating * 2 for r in ratings} <= set(range(1, 11))  # half stars, 0.5..5.0
    # Every title has a year in the schema's domain; genres from MovieLens' list.
    years = [m.year for m in movies.values()]
    assert None not in years and 1870 <= min(years) and max(years) <= 2100
    assert {g for m in movies.values() for g in m.genres} <= set(features.GENRE_NAMES)
    assert any("," in m.title for m in movies.values())  # quoted titles are exercised
    # At least 20 ratings per user, in time order within each user.
    by_user = collections.defaultdict(list)
    for r in ratings:
        by_user[r.user_id].append(r.timestamp)
    assert min(len(t) for t in by_user.values()) >= synthetic.MIN_RATINGS_PER_USER
    assert all(t == sorted(t) for t in by_user.values())


def test_same_seed_same_bytes_other_seed_other_data(generated, tmp_path):
    synthetic.generate(tmp_path / "again", N_RATINGS, seed=3)
    synthetic.generate(tmp_path / "other", N_RATINGS, seed=4)
    for name in (parsing.RATINGS_FILE, parsing.MOVIES_FILE):
        assert (tmp_path / "again" / name).read_bytes() == (generated / name).read_bytes()
        assert (tmp_path / "other" / name).read_bytes() != (generated / name).read_bytes()


def test_sizes_follow_real_movielens_releases():
    assert synthetic.sizes(synthetic.SMALL[0]) == synthetic.SMALL[1:]
    assert synthetic.sizes(synthetic.LARGE[0]) == synthetic.LARGE[1:]
    users, movies = zip(*(synthetic.sizes(n) for n in (10**5, 10**6, 5 * 10**6)), strict=True)
    assert list(users) == sorted(users) and list(movies) == sorted(movies)
    # Users grow about linearly with the ratings, movies much more slowly.
    assert 45 < users[2] / users[0] < 55 and 3 < movies[2] / movies[0] < 4.5


def test_exact_total_is_exact_and_capped():
    counts = synthetic.exact_total(np.array([100.0, 1.0, 1.0, 1.0]), total=50, cap=20)
    assert counts.sum() == 50 and counts.max() == 20 and counts.min() >= 0
    with pytest.raises(ValueError):
        synthetic.exact_total(np.ones(3), total=100, cap=20)


def test_long_tails_of_movie_popularity_and_user_activity(generated):
    ratings = read_ratings(generated)
    per_movie = np.array(sorted(collections.Counter(r.movie_id for r in ratings).values()))[::-1]
    per_user = np.array(list(collections.Counter(r.user_id for r in ratings).values()))
    # ml-latest-small: the 10% most rated movies have 60% of the ratings; user max / median 38.
    assert per_movie[:len(per_movie) // 10].sum() / N_RATINGS > 0.4
    assert np.median(per_movie) <= 5
    assert per_user.max() > 5 * np.median(per_user)


def test_planted_tastes_drive_choices_and_ratings(generated):
    """The structure a model can learn: users rate movies of their taste (the affinity of rated
    pairs is well above random pairs'), and rate them higher (the ratings, less each user's
    mean, correlate with the affinity)."""
    world = synthetic.make_world(N_RATINGS, seed=3)
    ratings = read_ratings(generated)
    users = np.array([r.user_id - 1 for r in ratings])
    movies = np.searchsorted(world.movie_ids, [r.movie_id for r in ratings])
    stars = np.array([r.rating for r in ratings])
    affinity = world.affinity(users, movies)
    rng = np.random.default_rng(0)
    random_pairs = world.affinity(rng.integers(world.n_users, size=N_RATINGS),
                                  rng.integers(world.n_movies, size=N_RATINGS))
    assert affinity.mean() > random_pairs.mean() + 0.5
    centred = stars - (np.bincount(users, stars) / np.bincount(users))[users]
    assert np.corrcoef(centred, affinity)[0, 1] > 0.2  # 0 without the planted factors


def test_planted_user_drift_moves_each_users_ratings_over_their_span(generated, tmp_path):
    synthetic.generate(tmp_path / "drifting", N_RATINGS, seed=3, user_drift=2.0)
    world = synthetic.make_world(N_RATINGS, seed=3, user_drift=2.0)
    steady, drifting = read_ratings(generated), read_ratings(tmp_path / "drifting")
    # The same users, movies and times; only the stars move.
    assert [(r.user_id, r.movie_id, r.timestamp) for r in steady] == \
        [(r.user_id, r.movie_id, r.timestamp) for r in drifting]
    change = collections.defaultdict(list)
    for a, b in zip(steady, drifting, strict=True):
        start = world.user_start[a.user_id - 1]
        span = max(world.user_span[a.user_id - 1], 1)
        change[a.user_id].append((b.rating - a.rating, (a.timestamp - start) / span - 0.5))
    # Per user, the change in stars follows drift * (position in span - 0.5), up to rounding
    # to half or whole stars: the slope of a least-squares fit recovers the planted drift.
    slopes, planted = [], []
    for user, pairs in change.items():
        delta, along = np.array(pairs).T
        if along.std() > 0.2:
            slopes.append(np.polyfit(along, delta, 1)[0])
            planted.append(world.user_drift[user - 1])
    assert np.corrcoef(slopes, planted)[0, 1] > 0.9
    assert not synthetic.make_world(N_RATINGS, seed=3).user_drift.any()  # the default: none
