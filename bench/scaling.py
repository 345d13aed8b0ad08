"""Scaling: the whole pipeline on synthetic MovieLens of growing sizes; time and memory per step.

    python -m bench.scaling                         # 100k, 1M and 5M ratings
    python -m bench.scaling --sizes 100k            # one size; the others keep their results
    make bench-scaling SIZES="100k 1m"

For each size: bench/synthetic.py's data (seed 0, generated once into data/synthetic/ and reused),
then one cold `python -m pipeline.local_runner --no-cache` into a fresh output folder, as a user
runs it (TensorFlow/TFX imports included). Recorded:
- per component: wall seconds from ML Metadata (each execution's registration to its last
  update, as the runner's summary prints them) and the peak memory of the process tree while it
  ran;
- the whole run: wall time and peak memory of the process tree: the runner and every descendant,
  sampled from /proc every SAMPLE_SECONDS, RSS summed (what the issue asks for; counts pages
  shared between processes once per process) and PSS summed (shared pages split: the real
  footprint when Beam forks workers);
- the load average before and after: the machine may be shared, and the times grow with it.
Writes bench/results/scaling.json and the "scaling" section of docs/benchmarks.md, with each
component's growth between consecutive sizes as a ratio and as an exponent (log time ratio / log
ratings ratio: 1 is linear, above 1 grows faster than the data).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import docs, synthetic
from pipeline import configs, run_summary

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "scaling.json"
DATA_ROOT = configs.DATA_HOME / "synthetic"
SAMPLE_SECONDS = 0.5
PAGE = os.sysconf("SC_PAGE_SIZE")
DEFAULT_SIZES = ("100k", "1m", "5m")
COMMAND = "python -m bench.scaling"


def parse_size(text: str) -> int:
    """'100k' -> 100_000, '1m' -> 1_000_000, '2500000' -> 2_500_000."""
    text = text.strip().lower().replace("_", "")
    scale = {"k": 10**3, "m": 10**6}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def size_label(n: int) -> str:
    if n % 10**6 == 0:
        return f"{n // 10**6}M"
    return f"{n // 10**3}k" if n % 10**3 == 0 else str(n)


def ensure_data(n_ratings: int, seed: int, root: Path = DATA_ROOT) -> tuple[Path, dict]:
    """The synthetic folder of this size and seed, generated unless already there (its
    synthetic.json says what it holds)."""
    folder = root / f"{size_label(n_ratings).lower()}-seed{seed}"
    info_path = folder / "synthetic.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if info.get("ratings") == n_ratings and info.get("seed") == seed:
            return folder, info
    print(f"Generating {n_ratings:,} ratings into {folder} ...", flush=True)
    return folder, synthetic.generate(folder, n_ratings, seed)


def _children() -> dict[int, list[int]]:
    """{pid: child pids} of every process on the machine, from /proc/*/stat."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # exited meanwhile
            continue
        # The command name (field 2) may hold spaces and parentheses: fields follow its last ')'.
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_pids(root: int) -> list[int]:
    """root and all its descendants."""
    children, pids, stack = _children(), [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(children.get(pid, []))
    return pids


def memory_of(pid: int) -> tuple[int, int]:
    """(RSS, PSS) bytes of one process; (0, 0) once it has exited."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
        pss = 0
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                    break
        return rss, pss
    except (OSError, ValueError, IndexError):
        return 0, 0


@dataclass
class TreeSampler:
    """Samples (time, summed RSS, summed PSS, processes) of a process tree in a thread."""

    pid: int
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = tree_pids(self.pid)
            usage = [memory_of(p) for p in pids]
            self.samples.append((time.time(), sum(u[0] for u in usage),
                                 sum(u[1] for u in usage), len(pids)))
            self._stop.wait(SAMPLE_SECONDS)

    def peak(self, start: float = 0.0, end: float = math.inf) -> tuple[int, int]:
        """Peak summed (RSS, PSS) between two times (the closest sample if none falls in)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if not inside and self.samples:
            inside = [min(self.samples, key=lambda s: abs(s[0] - (start + end) / 2))]
        return (max((s[1] for s in inside), default=0), max((s[2] for s in inside), default=0))


def execution_windows(metadata_path: Path) -> dict[str, tuple[str, float, float]]:
    """{component: (state, start, end)} of the newest run, in seconds since the epoch: each
    execution's registration and last update in ML Metadata."""
    from ml_metadata.proto import metadata_store_pb2

    store = run_summary.open_store(str(metadata_path))
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
    windows = {}
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        node = next(c.name.split(".")[-1] for c in store.get_contexts_by_execution(execution.id)
                    if c.type == "node")
        state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        windows[node] = (state, execution.create_time_since_epoch / 1000.0,
                         execution.last_update_time_since_epoch / 1000.0)
    return windows


def run_pipeline(data_dir: Path, work: Path, extra_args: list[str]) -> dict:
    """One cold run of the local runner on data_dir; its times and memory."""
    cmd = [sys.executable, "-m", "pipeline.local_runner", "--data-dir", str(data_dir),
           "--output-dir", str(work / "tfx"), "--serving-model-dir", str(work / "serving"),
           "--no-cache", "--offline", *extra_args]
    log_path = work / "runner.log"
    load_before = os.getloadavg()
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
        with TreeSampler(proc.pid) as sampler:
            code = proc.wait()
    wall = time.time() - start
    if code not in (0, 2):  # 2: the run finished but the candidate was not blessed
        sys.stderr.write(log_path.read_text()[-6000:])
        raise SystemExit(f"the pipeline failed (exit {code}) on {data_dir}; log: {log_path}")
    windows = execution_windows(work / "tfx" / "metadata.sqlite")
    components = {}
    for node, (state, begin, end) in windows.items():
        rss, pss = sampler.peak(begin, end)
        components[node] = {"state": state, "seconds": round(end - begin, 1),
                            "peak_rss_mib": round(rss / 2**20), "peak_pss_mib": round(pss / 2**20)}
    rss, pss = sampler.peak()
    return {"wall_s": round(wall, 1), "exit_code": code, "pushed": code == 0,
            "peak_rss_mib": round(rss / 2**20), "peak_pss_mib": round(pss / 2**20),
            "max_processes": max(s[3] for s in sampler.samples),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "components": components}


def growth(small: float, large: float, data_ratio: float) -> str:
    """'12.3x (1.09)': the time ratio and its exponent against the data ratio."""
    if small < 0.5 or large < 0.5:  # sub-second steps: the ratio is noise
        return "–"
    ratio = large / small
    return f"{ratio:.1f}x ({math.log(ratio) / math.log(data_ratio):.2f})"


def markdown(results: dict) -> str:
    runs = sorted(results["sizes"].values(), key=lambda r: r["ratings"])
    labels = [size_label(r["ratings"]) for r in runs]
    nodes = list(dict.fromkeys(n for r in runs for n in r["run"]["components"]))
    steps = list(zip(runs[:-1], runs[1:], strict=True))
    lines = [
        f"`{results['command']}` on {results['machine']}: one cold run of "
        "`python -m pipeline.local_runner --no-cache` per size on bench/synthetic.py's data "
        "(seed 0), default configuration (DirectRunner in_memory, configs.HPARAMS). Component "
        "seconds from ML Metadata; memory: the runner's process tree sampled every "
        f"{SAMPLE_SECONDS} s (RSS summed; PSS in the JSON); a component's peak is the "
        "highest sample while it ran, so it includes what the runner kept of the steps "
        "before it (since dfea78e the Trainer, the TopKEvaluator and the ServingCheck return "
        "freed memory first: models/memory.py; rows of earlier commits kept the Trainer's). "
        "Growth: time ratio between "
        "consecutive sizes and, in parentheses, its exponent against the ratings ratio "
        "(1.00 linear; above, faster than the data).",
        "",
        "Runs: " + "; ".join(
            f"{size_label(r['ratings'])} ({r['ratings']:,} ratings, {r['users']:,} users, "
            f"{r['movies']:,} movies) {r['date']} at commit {r['commit']}, load average "
            f"{r['run']['load_before'][0]:.1f} before / {r['run']['load_after'][0]:.1f} after"
            for r in runs) + ".",
        "",
        "| " + " | ".join(["component", *(f"{label} s" for label in labels),
                            *(f"growth {a}→{b}" for a, b in zip(labels, labels[1:], strict=False)),
                            *(f"{label} peak RSS MiB" for label in labels)]) + " |",
        "|---|" + "---:|" * (2 * len(runs) + len(steps)),
        "| " + " | ".join([
            "**whole run (wall)**", *(f"{r['run']['wall_s']:.0f}" for r in runs),
            *(growth(a["run"]["wall_s"], b["run"]["wall_s"], b["ratings"] / a["ratings"])
              for a, b in steps),
            *(f"{r['run']['peak_rss_mib']:,}" for r in runs)]) + " |",
    ]
    for node in nodes:
        cells = [r["run"]["components"].get(node) for r in runs]
        lines.append("| " + " | ".join([
            node, *("–" if c is None else f"{c['seconds']:.1f}" for c in cells),
            *("–" if node not in a["run"]["components"] or node not in b["run"]["components"]
              else growth(a["run"]["components"][node]["seconds"],
                          b["run"]["components"][node]["seconds"], b["ratings"] / a["ratings"])
              for a, b in steps),
            *("–" if c is None else f"{c['peak_rss_mib']:,}" for c in cells)]) + " |")
    lines += ["", "Pushed: " + ", ".join(
        f"{size_label(r['ratings'])} {'yes' if r['run']['pushed'] else 'no (not blessed)'}"
        for r in runs) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES),
                        help="ratings per run: 100k, 1m, 5m, 25m or a number "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="of the synthetic data")
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT,
                        help="where generated folders are kept (default: %(default)s)")
    parser.add_argument("--work-dir", type=Path,
                        help="keep each run's outputs here (default: a temporary folder, deleted)")
    parser.add_argument("--runner-args", default="",
                        help="more local runner flags, e.g. '--model mf'")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--doc-only", action="store_true",
                        help="run nothing: rewrite the doc section from the results file")
    args = parser.parse_args(argv)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.doc_only:
        docs.write_section("scaling", markdown(previous))
        return 0
    results = {"command": COMMAND + (f" --runner-args '{args.runner_args}'"
                                     if args.runner_args else ""),
               "machine": f"{os.cpu_count()} cores ({docs.cpu_model()}), "
                          f"{os.sysconf('SC_PHYS_PAGES') * PAGE / 2**30:.0f} GiB, Python "
                          f"{platform.python_version()}",
               "sizes": previous.get("sizes", {})}
    for n in (parse_size(s) for s in args.sizes):
        data_dir, info = ensure_data(n, args.seed, args.data_root)
        work = (args.work_dir / size_label(n) if args.work_dir
                else Path(tempfile.mkdtemp(prefix=f"scaling-{size_label(n)}-")))
        shutil.rmtree(work, ignore_errors=True)  # a fresh output folder: nothing to reuse
        work.mkdir(parents=True)
        print(f"{size_label(n)}: running the pipeline (log: {work / 'runner.log'}) ...", flush=True)
        try:
            run = run_pipeline(data_dir, work, args.runner_args.split())
        finally:
            if not args.work_dir:
                shutil.rmtree(work, ignore_errors=True)
        results["sizes"][str(n)] = {
            "ratings": n, "users": info["users"], "movies": info["movies"], "seed": args.seed,
            "date": time.strftime("%Y-%m-%d %H:%M"), "commit": docs.git_commit(), "run": run}
        print(json.dumps(results["sizes"][str(n)], indent=1), flush=True)
    text = markdown(results)
    print(text)
    if not args.no_write:
        docs.write_results(RESULTS, results, "scaling", text,
                           heading="## Scaling (bench/scaling.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
