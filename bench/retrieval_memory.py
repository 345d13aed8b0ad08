"""Memory of the retrieval model's validation pass by batch size: the Trainer's largest allocation.

    python -m bench.retrieval_memory                                   # ml-latest-small
    python -m bench.retrieval_memory --data-dir data/synthetic/1m-seed0  # make synthetic first

bench/scaling.py found the Trainer's process at 4.3 GB (100k ratings) and 8.9 GB (1M). This
builds the retrieval model as retrieval_training.train_retrieval does (bench/throughput.py
retrieval_model), trains it a few steps, then runs its validation pass (model.evaluate on the
held-out pairs, as fit's validation_data does each epoch) in batches of 1024 (trainer's now: the
training batch size) and then of 8192 (trainer's before), and records the process's RSS and peak
RSS after each step and the seconds of each pass. Each validation batch is scored against the
whole catalogue (the catalogue softmax and the top-k metric): several float32 [batch, batch +
movies] tensors at once. Writes bench/results/retrieval_memory.json and its section of
docs/benchmarks.md; data folders not run this time keep their results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import accuracy, docs, throughput  # noqa: E402
from bench.process_memory import rss_mib  # noqa: E402
from models import arrays, features  # noqa: E402
from pipeline import fetch_data  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "retrieval_memory.json"
TRAIN_STEPS = 20
BATCH_SIZES = (1024, 8192)  # retrieval_training.train_retrieval's validation batch now, and before


def measure(data_dir: Path) -> dict:
    ratings, movies = accuracy.load(data_dir)
    train, test = accuracy.split(ratings, "time80")
    encoded = accuracy.encode(train, test, movies)
    retrieval = throughput.retrieval_model(encoded)
    model = retrieval.model
    steps = [{"step": "model built", "rss_mib": rss_mib()[0], "peak_mib": rss_mib()[1]}]
    model.fit(arrays.to_dataset(retrieval.fit, retrieval.batch_size, shuffle_seed=0), epochs=1,
              steps_per_epoch=TRAIN_STEPS, verbose=0)
    steps.append({"step": f"{TRAIN_STEPS} training steps of {retrieval.batch_size}",
                  "rss_mib": rss_mib()[0], "peak_mib": rss_mib()[1]})
    model.update_index()  # the top-k metric's index, as IndexUpdater does before validation
    for batch_size in BATCH_SIZES:
        start = time.perf_counter()
        model.evaluate(arrays.to_dataset(retrieval.val, batch_size), verbose=0)
        steps.append({"step": f"validation in batches of {batch_size}",
                      "seconds": round(time.perf_counter() - start, 1),
                      "rss_mib": rss_mib()[0], "peak_mib": rss_mib()[1]})
    return {"data": data_dir.name, "pairs": len(retrieval.fit[features.USER_IDX]),
            "validation_pairs": len(retrieval.val[features.USER_IDX]),
            "catalogue": encoded.num_movies, "date": time.strftime("%Y-%m-%d %H:%M"),
            "commit": docs.git_commit(), "load_average": round(os.getloadavg()[0], 1),
            "steps": steps}


def markdown(runs: dict) -> str:
    lines = ["`python -m bench.retrieval_memory [--data-dir DIR]`: the retrieval model as "
             "retrieval_training.train_retrieval builds it, then its validation pass in batches "
             "of 1024 "
             "(trainer's since the trainer-speed branch) and then of 8192 (trainer's before), in "
             "one process; RSS after each step and the process's "
             "peak so far.", ""]
    for run in runs.values():
        lines += [f"{run['data']}: {run['pairs']:,} training pairs, {run['validation_pairs']:,} "
                  f"validation pairs, {run['catalogue']:,} movies; {run['date']} at commit "
                  f"{run['commit']}, load average {run['load_average']}.", "",
                  "| step | seconds | RSS MiB | peak MiB |", "|---|---:|---:|---:|"]
        lines += [f"| {s['step']} | {s.get('seconds', '–')} | {s['rss_mib']:,} | "
                  f"{s['peak_mib']:,} |" for s in run["steps"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="MovieLens folder (default: "
                        "ml-latest-small)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    data_dir = Path(fetch_data.ensure_data(args.data_dir, dataset="ml-latest-small"))
    run = measure(data_dir)
    print(json.dumps(run, indent=1))
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs[data_dir.name] = run
    text = markdown(runs)
    print(text)
    if not args.no_write:
        docs.write_results(RESULTS, runs, "retrieval-memory", text,
                           heading="## Retrieval validation memory (bench/retrieval_memory.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
