"""Where the Trainer's memory goes: runs the TFX Trainer's run_fn (models/trainer.py) in this
process on a finished run's examples and Transform graph and prints the process's RSS and its
peak so far (the kernel's high-water mark, bench/process_memory.py) after each step: reading and
transforming the columns (the catalogue with them), sorting, training, the item-item stage,
exporting.

    .venv/bin/python -m bench.trainer_memory --run tfx_output/movielens-tfx [--baseline] \
        [--keep DIR]

--baseline trains the bias baseline (configs.BASELINE_HPARAMS) instead of the pipeline's model;
--keep leaves the export in DIR/serving (to load it in a server, say).
Results in docs/benchmarks.md, "Trainer memory".
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfx.components.trainer.fn_args_utils import FnArgs  # noqa: E402

from bench.process_memory import rss_mib  # noqa: E402
from models import arrays, contract, trainer  # noqa: E402
from pipeline import configs  # noqa: E402

STEPS = ((trainer, "read_split"), (arrays, "sort_rows"), (trainer, "train"),
         (trainer, "train_item_item"))


def line(what: str) -> str:
    current, peak = rss_mib()
    return f"{time.strftime('%H:%M:%S')} rss {current:6,} MiB, peak {peak:6,} MiB  {what}"


def mark_steps() -> None:
    """Prints a line after each of STEPS."""
    def marked(function, name):
        @functools.wraps(function)
        def call(*args, **kwargs):
            result = function(*args, **kwargs)
            print(line(f"after {name}"), flush=True)
            return result
        return call

    for module, name in STEPS:
        setattr(module, name, marked(getattr(module, name), name))


def latest(folder: str) -> str:
    return os.path.join(folder, max(os.listdir(folder), key=int))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True,
                        help="a pipeline's folder: <tfx_output>/movielens-tfx")
    parser.add_argument("--baseline", action="store_true", help="the bias baseline's settings")
    parser.add_argument("--keep", help="export into this folder and keep it (default: a "
                        "temporary one)")
    args = parser.parse_args()
    mark_steps()
    print(line("start (TensorFlow and TFX imported)"), flush=True)
    hp = configs.BASELINE_HPARAMS if args.baseline else configs.HPARAMS
    examples = latest(os.path.join(args.run, "MovieLensExampleGen", "examples"))
    with tempfile.TemporaryDirectory() as temporary:
        out = args.keep or temporary
        trainer.run_fn(FnArgs(
            train_files=[os.path.join(examples, "Split-train", "*")],
            eval_files=[os.path.join(examples, "Split-eval", "*")],
            transform_output=latest(os.path.join(args.run, "Transform", "transform_graph")),
            serving_model_dir=os.path.join(out, "serving"), model_run_dir=os.path.join(out, "run"),
            custom_config={contract.HPARAMS_KEY: hp.to_config()}))
        print(line("exported"), flush=True)
    logging.shutdown()


if __name__ == "__main__":
    main()
