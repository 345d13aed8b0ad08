"""Activity buckets: a count of training ratings -> a slice label such as "1-19" or "101+"."""

from __future__ import annotations

import bisect
from collections.abc import Sequence


def check_edges(edges: Sequence[int], field: str) -> tuple[int, ...]:
    """Bucket edges: the lower bounds of every bucket but the first, which starts at 0."""
    edges = tuple(edges)
    if not edges or any(not isinstance(e, int) or e < 1 for e in edges) or \
            list(edges) != sorted(set(edges)):
        raise ValueError(f"{field} must be strictly increasing positive integers, got {edges}")
    return edges


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """Labels of the buckets [0, e0), [e0, e1), ..., [e_last, inf), in order."""
    bounds = [0, *edges]
    labels = [str(lo) if hi - lo == 1 else f"{lo}-{hi - 1}"
              for lo, hi in zip(bounds, bounds[1:], strict=False)]
    return labels + [f"{bounds[-1]}+"]


def bucket_label(count: int, edges: Sequence[int]) -> str:
    """The label of the bucket `count` falls into."""
    return bucket_labels(edges)[bisect.bisect_right(edges, count)]
