"""A sparse item-item ranking stage: EDLAE (EASE with a dropout-style diagonal regulariser) solved
in closed form on the head of the catalogue, then pruned to each movie's N strongest neighbours.

Shapes (M movies of the model's vocabulary, U users, H <= max_dense head movies, N neighbours):

  X          float [U, M] sparse CSR, 1 where the user rated the movie (binary interactions)
  head       int64 [H]       the movies with >= min_count ratings, at most max_dense of the most
                             rated (ties: the lower index); the dense solve only sees these
  G          float32 [H, H]  X_head' X_head, the co-occurrence (Gram) matrix
  Lambda     float32 [H]     lambda + p / (1 - p) * diag(G)   (Steck 2020, "Autoencoders that
                             don't overfit towards the identity": dropout p emphasised on the
                             dropped-out inputs; p = 0 is Steck 2019's EASE)
  P          float32 [H, H]  (G + diag(Lambda))^-1, by a Cholesky factorisation (LAPACK potrf,
                             potri), in place of G
  B          float32 [H, H]  I - P / diag(P) (column j divided by P[j, j]): zero diagonal; the
                             score of movie j for a user is sum over their history i of B[i, j]
  neighbours int32 [M, N]    row i: the movies of B[i, :] largest in magnitude, best first
                             (pruning by |B|); movies outside the head, and short rows, are
                             padded with index 0 and weight 0
  weights    float32 [M, N]  the matching B[i, j]

Scoring a user with history h (movie indices [L]): scores [M] = sum over l of
weights[h_l] scattered at neighbours[h_l], i.e. X_u B with B cut to N entries a row.
score_numpy does it with a sparse matrix product, scores_tf with a gather and an
unsorted_segment_sum (what an exported signature can run).

Cost and scale: building G is O(sum over users of their head ratings squared) with one sparse
product; the solve is O(H^3) time and 2 H^2 float32 memory (G, overwritten by its factor and by
P, then B); pruning reads B in blocks of rows. H is capped at max_dense (default 20,000: 1.6 GB
a matrix, about a minute of LAPACK on two cores), so at ml-32m scale (87k movies) the solve is
restricted to the 20,000 most rated movies (> 97% of ratings there); the rest of the catalogue
gets no neighbours (scores 0 from this stage, so a caller blends another signal to rank them).
The served model is 8 N bytes a movie (int32 index + float32 weight): 87k movies at N = 100 is
70 MB; ml-latest-small (9.7k) at N = 100 is 7.8 MB. Serving cost per user is O(L N) gathers
plus one pass over M for the top k.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg
import scipy.sparse as sp

DEFAULT_MAX_DENSE = 12_000
PRUNE_BLOCK = 1024  # rows of B pruned at a time


@dataclasses.dataclass(frozen=True)
class NeighbourLists:
    """Each movie's N strongest item-item weights: what the served model holds."""

    neighbours: np.ndarray  # int32 [M, N] movie indices, padded with 0
    weights: np.ndarray  # float32 [M, N], 0 where padded

    @property
    def num_movies(self) -> int:
        return self.neighbours.shape[0]

    @property
    def nbytes(self) -> int:
        return self.neighbours.nbytes + self.weights.nbytes

    def to_csr(self) -> sp.csr_matrix:
        """The pruned B as a sparse float32 [M, M] matrix (padding entries dropped)."""
        m, n = self.neighbours.shape
        rows = np.repeat(np.arange(m), n)
        keep = self.weights.reshape(-1) != 0
        return sp.csr_matrix((self.weights.reshape(-1)[keep],
                              (rows[keep], self.neighbours.reshape(-1)[keep])), shape=(m, m))


def head_movies(counts: np.ndarray, min_count: int = 1,
                max_dense: int = DEFAULT_MAX_DENSE) -> np.ndarray:
    """Indices [H] (sorted) of the movies the dense solve covers: those with >= min_count
    ratings, the max_dense most rated of them (ties: the lower index)."""
    eligible = np.flatnonzero(counts >= max(min_count, 1))
    if len(eligible) > max_dense:
        order = np.lexsort((eligible, -counts[eligible]))  # most rated first, then index
        eligible = np.sort(eligible[order[:max_dense]])
    return eligible


def gram(x: sp.spmatrix, head: np.ndarray) -> np.ndarray:
    """X_head' X_head as a dense float32 [H, H] (X binary [U, M])."""
    xh = sp.csc_matrix(x, dtype=np.float32)[:, head]
    return (xh.T @ xh).toarray().astype(np.float32, copy=False)


def solve(g: np.ndarray, l2: float, dropout: float = 0.0) -> np.ndarray:
    """EDLAE's B [H, H] float32 from G [H, H] (G is overwritten): P = (G + diag(Lambda))^-1,
    Lambda = l2 + dropout / (1 - dropout) * diag(G), B = I - P / diag(P), zero diagonal.
    dropout = 0 is EASE."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if l2 <= 0:
        raise ValueError(f"l2 must be > 0, got {l2}")
    h = g.shape[0]
    if h == 0:
        return np.zeros((0, 0), np.float32)
    g = np.asarray(g, np.float32)
    diag = np.arange(h)
    g[diag, diag] += np.float32(l2) + np.float32(dropout / (1.0 - dropout)) * g[diag, diag]
    # Fortran order: LAPACK works in place on the (symmetric) matrix without a copy.
    factor, info = scipy.linalg.lapack.spotrf(g.T, lower=0, overwrite_a=1, clean=0)
    if info:
        raise np.linalg.LinAlgError(f"potrf failed: info {info}")
    p, info = scipy.linalg.lapack.spotri(factor, lower=0, overwrite_c=1)
    if info:
        raise np.linalg.LinAlgError(f"potri failed: info {info}")
    # potri leaves P in the upper triangle of its Fortran-ordered result, i.e. the lower
    # triangle of the C-ordered transpose; mirror it in blocks (no index arrays of H^2).
    p = p.T
    for start in range(0, h, PRUNE_BLOCK):
        stop = min(start + PRUNE_BLOCK, h)
        p[start:stop, stop:] = p[stop:, start:stop].T
        block = p[start:stop, start:stop]
        block[...] = np.tril(block) + np.tril(block, -1).T
    p /= -np.diag(p)[None, :]
    p[diag, diag] = 0.0
    return p


def prune(b: np.ndarray, head: np.ndarray, num_movies: int, n: int) -> NeighbourLists:
    """Each row of B [H, H] cut to its n entries largest in magnitude, best (by |B|) first,
    as NeighbourLists over the whole catalogue [num_movies, n] (rows and columns mapped from
    head positions to movie indices; movies outside the head: padding)."""
    h = b.shape[0]
    n_kept = min(n, max(h - 1, 0))
    neighbours = np.zeros((num_movies, n), np.int32)
    weights = np.zeros((num_movies, n), np.float32)
    for start in range(0, h, PRUNE_BLOCK):
        block = np.abs(b[start:start + PRUNE_BLOCK])
        rows = np.arange(start, start + len(block))
        block[rows - start, rows] = -1.0  # never the movie itself
        if n_kept < h:
            top = np.argpartition(-block, n_kept - 1, axis=1)[:, :n_kept] if n_kept else \
                np.zeros((len(block), 0), np.int64)
        else:
            top = np.tile(np.arange(h), (len(block), 1))
        order = np.argsort(-np.take_along_axis(block, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)[:, :n_kept]
        values = np.take_along_axis(b[start:start + PRUNE_BLOCK], top, axis=1)
        neighbours[head[rows], :n_kept] = head[top]
        weights[head[rows], :n_kept] = values
    return NeighbourLists(neighbours, weights)


def fit(x: sp.spmatrix, l2: float, dropout: float = 0.0, n: int = 100, min_count: int = 1,
        max_dense: int = DEFAULT_MAX_DENSE) -> NeighbourLists:
    """The pruned EDLAE of binary interactions X [U, M]: NeighbourLists [M, n]."""
    x = sp.csr_matrix(x)
    counts = np.asarray((x != 0).sum(axis=0)).reshape(-1)
    head = head_movies(counts, min_count, max_dense)
    b = solve(gram(x != 0, head), l2, dropout)
    return prune(b, head, x.shape[1], n)


def dense_fit(x: sp.spmatrix, l2: float, dropout: float = 0.0) -> np.ndarray:
    """Unpruned B [M, M] over every movie (EASE when dropout = 0): the dense peer, for small
    catalogues only."""
    x = sp.csr_matrix(x)
    return solve(gram(x != 0, np.arange(x.shape[1])), l2, dropout)


def score_numpy(model: NeighbourLists, histories: sp.spmatrix) -> np.ndarray:
    """Scores [U, M] float32 of users' binary histories [U, M] (sparse)."""
    x = sp.csr_matrix(histories, dtype=np.float32)
    x.data[:] = 1.0
    return np.asarray((x @ model.to_csr()).todense(), np.float32)


def scores_tf(neighbours, weights, history):
    """TensorFlow scoring: neighbours int32 [M, N], weights float32 [M, N] (NeighbourLists as
    tensors), history int32/int64 [B, L] movie indices padded with -1 -> scores float32 [B, M].
    A gather of each history movie's neighbour lists and one unsorted_segment_sum into B * M
    segments; padded entries (history -1, weight 0) add nothing."""
    import tensorflow as tf

    history = tf.cast(history, tf.int32)
    num_movies = tf.shape(neighbours)[0]
    batch = tf.shape(history)[0]
    valid = history >= 0
    safe = tf.where(valid, history, tf.zeros_like(history))
    targets = tf.gather(neighbours, safe)  # [B, L, N]
    values = tf.gather(weights, safe) * tf.cast(valid, weights.dtype)[:, :, None]
    rows = tf.range(batch)[:, None, None] * num_movies
    segments = tf.reshape(rows + targets, [-1])
    summed = tf.math.unsorted_segment_sum(tf.reshape(values, [-1]), segments,
                                          batch * num_movies)
    return tf.reshape(summed, [batch, num_movies])
