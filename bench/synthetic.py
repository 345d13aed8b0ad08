"""Synthetic MovieLens: ratings.csv and movies.csv in the "latest" format, of any size.

    python -m bench.synthetic --ratings 1000000 --out data/synthetic-1m --seed 0
    make synthetic RATINGS=1000000 OUT=data/synthetic-1m

For scale tests (bench/scaling.py) where no real MovieLens folder of the size exists, and without
MovieLens' licence limits. The files parse like the real ones (components/movielens_example_gen/
parsing.py) and look like them where the pipeline's cost or the models' work depends on it:

- sizes: users and movies grow with the ratings as in real MovieLens releases (a power law through
  ml-latest-small, 100,836 ratings / 610 users / 9,742 movies, and ml-25m, 25,000,095 / 162,541 /
  62,423): users about linearly, movies about as ratings^0.34;
- user activity: at least 20 ratings per user, a log-normal long tail (ml-latest-small: median 70,
  mean 165, max 2,698), scaled so the total is exactly --ratings;
- which movies a user rates: a pool of 4x their count drawn by popularity (Zipf over a random
  movie ranking, without replacement), of which they rate the ones most to their taste
  (Gumbel top-k on <user factors, movie factors>, plus a little popularity): a long tail of
  movie popularity (ml-latest-small: the 10% most rated movies have 60% of the ratings; here
  56%), and tastes a model can learn;
- ratings: global mean + user bias + movie bias (popular movies a little higher) + the same
  low-rank affinity + noise, rounded to whole stars 70% of the time and half stars otherwise
  (MovieLens' mix), 0.5-5.0;
- timestamps: each user starts at a random time between 1996 and 2018 and rates over a session
  (about half the users: under a day) or months to years; rows of a user in time order;
- drift (--user-drift STARS, default 0: none): each user's ratings move linearly over their
  span by a N(0, STARS) amount, from -half of it at their first rating to +half at their last,
  as real users' do (what the pipeline's user drift models); the other draws are unchanged;
- movies: sparse increasing ids, made-up titles with " (year)" (some "Name, The (year)", some
  non-ASCII), 1-10 genres of MovieLens' list chosen by the movie's factors, so genres carry
  signal; a few "(no genres listed)".

Memory stays bounded at any size: per-user and per-movie parameters (a few dozen bytes each) are
held, the ratings are generated and written in chunks of about CHUNK_RATINGS. The output depends
only on the seed and the sizes.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from models import features

# (ratings, users, movies in movies.csv) of two real releases; sizes follow the power law
# through them (extrapolated beyond).
SMALL = (100_836, 610, 9_742)
LARGE = (25_000_095, 162_541, 62_423)
MIN_RATINGS_PER_USER = 20  # as in every MovieLens release
RANK = 8  # latent factors of users and movies
POOL_FACTOR = 4  # a user's pool of candidate movies is this many times their count
CHUNK_RATINGS = 250_000  # ratings generated and written at a time: bounds the memory
# Timeline of ml-latest-small (1996-03-29 .. 2018-09-24), in seconds since the epoch.
FIRST_TIMESTAMP, LAST_TIMESTAMP = 828_000_000, 1_537_800_000
# Genre frequencies in ml-latest-small's movies.csv: the prior of each genre's score.
GENRE_COUNTS = {
    "Drama": 4361, "Comedy": 3756, "Thriller": 1894, "Action": 1828, "Romance": 1596,
    "Adventure": 1263, "Crime": 1199, "Sci-Fi": 980, "Horror": 978, "Fantasy": 779,
    "Children": 664, "Animation": 611, "Mystery": 573, "Documentary": 440, "War": 382,
    "Musical": 334, "Western": 167, "IMAX": 158, "Film-Noir": 87,
}
GENRES = tuple(GENRE_COUNTS)
assert set(GENRES) | {features.NO_GENRES} == set(features.GENRE_NAMES), "MovieLens' genre list"
ADJECTIVES = ("Silent", "Last", "Red", "Lost", "Dark", "Golden", "Broken", "Secret", "Wild",
              "Little", "Cold", "Bright", "Hidden", "Final", "Strange", "Blue", "Eternal",
              "Crimson", "Étrange", "Señorita's", "Lonely", "Forgotten", "Electric", "Quiet")
NOUNS = ("River", "City", "Night", "Road", "Dream", "House", "Garden", "Storm", "Island", "Game",
         "Heart", "Mirror", "Summer", "Kingdom", "Station", "Letter", "Café", "Machine", "Sea",
         "Mountain", "Stranger", "Promise", "Circus", "Frontier")
# The rating model (stars): observed mean ~3.5 and std ~1.0 like ml-latest-small, once the
# taste-driven choice has selected well-liked movies.
GLOBAL_MEAN = 2.95
USER_BIAS_STD, MOVIE_BIAS_STD, POPULARITY_BIAS = 0.5, 0.4, 0.12
AFFINITY_STARS = 0.45  # stars per unit of <user, movie> affinity (a standard normal)
NOISE_STARS = 0.6  # scale of a Student t with NOISE_DF degrees of freedom: a few very low ratings
NOISE_DF = 4
WHOLE_STAR_FRACTION = 0.7
TASTE_STRENGTH = 1.5  # weight of the affinity in the choice of movies within a user's pool
# Popularity's weight in the choice within the pool too: the most popular movies are in nearly
# every pool, and picked by taste alone only ~1/4 of users would rate them (ml-latest-small's
# most rated movie: 54% of users).
POPULARITY_STRENGTH = 0.3
ZIPF_EXPONENT = 1.1  # of movie popularity over the movie ranking


def sizes(n_ratings: int) -> tuple[int, int]:
    """(users, movies) for a dataset of n_ratings, by the power law through SMALL and LARGE."""
    log_ratio = np.log(n_ratings / SMALL[0]) / np.log(LARGE[0] / SMALL[0])
    users = SMALL[1] * (LARGE[1] / SMALL[1]) ** log_ratio
    movies = SMALL[2] * (LARGE[2] / SMALL[2]) ** log_ratio
    return (max(1, min(round(users), n_ratings // MIN_RATINGS_PER_USER)),
            max(MIN_RATINGS_PER_USER, round(movies)))


def exact_total(weights: np.ndarray, total: int, cap: int) -> np.ndarray:
    """Non-negative integers proportional to `weights`, each <= cap, summing exactly to total
    (largest remainders; what a capped entry cannot take goes to the others)."""
    if total > cap * len(weights):
        raise ValueError(f"{total} cannot be spread over {len(weights)} entries of at most {cap}")
    counts = np.zeros(len(weights), np.int64)
    free = np.ones(len(weights), bool)
    remaining = total
    while remaining > 0:
        w = np.where(free, weights, 0.0)
        share = w / w.sum() * remaining
        add = np.floor(share).astype(np.int64)
        leftover = remaining - add.sum()
        # The largest fractional parts take one more each (stable order: deterministic).
        add[np.argsort(-(share - add), kind="stable")[:leftover]] += 1
        counts += add
        over = np.maximum(counts - cap, 0)
        counts -= over
        free &= counts < cap
        remaining = int(over.sum())
    return counts


@dataclasses.dataclass
class World:
    """The planted parameters: everything but the ratings, whose rows are drawn chunk by chunk."""

    seed: int
    n_ratings: int
    user_factors: np.ndarray  # [users, RANK]
    user_bias: np.ndarray  # [users], stars
    user_counts: np.ndarray  # [users], ratings per user, summing to n_ratings
    user_start: np.ndarray  # [users], first timestamp
    user_span: np.ndarray  # [users], seconds between the first and the last rating
    movie_ids: np.ndarray  # [movies], increasing, sparse
    movie_factors: np.ndarray  # [movies, RANK]
    movie_bias: np.ndarray  # [movies], stars
    movie_years: np.ndarray  # [movies]
    popularity_cdf: np.ndarray  # [movies], cumulative Zipf probability of each movie
    # [users], stars a user's ratings move over their span (all 0 without --user-drift)
    user_drift: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_counts)

    @property
    def n_movies(self) -> int:
        return len(self.movie_ids)

    @property
    def log_popularity(self) -> np.ndarray:
        return np.log(np.diff(self.popularity_cdf, prepend=0.0))

    def affinity(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        """<user factors, movie factors> / sqrt(RANK) of 0-based (user, movie) pairs: about a
        standard normal over random pairs."""
        return np.einsum("ij,ij->i", self.user_factors[users],
                         self.movie_factors[movies]) / np.sqrt(RANK)


def make_world(n_ratings: int, seed: int = 0, n_users: int | None = None,
               n_movies: int | None = None, user_drift: float = 0.0) -> World:
    """Draws the users' and movies' parameters for a dataset of n_ratings (sizes from `sizes`
    unless given); `user_drift`: the std of each user's drift over their span, in stars."""
    default_users, default_movies = sizes(n_ratings)
    n_users, n_movies = n_users or default_users, n_movies or default_movies
    if n_users * MIN_RATINGS_PER_USER > n_ratings:
        raise ValueError(f"{n_users} users need at least {n_users * MIN_RATINGS_PER_USER} "
                         f"ratings ({MIN_RATINGS_PER_USER} each), got {n_ratings}")
    rng = np.random.default_rng([seed, 0])
    # Users: a log-normal long tail above the minimum, scaled to the exact total; nobody rates
    # more than 30% of the catalogue (ml-latest-small's most active user: 28%).
    cap = max(MIN_RATINGS_PER_USER, int(n_movies * 0.3))
    extra = exact_total(rng.lognormal(np.log(50.0), 1.3, n_users),
                        n_ratings - MIN_RATINGS_PER_USER * n_users, cap - MIN_RATINGS_PER_USER)
    user_start = rng.uniform(FIRST_TIMESTAMP, LAST_TIMESTAMP, n_users)
    session = rng.random(n_users) < 0.55  # rates everything in one sitting
    span = np.where(session, np.minimum(rng.lognormal(np.log(3600.0), 1.0, n_users), 86_400),
                    rng.lognormal(np.log(90 * 86_400.0), 1.5, n_users))
    span = np.minimum(span, LAST_TIMESTAMP - user_start)
    # Movies: Zipf popularity over a random ranking; a bias that favours popular movies a little.
    rank = rng.permutation(n_movies) + 1.0
    weight = rank ** -ZIPF_EXPONENT
    log_pop = np.log(weight)
    movie_bias = (rng.normal(0.0, MOVIE_BIAS_STD, n_movies)
                  + POPULARITY_BIAS * (log_pop - log_pop.mean()) / log_pop.std())
    # Release years: mostly recent, as in MovieLens (median ~1999, back to the 1900s).
    years = np.clip(2018 - np.floor(rng.exponential(18.0, n_movies)), 1902, 2018)
    return World(
        seed=seed, n_ratings=n_ratings,
        user_factors=rng.normal(size=(n_users, RANK)),
        user_bias=rng.normal(0.0, USER_BIAS_STD, n_users),
        user_counts=MIN_RATINGS_PER_USER + extra,
        user_start=user_start.astype(np.int64), user_span=span.astype(np.int64),
        movie_ids=np.cumsum(1 + rng.geometric(0.3, n_movies)),
        movie_factors=rng.normal(size=(n_movies, RANK)),
        movie_bias=movie_bias, movie_years=years.astype(np.int64),
        popularity_cdf=np.cumsum(weight / weight.sum()),
        # Its own stream: the other parameters are the same with and without drift.
        user_drift=np.random.default_rng([seed, 3]).normal(0.0, user_drift, n_users),
    )


def _title(rng: np.random.Generator, year: int) -> str:
    name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    form = rng.random()
    if form < 0.1:  # MovieLens moves the article to the end: a comma the CSV must quote
        name = f"{name}, The"
    elif form < 0.2:
        name = f"{name} {rng.integers(2, 5)}"
    return f"{name} ({year})"


def movie_genres(world: World, rng: np.random.Generator) -> list[str]:
    """'A|B' per movie: 1-10 genres by prior frequency + the movie's factors along each genre's
    direction, so that genres carry part of the taste structure; 0.35% '(no genres listed)'."""
    directions = rng.normal(size=(len(GENRES), RANK)) / np.sqrt(RANK)
    prior = np.log(np.array(list(GENRE_COUNTS.values()), np.float64) / sum(GENRE_COUNTS.values()))
    counts = np.minimum(1 + rng.poisson(1.3, world.n_movies), 10)
    out = []
    for m in range(world.n_movies):
        if rng.random() < 0.0035:
            out.append(features.NO_GENRES)
            continue
        score = prior + world.movie_factors[m] @ directions.T + rng.gumbel(size=len(GENRES))
        out.append("|".join(GENRES[g] for g in sorted(np.argsort(-score)[:counts[m]])))
    return out


def write_movies(world: World, path: Path) -> None:
    rng = np.random.default_rng([world.seed, 1])
    genres = movie_genres(world, rng)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["movieId", "title", "genres"])
        for movie_id, year, genre in zip(world.movie_ids, world.movie_years, genres, strict=True):
            writer.writerow([int(movie_id), _title(rng, int(year)), genre])


def _group_ranks(groups: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal values in a sorted array."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    lengths = np.diff(np.r_[starts, len(groups)])
    return np.arange(len(groups)) - np.repeat(starts, lengths)


def candidate_pools(world: World, users: np.ndarray, pool: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(user, movie) pairs: for each user, `pool` distinct movies drawn by popularity without
    replacement. That is the first `pool` distinct movies of a popularity-weighted sequence drawn
    with replacement: for pools much smaller than the catalogue, a few times `pool` draws give
    them cheaply; the rest (large pools, or too few distinct draws) take a Gumbel top-k over the
    whole catalogue, the same distribution at a cost of one pass over the movies."""
    n_movies = world.n_movies
    light = pool * 8 <= n_movies
    draws = np.where(light, 3 * pool + 20, 0)
    owner = np.repeat(np.arange(len(users)), draws)
    movie = np.minimum(np.searchsorted(world.popularity_cdf, rng.random(len(owner))),
                       n_movies - 1)
    keys, first = np.unique(owner * n_movies + movie, return_index=True)
    key_owner = keys // n_movies
    order = np.lexsort((first, key_owner))  # each user's distinct movies in the order drawn
    keys, key_owner = keys[order], key_owner[order]
    keep = _group_ranks(key_owner) < pool[key_owner]
    keys, key_owner = keys[keep], key_owner[keep]
    short = np.bincount(key_owner, minlength=len(users)) < pool
    owners, movies = [key_owner[~short[key_owner]]], [keys[~short[key_owner]] % n_movies]
    log_pop = world.log_popularity
    for i in np.flatnonzero(short):
        top = np.argpartition(-(log_pop + rng.gumbel(size=n_movies)), pool[i] - 1)[:pool[i]]
        owners.append(np.full(pool[i], i))
        movies.append(top)
    return np.concatenate(owners), np.concatenate(movies)


def chunk_rows(world: World, users: np.ndarray, rng: np.random.Generator
               ) -> tuple[np.ndarray, ...]:
    """(userId, movieId, stars, timestamp) of the given 0-based users' ratings, by user and time."""
    counts = world.user_counts[users]
    pool = np.minimum(POOL_FACTOR * counts, world.n_movies)
    owner, movie = candidate_pools(world, users, pool, rng)
    affinity = world.affinity(users[owner], movie)
    # Each user rates the `count` movies of their pool most to their taste (Gumbel top-k).
    key = (TASTE_STRENGTH * affinity + POPULARITY_STRENGTH * world.log_popularity[movie]
           + rng.gumbel(size=len(owner)))
    order = np.lexsort((-key, owner))
    owner, movie, affinity = owner[order], movie[order], affinity[order]
    keep = _group_ranks(owner) < counts[owner]
    owner, movie, affinity = owner[keep], movie[keep], affinity[keep]
    user = users[owner]
    noise = NOISE_STARS * rng.standard_t(NOISE_DF, len(owner))
    whole = rng.random(len(owner)) < WHOLE_STAR_FRACTION
    along = rng.random(len(owner))  # where in the user's span the rating falls
    stars = (GLOBAL_MEAN + world.user_bias[user] + world.movie_bias[movie]
             + AFFINITY_STARS * affinity + noise)
    if world.user_drift is not None:
        stars = stars + world.user_drift[user] * (along - 0.5)
    stars = np.where(whole, np.clip(np.round(stars), 1.0, features.RATING_MAX),
                     np.clip(np.round(stars * 2) / 2, features.RATING_MIN, features.RATING_MAX))
    timestamp = world.user_start[user] + (along * world.user_span[user]).astype(np.int64)
    order = np.lexsort((timestamp, user))
    return (user[order] + 1, world.movie_ids[movie[order]], stars[order], timestamp[order])


def chunks(world: World) -> Iterator[np.ndarray]:
    """Consecutive blocks of 0-based users holding about CHUNK_RATINGS ratings each."""
    ends = np.searchsorted(np.cumsum(world.user_counts),
                           np.arange(CHUNK_RATINGS, world.n_ratings, CHUNK_RATINGS))
    bounds = np.unique(np.r_[0, ends + 1, world.n_users].clip(0, world.n_users))
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        yield np.arange(start, end)


# "4.0", "3.5": MovieLens' text of each half star (index: stars * 2).
_STARS_TEXT = np.array([f"{s / 2:.1f}" for s in range(11)], object)


def write_ratings(world: World, path: Path) -> int:
    """Writes ratings.csv chunk by chunk; returns the number of rows."""
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(("userId", "movieId", "rating", "timestamp")) + "\n")
        for index, users in enumerate(chunks(world)):
            rng = np.random.default_rng([world.seed, 2, index])
            user, movie, stars, timestamp = chunk_rows(world, users, rng)
            text = _STARS_TEXT[np.round(stars * 2).astype(np.int64)]
            f.write("".join(f"{u},{m},{s},{t}\n" for u, m, s, t in
                            zip(user.tolist(), movie.tolist(), text, timestamp.tolist(),
                                strict=True)))
            rows += len(user)
    return rows


def generate(out: Path, n_ratings: int, seed: int = 0, n_users: int | None = None,
             n_movies: int | None = None, user_drift: float = 0.0) -> dict:
    """Writes ratings.csv, movies.csv and synthetic.json (the parameters) into `out`."""
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    world = make_world(n_ratings, seed, n_users, n_movies, user_drift)
    write_movies(world, out / "movies.csv")
    rows = write_ratings(world, out / "ratings.csv")
    assert rows == n_ratings, (rows, n_ratings)
    info = {"ratings": rows, "users": world.n_users, "movies": world.n_movies, "seed": seed,
            "user_drift": user_drift,
            "seconds": round(time.time() - start, 1),
            # ru_maxrss is in KiB on Linux.
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    (out / "synthetic.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, default=SMALL[0], help="number of ratings")
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--users", type=int, help="override the number of users")
    parser.add_argument("--movies", type=int, help="override the number of movies")
    parser.add_argument("--user-drift", type=float, default=0.0,
                        help="std of each user's drift over their span, in stars (default 0)")
    args = parser.parse_args(argv)
    info = generate(args.out, args.ratings, args.seed, args.users, args.movies, args.user_drift)
    print(f"Wrote {info['ratings']:,} ratings of {info['users']:,} users on "
          f"{info['movies']:,} movies to {args.out} in {info['seconds']} s "
          f"(peak RSS {info['peak_rss_mib']} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
