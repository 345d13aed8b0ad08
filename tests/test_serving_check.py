"""components/serving_check.py: a pushed model loads in a development server started in its own
process and answers a canary on every signature; a corrupted copy is refused with the reason."""

import shutil

import pytest

from components import serving_check

pytestmark = pytest.mark.e2e


def newest_version(base_path):
    return max((p for p in base_path.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def test_a_served_model_passes_the_canary_on_every_signature(pushed_model, tmp_path):
    base_path, _, _ = pushed_model
    seconds = serving_check.check_model(str(newest_version(base_path)), str(tmp_path), 180)
    assert set(seconds) == {"load", "recommend", "predict_ids", "serving_default"}
    assert not (tmp_path / "staging").exists()


def test_a_corrupted_model_is_refused_with_the_servers_reason(pushed_model, tmp_path):
    base_path, _, _ = pushed_model
    broken = tmp_path / "broken"
    shutil.copytree(newest_version(base_path), broken)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    with pytest.raises(serving_check.CanaryError, match="did not load|not available|exited"):
        serving_check.check_model(str(broken), str(tmp_path), 60)
    assert (tmp_path / serving_check.SERVER_LOG).stat().st_size > 0
