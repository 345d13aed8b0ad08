"""What a run ran on, as JSON beside its outputs: `<pipeline root>/runs/<start time>.json`.

Written when the run starts (status "running") and rewritten when it ends, so an interrupted or
failed run leaves one too; "running" with a PID that is gone means the run was killed. Enough to
tell two runs apart and to rerun one: the data's checksums, the package versions, the git commit
(and whether the checkout had uncommitted changes), the configuration, Python and the platform.

A run's inputs digest covers what decides its outcome: data, code (pipeline/fingerprints.py),
configuration and packages. `find_unchanged` finds the earlier run with the same digest whose
pushed version is still the one served: the runner then says so and runs nothing (status
"unchanged"), where TFX would take a minute to find every step cached.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline import spans

RUNS_DIR = "runs"
DATA_FILES = ("ratings.csv", "movies.csv")
# The stack whose versions change what a run computes (distribution names).
PACKAGES = ("tfx", "tensorflow", "tf-keras", "tensorflow-transform",
            "tensorflow-model-analysis", "tensorflow-data-validation", "tensorflow-recommenders",
            "apache-beam", "ml-metadata", "numpy")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):  # ml-32m's ratings.csv is 0.9 GB: never all in memory
            digest.update(chunk)
    return digest.hexdigest()


def data_files(data_root: Path) -> list[Path]:
    """The files a run reads: ratings.csv and movies.csv, and each span's ratings.csv of a folder
    in spans (span-1/ratings.csv, ...), in span order: a new span is a changed input."""
    flat = [path for name in DATA_FILES if (path := data_root / name).is_file()]
    in_spans = data_root.glob(spans.SPAN_PATTERN.replace("{SPAN}", "*"))
    number = {path: path.parent.name.rpartition("-")[2] for path in in_spans}
    return flat + sorted(number, key=lambda p: (not number[p].isdigit(),
                                                int(number[p]) if number[p].isdigit() else 0,
                                                str(p)))


def data_checksums(data_root: Path) -> dict[str, dict[str, Any]]:
    return {path.relative_to(data_root).as_posix(): {"sha256": sha256_of(path),
                                                     "bytes": path.stat().st_size}
            for path in data_files(data_root)}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(repo: Path) -> dict[str, Any]:
    """{"commit", "dirty"} of the checkout; {"error"} when there is none (e.g. an installed copy
    or no git on the machine)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
    try:
        # Ignored files (data/, tfx_output/) are not changes; untracked sources are.
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": f"no git commit for {repo}: {getattr(e, 'stderr', None) or e}".strip()}


def new_record(*, data_root: Path, repo: Path, config: dict[str, Any],
               started: datetime.datetime) -> dict[str, Any]:
    record = {
        "started": started.isoformat(timespec="seconds"),
        "finished": None,
        "status": "running",
        "pid": os.getpid(),
        "argv": sys.argv,
        "data": {"root": str(data_root), "files": data_checksums(data_root)},
        "packages": package_versions(),
        "git": git_state(repo),
        "config": config,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    record["inputs_digest"] = inputs_digest(record)
    return record


# The record's fields that decide a run's outcome; not its times, PID, argv or git state (the
# source fingerprint in "config" covers the code itself, committed or not).
DIGEST_FIELDS = ("data", "packages", "config", "python")
# Records of runs whose pushed version (pushed_to) is what their inputs produced.
PUSHED_STATUSES = ("pushed", "unchanged")


def inputs_digest(record: dict[str, Any]) -> str:
    fields = {name: record.get(name) for name in DIGEST_FIELDS}
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_records(pipeline_root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every readable run record under pipeline_root, oldest first (names are start times)."""
    found = []
    for path in sorted((pipeline_root / RUNS_DIR).glob("*.json")):
        try:
            found.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # a record from an older layout, or damaged: never a reason to skip a run
    return found


def serving_versions(serving_model_dir: Path) -> list[int]:
    """The complete version folders TF Serving would load, ascending."""
    if not serving_model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in serving_model_dir.iterdir()
                  if p.name.isdigit() and (p / "saved_model.pb").is_file())


def find_unchanged(record: dict[str, Any], pipeline_root: Path, serving_model_dir: Path
                   ) -> tuple[Path, dict[str, Any]] | None:
    """The newest earlier run with `record`'s inputs digest that pushed (or found unchanged) the
    version still served, the newest in serving_model_dir; None when there is none."""
    digest = inputs_digest(record)
    served = serving_versions(serving_model_dir)
    if not served:
        return None
    for path, earlier in reversed(read_records(pipeline_root)):
        if earlier.get("status") in PUSHED_STATUSES and earlier.get("inputs_digest") == digest:
            pushed_to = earlier.get("pushed_to") or ""
            same_version = Path(pushed_to).name == str(served[-1])
            in_place = Path(pushed_to).parent.resolve() == serving_model_dir.resolve()
            return (path, earlier) if same_version and in_place else None
    return None


def record_path(pipeline_root: Path, started: datetime.datetime) -> Path:
    return pipeline_root / RUNS_DIR / f"{started.strftime('%Y%m%dT%H%M%S.%f')}.json"


def write(record: dict[str, Any], path: Path) -> None:
    """Writes through a temporary file and a rename: a kill mid-write leaves the old record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(temporary, path)


def finish(record: dict[str, Any], path: Path, status: str, exit_code: int,
           **details: Any) -> None:
    record.update(status=status, exit_code=exit_code, **details,
                  finished=datetime.datetime.now().isoformat(timespec="seconds"))
    write(record, path)
