"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner.

    python -m pipeline.local_runner                      # ml-latest-small, fetched if needed
    python -m pipeline.local_runner --data-dir ~/ml-32m  # any MovieLens "latest"-format folder
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path

# TensorFlow Recommenders needs Keras 2; this must be set before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Google client libraries warn about Python 3.10 support on import; nothing to act on here.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")

import tensorflow as tf  # noqa: E402
from absl import logging as absl_logging  # noqa: E402
from tfx.orchestration import metadata  # noqa: E402
from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # noqa: E402

from components.movielens_example_gen.config import SPLIT_METHODS  # noqa: E402
from pipeline import configs, data, report  # noqa: E402
from pipeline.pipeline import create_pipeline  # noqa: E402

# absl INFO lines worth a person's attention: which component runs, and the outcome.
_PROGRESS = re.compile(r"Component \S+ is (running|finished)|Running pipeline|Execution \d+ failed")
# Harmless warnings TFT/TF print for every transform graph load.
_NOISE = re.compile(r"Tables initialized inside a tf.function|is not available in Keras 3|"
                    r"No training configuration found|Sharding callback|"
                    r"does not have payload_format custom property|"
                    r"SavedModel saved prior to TF 2.5 detected")


class _ProgressFilter(logging.Filter):
    """Keeps this project's INFO logs and TFX's progress lines; drops the internals."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _NOISE.search(message):
            return False
        if record.name.split(".")[0] in ("components", "models", "pipeline", "__main__"):
            return True
        return record.levelno >= logging.WARNING or bool(_PROGRESS.search(message))


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", force=True)
    absl_logging.set_verbosity(absl_logging.INFO)
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_ProgressFilter())
        # TensorFlow's logger also prints through a handler of its own, which the filter above
        # does not see; route it through the root handlers only.
        tf_logger = tf.get_logger()
        tf_logger.handlers.clear()
        tf_logger.setLevel(logging.WARNING)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="MovieLens folder (default: fetch --dataset)")
    parser.add_argument("--dataset", default=configs.DATASET,
                        help="GroupLens archive to fetch when no --data-dir is given "
                             "(default: %(default)s; e.g. ml-latest, ml-32m)")
    parser.add_argument("--output-dir", type=Path, default=configs.OUTPUT_DIR,
                        help="pipeline artifacts and ML Metadata (default: %(default)s)")
    parser.add_argument("--serving-model-dir", type=Path, default=configs.SERVING_MODEL_DIR,
                        help="where blessed models are pushed (default: %(default)s)")
    parser.add_argument("--split", choices=SPLIT_METHODS, default=configs.SPLIT.method)
    parser.add_argument("--model", choices=sorted(configs.MODEL_HPARAMS),
                        default=configs.MODEL_TYPE,
                        help="model the Trainer trains, with its tuned hyper-parameters from "
                             "configs.MODEL_HPARAMS (default: %(default)s)")
    parser.add_argument("--no-cache", action="store_true", help="rerun every component")
    parser.add_argument("--offline", action="store_true", help="never download data")
    parser.add_argument("--verbose", action="store_true", help="show every TFX and Beam log line")
    parser.add_argument("--direct-running-mode", choices=("in_memory", "multi_threading",
                                                          "multi_processing"),
                        help="Beam DirectRunner mode (default: configs.BEAM_PIPELINE_ARGS)")
    parser.add_argument("--direct-num-workers", type=int,
                        help="Beam DirectRunner workers (default: configs.BEAM_PIPELINE_ARGS)")
    return parser.parse_args(argv)


def beam_args(running_mode: str | None, num_workers: int | None) -> list[str]:
    """configs.BEAM_PIPELINE_ARGS with the DirectRunner's mode and workers overridden if given."""
    overrides = {"--direct_running_mode": running_mode, "--direct_num_workers": num_workers}
    args = [a for a in configs.BEAM_PIPELINE_ARGS
            if overrides.get(a.split("=")[0]) is None]
    return args + [f"{k}={v}" for k, v in overrides.items() if v is not None]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.verbose)
    start = time.time()
    try:
        data_root = data.ensure_data(args.data_dir, dataset=args.dataset, offline=args.offline)
    except data.DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    output_dir = args.output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    metadata_path = output_dir / "metadata.sqlite"
    pipeline = create_pipeline(
        data_root=str(data_root),
        pipeline_root=str(output_dir / configs.PIPELINE_NAME),
        serving_model_dir=str(args.serving_model_dir.resolve()),
        split=dataclasses.replace(configs.SPLIT, method=args.split),
        hparams=configs.model_hparams(args.model),
        beam_pipeline_args=beam_args(args.direct_running_mode, args.direct_num_workers),
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(metadata_path)),
        enable_cache=not args.no_cache,
    )
    logging.info("Running pipeline %s on %s; artifacts in %s", configs.PIPELINE_NAME, data_root,
                 output_dir)
    LocalDagRunner().run(pipeline)
    summary = report.summarize_latest_run(str(metadata_path))
    print("\n" + "=" * 72)
    print(report.format_summary(summary) if summary else "No run recorded.")
    print(f"Pipeline finished in {time.time() - start:.0f} s; ML Metadata: {metadata_path}")
    print("=" * 72)
    return 0 if summary and summary.pushed_to else 2


if __name__ == "__main__":
    sys.exit(main())
