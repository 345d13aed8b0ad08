"""A sparse item-item ranking stage: EDLAE (EASE with a dropout-style diagonal regulariser) solved
in closed form on the most rated movies, then pruned to each movie's N strongest neighbours.

Shapes (M movies of the model's vocabulary, U users, H <= max_dense head movies, N neighbours):

  X          float [U, M] sparse CSR, 1 where the user rated the movie (binary interactions)
  head       int64 [H]       the movies with >= min_count ratings, at most max_dense of the most
                             rated (ties: the lower index); the dense solve only sees these
  G          float32 [H, H]  X_head' X_head, the co-occurrence (Gram) matrix
  S          float32 [M, F]  side features of each movie (sparse multi-hot: genres, genre
                             combination, release-year buckets, rarer title words); with
                             side weight w > 0, G += w S_head S_head': each feature acts as
                             w pseudo-users who rated every movie having it (Jeunen et al.
                             2020's collective EASE), which links movies that share features
                             but few raters
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
P, then B); pruning reads B in blocks of rows. H is capped at max_dense (DEFAULT_MAX_DENSE,
12,000: 576 MB a matrix, well under a minute of LAPACK on two cores), so at ml-32m scale (87k
movies) the solve is restricted to the 12,000 most rated movies; the rest of the movies
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
# Served scores add TIE_BREAK * the movie's log popularity (scaled to [0, 1]): it only orders
# movies that score alike, e.g. every movie for a new user, whose history is empty.
TIE_BREAK = 1e-5
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


def gram(x: sp.spmatrix, head: np.ndarray, user_weight: float = 0.0) -> np.ndarray:
    """X_head' W X_head as a dense float32 [H, H] (X binary [U, M]), W = diag(|h_u|^-user_weight):
    with user_weight > 0 a user with a long history counts less in each co-occurrence (0: the
    plain Gram matrix)."""
    x = sp.csr_matrix(x, dtype=np.float32)
    if user_weight:
        lengths = np.maximum(np.asarray(x.sum(axis=1)).reshape(-1), 1.0)
        x = sp.diags((lengths ** (-user_weight / 2.0)).astype(np.float32)) @ x
    xh = sp.csc_matrix(x)[:, head]
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
    as NeighbourLists over all movies [num_movies, n] (rows and columns mapped from
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


def low_rank(r: np.ndarray, rank: int, seed: int, power_iterations: int = 4
             ) -> tuple[np.ndarray, np.ndarray]:
    """(L [H, rank], R [H, rank]) float32 with L R' the best rank-`rank` approximation of r
    [H, H], by a seeded randomized SVD (Halko et al. 2011, `power_iterations` power steps); the
    singular values are in L."""
    h = r.shape[0]
    rank = min(rank, h)
    if rank == 0:
        return np.zeros((h, 0), np.float32), np.zeros((h, 0), np.float32)
    omega = np.random.default_rng(seed).standard_normal((h, min(rank + 10, h)))
    y = r @ omega.astype(np.float32)
    for _ in range(power_iterations):
        q, _ = np.linalg.qr(y)
        y = r @ (r.T @ q)
    q, _ = np.linalg.qr(y)
    u, sigma, vt = np.linalg.svd(q.T @ r, full_matrices=False)
    left = (q @ u[:, :rank]) * sigma[:rank]
    return left.astype(np.float32), vt[:rank].T.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class SparseLowRank:
    """EDLAE's B as each movie's N strongest weights plus a rank-r approximation of the rest:
    the score of movie j for a user with history h is
    (sum over i in h of S[i, j] + (sum over i in h of history_factors[i]) . movie_factors[j])
    * popularity scale of j, the scale folded into the weights and movie_factors. Pruning alone
    lost 1-2 NDCG@10 points at N = 200-1000 on ml-latest-small (B's small entries add up); the
    low-rank part brings back nearly all of it (docs/benchmarks.md, "Ranking")."""

    lists: NeighbourLists  # [M, N]
    history_factors: np.ndarray  # float32 [M, r]
    movie_factors: np.ndarray  # float32 [M, r]

    @property
    def nbytes(self) -> int:
        return self.lists.nbytes + self.history_factors.nbytes + self.movie_factors.nbytes

    def scores(self, histories: sp.spmatrix) -> np.ndarray:
        """Scores [U, M] float32 of users' binary histories [U, M] (sparse)."""
        x = sp.csr_matrix(histories, dtype=np.float32)
        x.data[:] = 1.0
        return score_numpy(self.lists, x) + (x @ self.history_factors) @ self.movie_factors.T


def popularity_scale(counts: np.ndarray, exponent: float) -> np.ndarray:
    """float32 [M]: (1 + ratings of the movie)^exponent, what each movie's score is multiplied
    by (exponent < 0 favours the less rated)."""
    return ((np.asarray(counts, np.float64) + 1.0) ** exponent).astype(np.float32)


def add_side(g: np.ndarray, side_head: sp.spmatrix, weight: float) -> None:
    """G [H, H] += weight * S_head S_head' in place (S_head [H, F] sparse, the head movies'
    side features), a block of rows at a time: no second [H, H] matrix."""
    side_head = sp.csr_matrix(side_head, dtype=np.float32)
    transposed = sp.csc_matrix(side_head.T)
    for start in range(0, g.shape[0], PRUNE_BLOCK):
        stop = min(start + PRUNE_BLOCK, g.shape[0])
        g[start:stop] += np.float32(weight) * (side_head[start:stop] @ transposed).toarray()


def weighted_gram(x: sp.spmatrix, head: np.ndarray, user_weight: float
                  ) -> tuple[np.ndarray, float]:
    """(G [H, H] = `gram` of the head movies, shrink): shrink is how much the user weighting
    shrank G's diagonal (mean diagonal / mean plain count of the head movies; 1 unweighted),
    by which the l2 and side weight of `solve_weighted` are rescaled so that their grids mean
    the same with and without it. One G serves every l2 and side weight at this user weight."""
    g = gram(x, head, user_weight)
    plain = float(np.asarray((x != 0).sum(axis=0)).reshape(-1)[head].mean()) if len(head) else 1.0
    shrink = float(np.mean(np.diag(g))) / plain if len(head) and plain else 1.0
    return g, shrink


def solve_weighted(g: np.ndarray, shrink: float, head: np.ndarray, l2: float, dropout: float,
                   side: sp.spmatrix | None = None, side_weight: float = 0.0) -> np.ndarray:
    """B [H, H] of a `weighted_gram` (G is overwritten) plus side_weight S_head S_head' of the
    side features S [M, F] (sparse), l2 and the side weight times the shrink."""
    if side_weight and side is not None and len(head):
        add_side(g, sp.csr_matrix(side)[head], side_weight * shrink)
    return solve(g, l2 * shrink, dropout)


def regularised_solve(x: sp.spmatrix, head: np.ndarray, l2: float, dropout: float,
                      user_weight: float, side: sp.spmatrix | None = None,
                      side_weight: float = 0.0) -> np.ndarray:
    """B [H, H] of the head movies from binary X [U, M] and side features S [M, F] (sparse):
    `solve_weighted` of the user-weighted Gram matrix (`weighted_gram`)."""
    return solve_weighted(*weighted_gram(x, head, user_weight), head, l2, dropout, side,
                          side_weight)


def sparse_low_rank(b: np.ndarray, head: np.ndarray, scale: np.ndarray, n: int, rank: int,
                    seed: int) -> SparseLowRank:
    """SparseLowRank over M = len(scale) movies from B [H, H] of the head movies (B is
    overwritten by the residual), with the popularity scale [M] folded in."""
    m = len(scale)
    lists = prune(b, head, m, n)
    position = np.full(m, -1, np.int64)
    position[head] = np.arange(len(head))
    kept = lists.weights[head] != 0
    rows = np.broadcast_to(np.arange(len(head))[:, None], kept.shape)[kept]
    b[rows, position[lists.neighbours[head][kept]]] -= lists.weights[head][kept]
    left, right = low_rank(b, rank, seed)
    history_factors = np.zeros((m, left.shape[1]), np.float32)
    movie_factors = np.zeros((m, left.shape[1]), np.float32)
    history_factors[head] = left
    movie_factors[head] = right * scale[head, None]
    weights = lists.weights * scale[lists.neighbours]
    return SparseLowRank(NeighbourLists(lists.neighbours, weights), history_factors,
                         movie_factors)


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


def scores_tf(neighbours, weights, history, num_columns=None, history_factors=None,
              movie_factors=None):
    """TensorFlow scoring: neighbours int32 [M, N] (column indices), weights float32 [M, N]
    (NeighbourLists as tensors), history int32/int64 [B, L] movie indices padded with -1 ->
    scores float32 [B, C], C = num_columns (default M). A gather of each history movie's
    neighbour lists and one unsorted_segment_sum into B * C segments; padded entries (history
    -1, weight 0) add nothing. With history_factors [M, r] and movie_factors [C, r]
    (SparseLowRank's), plus the low-rank part: the sum of the history's factors times
    movie_factors'."""
    import tensorflow as tf

    history = tf.cast(history, tf.int32)
    columns = tf.shape(neighbours)[0] if num_columns is None else num_columns
    batch = tf.shape(history)[0]
    valid = history >= 0
    safe = tf.where(valid, history, tf.zeros_like(history))
    targets = tf.gather(neighbours, safe)  # [B, L, N]
    mask = tf.cast(valid, weights.dtype)[:, :, None]
    values = tf.gather(weights, safe) * mask
    rows = tf.range(batch)[:, None, None] * columns
    segments = tf.reshape(rows + targets, [-1])
    summed = tf.math.unsorted_segment_sum(tf.reshape(values, [-1]), segments, batch * columns)
    scores = tf.reshape(summed, [batch, columns])
    if history_factors is None:
        return scores
    query = tf.reduce_sum(tf.gather(history_factors, safe) * mask, axis=1)  # [B, r]
    return scores + tf.matmul(query, movie_factors, transpose_b=True)
