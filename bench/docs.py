"""docs/benchmarks.md: each bench script owns one marked section and rewrites only that."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def git_commit() -> str:
    """The checkout's short commit hash, which every result records ("unknown" outside git)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=DOC.parents[1],
                              check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), for the machine line of a result."""
    try:
        return next((line.split(":", 1)[1].strip() for line in
                     Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "unknown CPU")
    except OSError:
        return "unknown CPU"


def write_section(name: str, text: str, heading: str = "") -> None:
    """Replaces the text between `<!-- name:start -->` and `<!-- name:end -->`; appends the
    section (after `heading`, if given) when the file does not have it yet."""
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text}\n{end}"
    if start in doc:
        doc = doc[:doc.index(start)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip() + "\n\n" + (f"{heading}\n\n" if heading else "") + block + "\n"
    DOC.write_text(doc)


def write_results(results: Path, payload: dict, section: str, text: str, heading: str) -> None:
    """Writes a script's raw results (JSON) and rewrites its section of docs/benchmarks.md."""
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(payload, indent=2) + "\n")
    write_section(section, text, heading=heading)
    print(f"Wrote {results} and {DOC}")
