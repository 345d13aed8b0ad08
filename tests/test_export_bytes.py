"""The same model exported by two processes (two pipeline runs) gives the same bytes in every
file, so that the Pusher sees an identical retrain as the version already served
(components/atomic_pusher.py, tree_digest) instead of pushing a new version of the same model.
Within one process the second export's functions get other names, so each export runs in its
own process, as the Trainer does."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.atomic_pusher import tree_digest

pytestmark = pytest.mark.e2e

EXPORT = """
import sys
sys.path.insert(0, {tests!r})
import models  # Keras 2 before TensorFlow
from test_export import HISTORY, USERS, bias_model, catalogue
from models import export
export.export_serving_model(
    export.ServingModule(bias_model(), USERS, 4, catalogue(), HISTORY), sys.argv[1])
"""


def test_two_exports_of_one_model_are_byte_identical(tmp_path):
    code = EXPORT.format(tests=str(Path(__file__).parent))
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    runs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / name)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for name in ("first", "second")]
    for run in runs:
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0, output.decode(errors="replace")[-2000:]
    first, second = tmp_path / "first", tmp_path / "second"
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert {"saved_model.pb", "fingerprint.pb"} <= {str(f) for f in files}
    assert any("warmup" in str(f) for f in files)
    for path in files:
        assert (first / path).read_bytes() == (second / path).read_bytes(), path
    assert tree_digest(str(first)) == tree_digest(str(second))
