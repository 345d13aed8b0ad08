"""The ExampleGen's rating batches (components/movielens_example_gen/batches.py): split masks,
per-user timestamps and id counts on hand-made batches."""

import numpy as np

from components.movielens_example_gen import batches, parsing


def batch() -> batches.RatingBatch:
    return batches.RatingBatch.of([
        parsing.Rating(3, 10, 4.0, 100), parsing.Rating(1, 10, 2.5, 50),
        parsing.Rating(3, 11, 5.0, 300), parsing.Rating(2, 12, 1.0, 200),
        parsing.Rating(3, 12, 3.0, 200)])


def test_masks_follow_each_rule():
    b = batch()
    assert batches.time_eval_mask(b, 200.0).tolist() == [False, False, True, True, True]
    # User 3 evaluates from time 200 on, user 1 has no cutoff, user 2 is unknown: both train.
    assert batches.user_time_eval_mask(b, {3: 200, 1: None}).tolist() == [
        False, False, True, False, True]
    drawn = batches.random_eval_mask(b, seed=7, fraction=0.5)
    assert drawn.tolist() == [batches.random_bucket(u, m, t, 7) < 0.5 for u, m, _, t in b.rows()]
    assert (batches.random_eval_mask(b, seed=7, fraction=0.5) == drawn).all()


def test_take_keeps_rows_together():
    taken = batch().take(np.array([False, True, True, False, False]))
    assert list(taken.rows()) == [(1, 10, 2.5, 50), (3, 11, 5.0, 300)]
    assert len(taken) == 2


def test_user_times_group_each_users_timestamps():
    grouped = {user: sorted(times.tolist()) for user, times in batches.user_times(batch())}
    assert grouped == {1: [50], 2: [200], 3: [100, 200, 300]}


def test_id_counts_count_ratings_per_user_and_movie():
    users, movies = batches.id_counts(batch())
    assert users == {3: 3, 1: 1, 2: 1} and movies == {10: 2, 11: 1, 12: 2}
