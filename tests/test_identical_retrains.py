"""An identical retrain is blessed every time: the whole pipeline on a generated MovieLens folder,
rerun with TFX's cache off (`--no-cache`) IDENTICAL_RETRAINS times (10 unless the environment
says otherwise) after a first run. Each rerun trains the same model again (models/trainer.py,
seed_everything), so every change against the blessed model is exactly 0 and every rule holds,
and the Pusher pushes it once.
Marked slow: a few minutes per run. The decision itself, with retrains that noise tells apart,
is tested fast in tests/test_gate_evidence.py.
"""

import os

import pytest
from movielens_fixture import write_movielens_fixture
from pipelines import local_pipeline, serving_model_dir
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from components.evaluation import results, topk
from pipeline import run_summary

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
RETRAINS = int(os.environ.get("IDENTICAL_RETRAINS", "10"))


def test_identical_retrains_are_blessed_every_time(tmp_path):
    data_dir = write_movielens_fixture(tmp_path / "data", n_users=100, ratings_per_user=(25, 50))
    blessed = []
    for _ in range(RETRAINS + 1):
        LocalDagRunner().run(local_pipeline(data_dir, tmp_path, enable_cache=False))
        summary = run_summary.summarize_latest_run(str(tmp_path / "metadata.sqlite"))
        blessed.append(summary.blessed)
        assert summary.failures == []
        if len(blessed) > 1:  # compared with the previous run's blessed model: the same model
            overall = summary.metrics["overall"]
            assert overall[results.RMSE] == pytest.approx(overall["blessed_rmse"], rel=1e-9)
            interval = summary.top_k.intervals[results.LATEST_BLESSED]
            assert (interval.change, interval.lower, interval.upper) == (0.0, 0.0, 0.0)
            assert summary.top_k.value(results.CANDIDATE, topk.OVERALL, results.NDCG) == \
                summary.top_k.value(results.LATEST_BLESSED, topk.OVERALL, results.NDCG)
    assert blessed == [True] * (RETRAINS + 1)
    # The same model every time: pushed once, then recognised as the version served
    # (models/identity.py), though each retrain's saved_model.pb has other bytes.
    versions = [p for p in serving_model_dir(tmp_path).iterdir() if p.name.isdigit()]
    assert len(versions) == 1, versions
