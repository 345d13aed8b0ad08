"""components/span_drift.py: TFDV's drift distances between consecutive spans, and the stop."""

import json

import pytest
from movielens_fixture import write_movielens_fixture

from components import span_drift
from pipeline import configs, spans


@pytest.fixture(scope="module")
def spans_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    source = write_movielens_fixture(root / "flat", n_users=80, ratings_per_user=(30, 50))
    spans.cut(source, root / "spans", 3)
    return root / "spans"


def test_consecutive_spans_of_one_data_set_do_not_drift(spans_dir):
    report = span_drift.measure(str(spans_dir), 3, configs.DRIFT_THRESHOLDS)
    assert set(report["features"]) == set(span_drift.MEASURES)
    assert span_drift.drift_lines(report) == [], report
    assert all(f["distance"] >= 0 for f in report["features"].values())


def test_shifted_ratings_drift_with_one_line_naming_the_feature(spans_dir, tmp_path):
    shifted = tmp_path / "shifted"
    spans.cut(spans_dir.parent / "flat", shifted, 3)
    path = shifted / "span-3" / "ratings.csv"
    header, *rows = path.read_text().splitlines()
    moved = []
    for row in rows:  # everyone suddenly rates 1.5 stars higher (at most 5)
        user, movie, rating, ts = row.split(",")
        moved.append(f"{user},{movie},{min(float(rating) + 1.5, 5.0)},{ts}")
    path.write_text("\n".join([header, *moved]) + "\n")
    report = span_drift.measure(str(shifted), 3, configs.DRIFT_THRESHOLDS)
    lines = span_drift.drift_lines(report)
    assert len(lines) == 1 and lines[0].startswith("feature 'rating': Jensen-Shannon divergence")
    assert "from span 2 to span 3, above the threshold 0.05" in lines[0]
    json.dumps(report)  # what drift.json holds
