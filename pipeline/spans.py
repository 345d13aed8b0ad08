"""Cuts a MovieLens folder into time-ordered spans, to replay the arrival of new ratings.

    python -m pipeline.spans SRC_DIR DEST_DIR --spans 4     # or: make spans SPANS=4 ...

DEST_DIR gets SRC_DIR's movies.csv and `span-1/ratings.csv` ... `span-N/ratings.csv`: span i
holds the ratings whose timestamps fall in the i-th of N ranges with (about) equal numbers of
ratings, oldest first; ratings sharing a timestamp stay in one span. Each span file keeps the
header and the source's lines byte for byte (CRLF included), in the source's order. This is the
layout the pipeline reads with TFX's `{SPAN}` input pattern (SPAN_PATTERN); a run ingests the
newest span (README, "New ratings every week"). Only the header and the timestamp field are read
here: the ExampleGen checks every line when it ingests the span.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from components.movielens_example_gen.config import (
    MOVIES_FILE,
    RATINGS_FILE,
    SPAN_DIR,
    SPAN_PATTERN,
)


class SpanError(ValueError):
    """The source folder cannot be cut as asked."""


def span_dir(root: Path, span: int) -> Path:
    return root / SPAN_DIR.replace("{SPAN}", str(span))


def has_spans(folder: Path) -> bool:
    """Whether `folder` is laid out in spans (span-1/ratings.csv ...) rather than flat."""
    return any(folder.glob(SPAN_PATTERN.replace("{SPAN}", "*")))


def _timestamps(lines: list[bytes], path: Path) -> np.ndarray:
    """The last field of every data line as int64; names the line of the first bad one."""
    out = np.empty(len(lines), np.int64)
    for i, line in enumerate(lines):
        try:
            out[i] = int(line.rstrip(b"\r\n").rsplit(b",", 1)[1])
        except (IndexError, ValueError):
            raise SpanError(f"{path} line {i + 2}: no integer timestamp in the last field: "
                            f"{line[:80]!r}") from None
    return out


def span_of_lines(timestamps: np.ndarray, spans: int) -> np.ndarray:
    """Span number (1..spans) of each rating: cut at the timestamps of the i/spans quantiles of
    the sorted times, so that equal timestamps share a span. Raises SpanError when a span would
    be empty."""
    if spans < 1:
        raise SpanError(f"--spans must be >= 1, got {spans}")
    ordered = np.sort(timestamps)
    cuts = ordered[[len(ordered) * i // spans for i in range(1, spans)]]
    span = np.searchsorted(cuts, timestamps, side="right") + 1
    counts = np.bincount(span, minlength=spans + 1)[1:]
    if (counts == 0).any():
        raise SpanError(f"{len(timestamps)} ratings with {len(np.unique(timestamps))} distinct "
                        f"timestamps cannot fill {spans} spans (span sizes {counts.tolist()})")
    return span


def cut(src: Path, dest: Path, spans: int) -> list[int]:
    """Writes DEST's spans from SRC (see the module docstring); returns each span's size."""
    for name in (RATINGS_FILE, MOVIES_FILE):
        if not (src / name).is_file():
            raise SpanError(f"{src} is not a MovieLens folder: no {name}")
    header, *lines = (src / RATINGS_FILE).read_bytes().splitlines(keepends=True)
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise SpanError(f"{src / RATINGS_FILE} has no ratings")
    span = span_of_lines(_timestamps(lines, src / RATINGS_FILE), spans)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / MOVIES_FILE, dest / MOVIES_FILE)
    sizes = []
    for number in range(1, spans + 1):
        folder = span_dir(dest, number)
        folder.mkdir(exist_ok=True)
        chosen = [line for line, s in zip(lines, span, strict=True) if s == number]
        (folder / RATINGS_FILE).write_bytes(header + b"".join(chosen))
        sizes.append(len(chosen))
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="a MovieLens folder (ratings.csv, movies.csv)")
    parser.add_argument("dest", type=Path, help="where the spans go (created)")
    parser.add_argument("--spans", type=int, default=4, help="number of spans (default 4)")
    args = parser.parse_args(argv)
    try:
        sizes = cut(args.src, args.dest, args.spans)
    except SpanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for number, size in enumerate(sizes, start=1):
        print(f"{span_dir(args.dest, number)}/{RATINGS_FILE}: {size} ratings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
