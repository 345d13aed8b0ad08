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


MOVIES = np.array([10, 11, 12, 193609], dtype=np.int64)


def line_by_line(lines: list[bytes]) -> list[tuple]:
    return list(batches.RatingBatch.of([parsing.parse_rating(line.decode())
                                        for line in lines]).rows())


def test_plain_lines_parse_a_column_at_a_time_to_the_line_by_lines_values():
    lines = [b"1,10,4.0,964982703", b"610,193609,0.5,1493846415\r", b"7,11,5,0",
             b"3,12,3.25,100", b"123456789012345,10,2.999999999999999,999999999999999"]
    parsed = batches.parse_plain(lines, MOVIES)
    assert parsed is not None and parsed.users.dtype == np.int64
    assert list(parsed.rows()) == line_by_line(lines)


def test_any_other_line_sends_its_batch_to_the_line_by_line_parse():
    good = b"1,10,4.0,964982703"
    for odd in [b"", b" 1,10,4.0,5", b"+1,10,4.0,5", b"1,10,4e0,5", b'"1",10,4.0,5',
                b"1,10,4.0", b"1,10,4.0,5,6", b"0,10,4.0,5", b"1,0,4.0,5", b"1,13,4.0,5",
                b"1,10,0.4,5", b"1,10,5.5,5", b"1,10,4.0,-5", b"1,10,4.0,5\n",
                b"1,10,4.\xff,5", b"1234567890123456,10,4.0,5", b"1,10,.5,5"]:
        assert batches.parse_plain([good, odd, good], MOVIES) is None, odd
    assert batches.parse_plain([], MOVIES) is None
    assert batches.parse_plain([good], np.array([], dtype=np.int64)) is None
