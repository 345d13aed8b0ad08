"""What a run ran on, as JSON beside its outputs: `<pipeline root>/runs/<start time>.json`.

Written when the run starts (status "running") and rewritten when it ends, so an interrupted or
failed run leaves one too; "running" with a PID that is gone means the run was killed. Enough to
tell two runs apart and to rerun one: the data's checksums, the package versions, the git commit
(and whether the checkout had uncommitted changes), the configuration, Python and the platform.
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


def data_checksums(data_root: Path) -> dict[str, dict[str, Any]]:
    return {name: {"sha256": sha256_of(path), "bytes": path.stat().st_size}
            for name in DATA_FILES if (path := data_root / name).is_file()}


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
    return {
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
