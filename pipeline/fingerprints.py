"""Fingerprints of the project's code: what tells two runs' code apart without TensorFlow.

TFX cache keys cover a component's inputs and parameters but not the code behind a dotted-name
function: `models_fingerprint` (the models package: preprocessing_fn, run_fn) goes into Transform's
and the Trainers' custom_config, so an edited model reruns them. `source_fingerprint` covers all the
code and the schema a run executes; the runner compares it with earlier runs' records to tell an
unchanged rerun (pipeline/run_record.py). Both import nothing heavy: the runner answers "nothing
changed" before TensorFlow's start-up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a pipeline run executes: the packages of the pipeline, its components and models, and the
# curated schema. Not bench/, serving/, kubeflow/, tests/ or the docs.
SOURCE_PATTERNS = ("models/*.py", "components/**/*.py", "pipeline/*.py", "schema/*.pbtxt")


def _digest(root: Path, paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def models_fingerprint() -> str:
    """The models package's source files (named relative to the package, as they always were: the
    same code keeps its cache keys)."""
    return _digest(REPO_ROOT / "models", (REPO_ROOT / "models").glob("*.py"))


def source_fingerprint(root: Path = REPO_ROOT) -> str:
    """Every file of SOURCE_PATTERNS under root."""
    return _digest(root, (p for pattern in SOURCE_PATTERNS for p in root.glob(pattern)
                          if p.is_file()))
