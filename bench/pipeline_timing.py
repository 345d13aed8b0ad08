"""Benchmark: wall time of the whole pipeline and of each component, per Beam DirectRunner mode.

    .venv/bin/python -m bench.pipeline_timing [--data-dir DIR] [--modes in_memory multi_processing]

For each mode: a cold run (fresh output folder, every component executes), then a rerun of the
same folder with nothing changed (the runner finds the run record of the same inputs and runs no
step). Each run is a fresh `python -m pipeline.local_runner` process, so the times include
importing TensorFlow/TFX, where a run needs them, as a user's `make run` does. Writes
bench/results/pipeline_timing.json and the "Pipeline" section of docs/benchmarks.md; modes not
run this time keep their earlier results, each with its own date and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import docs
from pipeline import configs, fetch_data, run_summary

REPO = configs.REPO_ROOT

RESULTS = REPO / "bench" / "results" / "pipeline_timing.json"


def run_once(data_dir: Path, out: Path, mode: str, workers: int) -> dict:
    cmd = [sys.executable, "-m", "pipeline.local_runner", "--data-dir", str(data_dir),
           "--output-dir", str(out / "tfx"), "--serving-model-dir", str(out / "serving"),
           "--direct-running-mode", mode, "--direct-num-workers", str(workers)]
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode not in (0, 2):  # 2: ran, but the model was not blessed
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        raise SystemExit(f"pipeline failed in mode {mode} (exit {proc.returncode})")
    if "Nothing changed since the run of" in proc.stdout:
        return {"wall_s": round(wall, 1), "pipeline_s": 0.0, "components_s": {}, "rmse": None,
                "mae": None, "blessed": None, "unchanged": True}
    summary = run_summary.summarize_latest_run(str(out / "tfx" / "metadata.sqlite"))
    if summary is None:
        raise SystemExit(f"no run recorded in {out / 'tfx'}")
    components = {node: round(seconds, 1) for node, (_, seconds) in summary.components.items()}
    overall = summary.metrics.get("overall", {})
    return {"wall_s": round(wall, 1), "pipeline_s": round(sum(components.values()), 1),
            "components_s": components, "rmse": overall.get("root_mean_squared_error"),
            "mae": overall.get("mean_absolute_error"), "blessed": summary.blessed}


def doc_section(results: dict) -> str:
    """The "Pipeline" section of docs/benchmarks.md."""
    modes = results["modes"]
    nodes = list(next(iter(modes.values()))["cold"]["components_s"])
    lines = [
        "## Pipeline",
        "",
        f"`{results['command']}` on {results['machine']}; data: {results['data']}. Wall time "
        "of `python -m pipeline.local_runner` (TensorFlow/TFX imports included); component "
        "times from ML Metadata. Measured: " + "; ".join(
            f"{m} {r.get('date', '?')} at commit {r.get('commit', '?')}" for m, r in modes.items())
        + ".",
        "",
        "| | " + " | ".join(f"{m} cold" for m in modes) + " | "
        + " | ".join(f"{m} rerun, unchanged" for m in modes) + " |",
        "|---|" + "---:|" * (2 * len(modes)),
        "| **whole run (wall)** | " + " | ".join(f"{r['cold']['wall_s']:.0f} s" for r in
                                               modes.values()) + " | "
        + " | ".join(f"{r['cached']['wall_s']:.0f} s" for r in modes.values()) + " |",
    ]

    def cell(run: dict, node: str) -> str:
        if run.get("unchanged"):
            return "– (not run)"
        return f"{run['components_s'].get(node, 0):.1f} s"

    for node in nodes:
        lines.append(f"| {node} | " + " | ".join(cell(r["cold"], node) for r in modes.values())
                     + " | " + " | ".join(cell(r["cached"], node) for r in modes.values()) + " |")
    lines += ["", "Eval-split RMSE of the cold runs: " + ", ".join(
        f"{m} {r['cold']['rmse']:.4f}" if r["cold"]["rmse"] is not None else f"{m} n/a"
        for m, r in modes.items()), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="MovieLens folder (default: ml-latest-small)")
    parser.add_argument("--modes", nargs="+", default=["in_memory", "multi_processing"],
                        choices=["in_memory", "multi_threading", "multi_processing"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="DirectRunner workers for multi_processing/multi_threading")
    args = parser.parse_args()
    data_dir = fetch_data.ensure_data(args.data_dir)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results = {
        "command": "python -m bench.pipeline_timing [--modes ...]",
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
                   f"{platform.python_version()}",
        "data": data_dir.name,
        "modes": previous.get("modes", {}) if previous.get("data") == data_dir.name else {},
    }
    commit = docs.git_commit()
    for mode in args.modes:
        workers = 1 if mode == "in_memory" else args.workers
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            print(f"{mode}: cold run ...", flush=True)
            cold = run_once(data_dir, Path(tmp), mode, workers)
            print(f"{mode}: rerun, nothing changed ...", flush=True)
            cached = run_once(data_dir, Path(tmp), mode, workers)
        results["modes"][mode] = {"workers": workers, "date": time.strftime("%Y-%m-%d %H:%M"),
                                  "commit": commit, "cold": cold, "cached": cached}
        print(json.dumps(results["modes"][mode], indent=1), flush=True)
    docs.write_results(RESULTS, results, "pipeline", doc_section(results),
                       heading="## Pipeline (bench/pipeline_timing.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
