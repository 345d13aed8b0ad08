"""New ratings every week, end to end: a generated MovieLens folder cut into three spans arrives
one span at a time; each run reads the newest window of spans through TFX's {SPAN} pattern, and
each blessed model passes the ServingCheck and is pushed as a new version; the second and third
warm-start from the serving model. Three pipeline runs: behind the slow marker
(`make test-all`)."""

import shutil

import pytest
from movielens_fixture import write_movielens_fixture
from pipelines import local_pipeline, serving_model_dir
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from pipeline import run_summary, spans

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_three_spans_arriving_push_three_versions(tmp_path):
    # Big enough that a span alone beats the most-rated list: ~1,500 ratings a span did not.
    source = write_movielens_fixture(tmp_path / "flat", n_users=200, n_movies=120,
                                     ratings_per_user=(40, 80))
    cut = tmp_path / "cut"
    spans.cut(source, cut, 3)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(cut / "movies.csv", data / "movies.csv")
    root = tmp_path / "run"
    versions = []
    for span in (1, 2, 3):
        shutil.copytree(spans.span_dir(cut, span), spans.span_dir(data, span))
        LocalDagRunner().run(local_pipeline(data, root, span_window=2))
        summary = run_summary.summarize_latest_run(str(root / "metadata.sqlite"))
        assert summary.blessed, summary.failures
        assert summary.served, summary.serving_check
        # Each span after the first is compared with the one before it.
        assert (summary.drift.get("span"), bool(summary.drift.get("features"))) == (
            span, span > 1), summary.drift
        versions = sorted(p.name for p in serving_model_dir(root).iterdir() if p.name.isdigit())
        assert len(versions) == span, (span, versions)
        # The first span's model trains from scratch (nothing serves yet); the next ones start
        # from the serving model, their users and movies matched by id.
        start = summary.training_choices["warm_start"]
        assert (start is not None and bool(start["kept"])) == (span > 1), start
        if span > 1:
            kept_users, users = start["kept"]["users"]
            assert 0 < kept_users <= users, start
