"""SpanDrift: the newest span's ratings against the span before, with TFDV's drift comparators;
the run stops before Transform when a distance passes its threshold.

For a data folder in spans (pipeline/spans.py), the ExampleGen's artifact carries the newest
span's number. This component reads that span's and the previous span's ratings.csv (and
movies.csv for each rating's genres and year), computes TFDV statistics of each, and measures,
with `tfdv.validate_statistics(current, schema, previous_statistics=previous)`: the
Jensen-Shannon divergence of the rating and release-year histograms and the L-infinity distance
of the genre, user and movie distributions (TFX 1.16's ExampleValidator compares no spans).
Every distance goes into `drift.json` in its output artifact (the run summary prints them).
Beyond a threshold (`thresholds`, pipeline/configs.py DRIFT_THRESHOLDS) the component fails with
one line per drifted feature, unless `accept_drift` is 1 (`make run RUN_ARGS=--accept-drift`).
A flat folder, or the first span, has nothing to compare: drift.json says so.
"""

import io
import json
import logging
import os

import numpy as np
import pandas as pd
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.movielens_example_gen import parsing
from components.movielens_example_gen.config import MOVIES_FILE, RATINGS_FILE, SPAN_DIR

_LOG = logging.getLogger(__name__)
DRIFT_FILE = "drift.json"
JENSEN_SHANNON = "Jensen-Shannon divergence"
L_INFINITY = "L-infinity distance"
# Feature -> how it is compared: histograms of numbers, distributions of categories.
MEASURES = {"rating": JENSEN_SHANNON, "year": JENSEN_SHANNON, "genre": L_INFINITY,
            "user_id": L_INFINITY, "movie_id": L_INFINITY}


class SpanDriftError(RuntimeError):
    """The newest span's data drifted from the previous span's beyond a threshold."""


def span_ratings(data_root: str, span: int) -> str:
    return os.path.join(data_root, SPAN_DIR.replace("{SPAN}", str(span)), RATINGS_FILE)


def frames(ratings_path: str, movies: dict[int, parsing.Movie]
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per rating: rating, year, user_id, movie_id; one row per (rating, genre)) of a
    ratings.csv; rows the ExampleGen would reject are dropped here too."""
    with tf.io.gfile.GFile(ratings_path, "rb") as f:  # local, gs:// or s3://
        raw = pd.read_csv(io.BytesIO(f.read()), on_bad_lines="skip")
    for column in ("userId", "movieId", "rating"):
        raw[column] = pd.to_numeric(raw[column], errors="coerce")
    raw = raw.dropna(subset=["userId", "movieId", "rating"])
    raw = raw[raw.movieId.isin(movies)]
    ids = raw.movieId.astype(int)
    rows = pd.DataFrame({
        "rating": raw.rating.astype(float).to_numpy(),
        "year": np.array([movies[m].year or np.nan for m in ids], float),
        "user_id": raw.userId.astype(int).astype(str).to_numpy(),
        "movie_id": ids.astype(str).to_numpy()})
    genres = pd.DataFrame({"genre": [g for m in ids for g in movies[m].genres]})
    return rows, genres


def distances(current: pd.DataFrame, previous: pd.DataFrame) -> dict[str, float]:
    """TFDV's drift distance of every column of MEASURES in both frames, current vs previous."""
    import tensorflow_data_validation as tfdv

    now, before = (tfdv.generate_statistics_from_dataframe(f) for f in (current, previous))
    schema = tfdv.infer_schema(before)
    for feature in schema.feature:
        comparator = feature.drift_comparator
        # A threshold below any distance: TFDV then reports every feature's measurement.
        if MEASURES[feature.name] == JENSEN_SHANNON:
            comparator.jensen_shannon_divergence.threshold = 1e-9
        else:
            comparator.infinity_norm.threshold = 1e-9
    anomalies = tfdv.validate_statistics(now, schema, previous_statistics=before)
    return {info.path.step[0]: float(max(m.value for m in info.drift_measurements))
            for info in anomalies.drift_skew_info if info.drift_measurements}


def measure(data_root: str, span: int, thresholds: dict[str, float]) -> dict:
    """drift.json's content for span vs span - 1."""
    movies, _ = parsing.read_movies_file(os.path.join(data_root, MOVIES_FILE))
    current, previous = (frames(span_ratings(data_root, s), movies) for s in (span, span - 1))
    found = {**distances(current[0], previous[0]), **distances(current[1], previous[1])}
    return {"span": span, "previous_span": span - 1, "features": {
        name: {"measure": MEASURES[name], "distance": found.get(name, 0.0),
               "threshold": thresholds[name],
               "drifted": found.get(name, 0.0) > thresholds[name]}
        for name in MEASURES if name in thresholds}}


def drift_lines(report: dict) -> list[str]:
    """One line per drifted feature, e.g. "feature 'rating': Jensen-Shannon divergence 0.339
    from span 1 to span 2, above the threshold 0.05"."""
    return [f"feature '{name}': {f['measure']} {f['distance']:.3f} from span "
            f"{report['previous_span']} to span {report['span']}, above the threshold "
            f"{f['threshold']:g}" for name, f in report["features"].items() if f["drifted"]]


@component
def SpanDrift(  # noqa: N802 - TFX component names are classes
    examples: InputArtifact[standard_artifacts.Examples],
    drift: OutputArtifact[standard_artifacts.ExampleAnomalies],
    data_root: Parameter[str],
    thresholds: Parameter[str],
    accept_drift: Parameter[int] = 0,
) -> None:
    """Writes drift.json (module docstring); raises SpanDriftError on drift unless accepted."""
    # FileBasedDriver records the resolved span as a custom property of the Examples.
    span = (examples.get_int_custom_property("span") if examples.has_custom_property("span")
            else int(examples.span or 0))
    limits = json.loads(thresholds)
    if span < 2 or not tf.io.gfile.exists(span_ratings(data_root, span - 1)):
        report = {"span": span, "previous_span": None, "features": {},
                  "note": "nothing to compare: a flat folder or the first span"}
    else:
        report = measure(data_root, span, limits)
    report["accepted"] = bool(accept_drift)
    with tf.io.gfile.GFile(os.path.join(drift.uri, DRIFT_FILE), "w") as f:
        f.write(json.dumps(report, indent=2) + "\n")
    lines = drift_lines(report)
    if lines and not accept_drift:
        raise SpanDriftError(
            "The newest span's data drifted from the previous span's:\n  "
            + "\n  ".join(lines) + "\nIf the change is real (e.g. a new rating scale), rerun "
            "with --accept-drift (make run RUN_ARGS=--accept-drift); the thresholds are "
            "pipeline/configs.py's DRIFT_THRESHOLDS.")
    for line in lines:
        _LOG.warning("Drift accepted: %s", line)
