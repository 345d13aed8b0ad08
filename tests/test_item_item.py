"""models/item_item.py: the EDLAE solve, pruning, and the TF scoring against the numpy one."""

import numpy as np
import pytest
import scipy.sparse as sp

from models import item_item


def planted(seed=0, users=400, blocks=4, per_block=10, noise=0.02):
    """Users who each like one block of movies (rating most of it) plus a little noise: each
    movie's neighbours should be the rest of its block."""
    rng = np.random.default_rng(seed)
    movies = blocks * per_block
    x = np.zeros((users, movies), np.float32)
    for u in range(users):
        block = u % blocks
        x[u, block * per_block:(block + 1) * per_block] = rng.random(per_block) < 0.7
    x = np.maximum(x, rng.random((users, movies)) < noise).astype(np.float32)
    return sp.csr_matrix(x), blocks, per_block


def reference(x, l2, dropout):
    g = (x.T @ x).toarray().astype(np.float64)
    lam = l2 + dropout / (1 - dropout) * np.diag(g)
    p = np.linalg.inv(g + np.diag(lam))
    return np.eye(len(g)) - p / np.diag(p)[None, :]


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_solve_matches_the_closed_form(dropout):
    x, _, _ = planted()
    b = item_item.dense_fit(x, l2=10.0, dropout=dropout)
    expected = reference(x, 10.0, dropout)
    assert b.dtype == np.float32 and b.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(b, expected, atol=1e-5)
    assert np.all(np.diag(b) == 0)


def test_finds_the_planted_blocks():
    x, blocks, per_block = planted()
    model = item_item.fit(x, l2=10.0, dropout=0.2, n=per_block // 2)
    block_of = np.arange(blocks * per_block) // per_block
    # Every kept neighbour of every movie is in the movie's own block, with a positive weight.
    assert np.all(block_of[model.neighbours] == block_of[:, None])
    assert np.all(model.weights > 0)
    # A user who rated part of block 2 gets the rest of block 2 first.
    history = sp.csr_matrix(np.isin(np.arange(blocks * per_block), [20, 21, 22]).astype(float))
    scores = item_item.score_numpy(model, history)[0]
    scores[[20, 21, 22]] = -np.inf
    assert set(np.argsort(-scores)[:7]) == set(range(23, 30))


def test_pruning_keeps_the_top_n_by_magnitude():
    rng = np.random.default_rng(1)
    b = rng.normal(size=(30, 30)).astype(np.float32)
    np.fill_diagonal(b, 0.0)
    head = np.arange(30)
    model = item_item.prune(b, head, 30, n=5)
    for i in range(30):
        magnitudes = np.abs(b[i])
        magnitudes[i] = -1
        expected = np.argsort(-magnitudes, kind="stable")[:5]
        assert model.neighbours[i].tolist() == expected.tolist()
        np.testing.assert_array_equal(model.weights[i], b[i, expected])
    assert model.nbytes == 30 * 5 * 8


def test_head_restricts_the_solve_and_pads_the_tail():
    counts = np.array([5, 1, 9, 3, 9, 0, 2])
    assert item_item.head_movies(counts, min_count=2).tolist() == [0, 2, 3, 4, 6]
    # The 3 most rated, ties to the lower index.
    assert item_item.head_movies(counts, max_dense=3).tolist() == [0, 2, 4]
    x, _, _ = planted()
    model = item_item.fit(x, l2=10.0, n=4, max_dense=20)
    counts = np.asarray(x.sum(axis=0)).reshape(-1)
    head = item_item.head_movies(counts, max_dense=20)
    tail = np.setdiff1d(np.arange(x.shape[1]), head)
    assert np.all(model.weights[tail] == 0) and np.all(model.neighbours[tail] == 0)
    assert set(np.unique(model.neighbours[head])) <= set(head)
    # More neighbours asked for than the head has: the rows are padded.
    small = item_item.fit(x[:, :6], l2=10.0, n=8)
    assert np.all(small.weights[:, 5:] == 0)


def test_tf_scoring_equals_numpy_scoring():
    import tensorflow as tf

    x, _, _ = planted(users=50)
    model = item_item.fit(x, l2=5.0, dropout=0.1, n=7)
    expected = item_item.score_numpy(model, x)
    length = int(np.diff(x.indptr).max()) + 3
    history = np.full((x.shape[0], length), -1, np.int64)
    for u in range(x.shape[0]):
        row = x.indices[x.indptr[u]:x.indptr[u + 1]]
        history[u, :len(row)] = row
    scores = item_item.scores_tf(tf.constant(model.neighbours), tf.constant(model.weights),
                                 tf.constant(history))
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5, atol=1e-6)
