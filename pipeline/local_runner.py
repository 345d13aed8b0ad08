"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner.

    python -m pipeline.local_runner                      # ml-latest-small, fetched if needed
    python -m pipeline.local_runner --data-dir ~/ml-32m  # any MovieLens "latest"-format folder

Exit codes (README: Failure modes): 0 a model was pushed; 2 the run finished but the candidate was
not blessed; 1 an error; 3 another run holds the output folder's lock; 130 interrupted (Ctrl-C:
rerun to resume, finished steps are reused). An expected error (bad data, anomalies, a missing or
unreadable file, an output folder that cannot be written, a full disk) prints one paragraph and no
traceback (--verbose adds it); an unexpected one prints its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import errno
import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

INTERRUPTED_MESSAGE = "interrupted; rerun to resume, finished steps are reused"
# 128 + SIGINT: what shells report for a command stopped with Ctrl-C.
EXIT_INTERRUPTED = 130


def _interrupted_while_starting(signum: int, frame: object) -> None:
    print(f"\n{INTERRUPTED_MESSAGE}", file=sys.stderr)
    raise SystemExit(EXIT_INTERRUPTED)


# Set by Ctrl-C (main's handler), which also raises KeyboardInterrupt as Python's does. Beam
# re-raises a KeyboardInterrupt inside a step as RuntimeError("KeyboardInterrupt [while running
# ...]"), and one raised while Python runs a finalizer is dropped: the run still ends as
# interrupted.
_CTRL_C = threading.Event()


def _on_ctrl_c(signum: int, frame: object) -> None:
    _CTRL_C.set()
    signal.default_int_handler(signum, frame)


# Ctrl-C while TensorFlow and TFX import (seconds) gets the same line as later, not a traceback
# from inside an import; main() then installs _on_ctrl_c. Left alone where SIGINT is ignored
# (a background job of a script).
if __name__ == "__main__" and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

# TensorFlow's C++ log level, read once at import and inherited by Beam's worker processes, so
# decided here: without a GPU its CUDA plugins log "Unable to register cuDNN factory" errors at
# import, and oneDNN notices follow; nothing to act on (a failure raises a Python error).
# --verbose shows them all.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if "--verbose" in sys.argv[1:] else "3"
# Google client libraries warn about Python 3.10 support on import; nothing to act on here.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")

from absl import logging as absl_logging  # noqa: E402

from components.movielens_example_gen.config import SPLIT_METHODS  # noqa: E402
from models import progress  # noqa: E402
from models.hparams import MODEL_TYPES, tuned  # noqa: E402
from pipeline import (  # noqa: E402
    configs,
    fetch_data,
    fingerprints,
    run_lock,
    run_record,
    spans,
    stale_executions,
)

# TensorFlow, TFX and the pipeline's components are imported by run() once it knows there is work
# to do: their start-up takes 15-40 s, and an unchanged rerun answers in about a second.

# TFX's log lines the console rewrites (see _Console); the Trainer's progress comes as
# models/progress.py's records.
_COMPONENT = re.compile(r"^Component (\S+) is (running|finished)\.$")
_CACHED = re.compile(r"^A cached execution \d+ is used\.$")
# Warnings without anything to act on: TFT/TF's at every transform graph load, the TFX
# resolver's for every input of every component (ArtifactQuery.property_predicate), Beam's
# about an optional speed-up and its batch-size tuning (logged through the root logger),
# TensorFlow's deprecation notices to library authors.
_NOISE = re.compile(r"Tables initialized inside a tf.function|is not available in Keras 3|"
                    r"No training configuration found|Sharding callback|"
                    r"does not have payload_format custom property|"
                    r"SavedModel saved prior to TF 2.5 detected|"
                    r"Query\.property_predicate is not supported|"
                    r"Couldn't find python-snappy|will be removed in a future version|"
                    r"^BatchElements statistics")
# A progress line at most this often: long steps show they advance, short ones stay one line.
_PROGRESS_SECONDS = 10.0


class _Console(logging.Filter):
    """What a person follows: one line per component with its time, the Trainer's progress
    lines (models/progress.py: each epoch's validation RMSE, the retrieval model's NDCG, the
    item-item stage's fit; per-epoch ones at most every _PROGRESS_SECONDS), the pipeline's
    and the components' own lines, every warning. The internals of TFX, Beam and TensorFlow,
    and the Trainer's details, are for --verbose."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._node, self._started, self._cached = "", 0.0, False
        self._last_progress = 0.0

    @staticmethod
    def _say(record: logging.LogRecord, message: str) -> bool:
        record.msg, record.args = message, ()
        return True

    def _progress(self, record: logging.LogRecord, message: str) -> bool:
        """`message`, if the last progress line is _PROGRESS_SECONDS old."""
        if self._clock() - self._last_progress < _PROGRESS_SECONDS:
            return False
        self._last_progress = self._clock()
        return self._say(record, f"  {self._node} {message}")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _NOISE.search(message):
            return False
        if match := _COMPONENT.match(message):
            node, state = match.groups()
            if state == "running":
                self._node, self._started, self._cached = node, self._clock(), False
                self._last_progress = self._started
                return False
            return self._say(record, f"{node:<28} {self._clock() - self._started:4.0f} s"
                             + (" (cached)" if self._cached else ""))
        if _CACHED.match(message):
            self._cached = True
            return False
        if (step := progress.of(record)) is not None:
            if step.throttle:
                return self._progress(record, step.text)
            return self._say(record, f"  {self._node} {step.text}")
        if record.levelno >= logging.WARNING:
            return True
        # The runner logs through the root logger; the rest of the project through its modules'.
        return record.name.split(".")[0] in ("root", "components", "pipeline", "__main__")


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", force=True)
    absl_logging.set_verbosity(absl_logging.INFO)
    if not verbose:
        console = _Console()
        for handler in logging.getLogger().handlers:
            handler.addFilter(console)


def quiet_tensorflow() -> None:
    """Routes TensorFlow's and Keras' console output through the root handlers (and _Console)."""
    import tensorflow as tf

    # TensorFlow's logger also prints through a handler of its own, which _Console does not see.
    tf_logger = tf.get_logger()
    tf_logger.handlers.clear()
    tf_logger.setLevel(logging.WARNING)
    # Keras prints its epoch lines to stdout; through absl logging, _Console keeps one progress
    # line of them.
    tf.keras.utils.disable_interactive_logging()


EXIT_PUSHED, EXIT_ERROR, EXIT_NOT_BLESSED, EXIT_LOCKED = 0, 1, 2, 3
# OSErrors that are the machine's state, not a bug: say which path and what to do.
_OS_ERRORS = {
    errno.ENOSPC: "the disk is full: free space (or pass --output-dir on another disk) and run "
                  "again; finished components are reused",
    errno.EDQUOT: "the disk quota is exceeded: free space and run again",
    errno.EACCES: "permission denied: make it writable (readable, for input files) or pass "
                  "another --output-dir / --serving-model-dir",
    errno.EPERM: "operation not permitted: check the path's owner and permissions",
    errno.EROFS: "the file system is read-only: pass --output-dir / --serving-model-dir elsewhere",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def _raised_by(error: BaseException, module: str, *names: str) -> bool:
    """Whether `error` is one of `module`'s exception classes `names`. A module that was never
    imported raised nothing, and importing it here could cost TensorFlow's start-up."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(error, tuple(getattr(loaded, n) for n in names))


def expected_failure(error: BaseException) -> str | None:
    """The paragraph to print for an expected failure (what, where, what to do); None when the
    error is unexpected and its traceback should be shown."""
    if _raised_by(error, "components.anomalies_gate", "DataAnomaliesError"):
        return (f"{error}\nThe data breaks schema/schema.pbtxt: fix the data (or the schema, if "
                "the data is right) and run again.")
    if _raised_by(error, "components.span_drift", "SpanDriftError"):
        return str(error)
    if isinstance(error, fetch_data.DataError) or _raised_by(
            error, "components.movielens_example_gen.parsing", "InputDataError"):
        return str(error)
    if isinstance(error, OSError) and error.errno in _OS_ERRORS:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror or error}{where}: {_OS_ERRORS[error.errno]}."
    if _raised_by(error, "tensorflow.python.framework.errors_impl", "NotFoundError",
                  "PermissionDeniedError"):
        return f"{error.message}: check that the path exists and can be read and written."
    return None


def check_writable(folder: Path, flag: str) -> None:
    """Raises OSError (EACCES, EROFS, ENOTDIR...) unless `folder`, or the nearest folder above it
    that exists, can be written: before the run, not after training."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{flag}: not a folder", str(existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{flag}: cannot write in this folder", str(existing))


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
    parser.add_argument("--span-window", type=int, default=configs.SPAN_WINDOW,
                        help="for a data folder in spans (span-N/ratings.csv): train on the "
                             "newest N spans (default: %(default)s)")
    parser.add_argument("--accept-drift", action="store_true",
                        help="let a span through whose data drifted from the previous span's "
                             "beyond configs.DRIFT_THRESHOLDS")
    parser.add_argument("--cold-start", action="store_true",
                        help="for a data folder in spans: train from scratch instead of from "
                             "the serving model's weights")
    parser.add_argument("--model", choices=MODEL_TYPES, default=configs.MODEL_TYPE,
                        help="model the Trainer trains, with its tuned hyper-parameters "
                             "(models/hparams.py: TUNED; default: %(default)s)")
    parser.add_argument("--no-cache", action="store_true", help="rerun every component")
    parser.add_argument("--force-bad-model", action="store_true",
                        help="train the candidate with configs.FORCED_BAD_MODEL_OVERRIDES "
                             "(untrained) to see the Evaluator refuse it")
    parser.add_argument("--offline", action="store_true", help="never download data")
    parser.add_argument("--verbose", action="store_true", help="show every TFX and Beam log line")
    parser.add_argument("--direct-running-mode", choices=("in_memory", "multi_threading",
                                                          "multi_processing"),
                        help="Beam DirectRunner mode (default: configs.BEAM_PIPELINE_ARGS)")
    parser.add_argument("--direct-num-workers", type=int,
                        help="Beam DirectRunner workers (default: configs.BEAM_PIPELINE_ARGS)")
    parser.add_argument("--beam", choices=("direct", "portable"), default="direct",
                        help="portable: Beam's PortableRunner with SDK workers from the pool at "
                             "--worker-pool, the path Flink/Spark/Dataflow take (configs."
                             "portable_beam_args)")
    parser.add_argument("--worker-pool", default=configs.PORTABLE_WORKER_POOL,
                        help="host:port of a running Beam worker pool, for --beam portable "
                             "(default: %(default)s)")
    return parser.parse_args(argv)


def beam_args(running_mode: str | None, num_workers: int | None) -> list[str]:
    """configs.BEAM_PIPELINE_ARGS with the DirectRunner's mode and workers overridden if given."""
    overrides = {"--direct_running_mode": running_mode, "--direct_num_workers": num_workers}
    args = [a for a in configs.BEAM_PIPELINE_ARGS
            if overrides.get(a.split("=")[0]) is None]
    return args + [f"{k}={v}" for k, v in overrides.items() if v is not None]


def main(argv: list[str] | None = None) -> int:
    if signal.getsignal(signal.SIGINT) in (_interrupted_while_starting,
                                           signal.default_int_handler):
        signal.signal(signal.SIGINT, _on_ctrl_c)
    args = parse_args(argv)
    configure_logging(args.verbose)
    try:
        return run(args)
    except KeyboardInterrupt:
        # A second Ctrl-C while Python shuts down ends the process at once.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if args.verbose:
            logging.exception("Interrupted")
        print(f"\n{INTERRUPTED_MESSAGE}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except run_lock.RunLockedError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return EXIT_LOCKED
    except Exception as e:  # noqa: BLE001 - sorted into expected failures and bugs below
        message = expected_failure(e)
        if message is None:
            raise
        if args.verbose:
            logging.exception("The run failed")
        print(f"\nerror: {message}", file=sys.stderr)
        return EXIT_ERROR


def run(args: argparse.Namespace) -> int:
    start = time.time()
    data_root = fetch_data.ensure_data(args.data_dir, dataset=args.dataset, offline=args.offline)
    output_dir = args.output_dir.resolve()
    serving_model_dir = args.serving_model_dir.resolve()
    check_writable(output_dir, "--output-dir")
    check_writable(serving_model_dir, "--serving-model-dir")
    output_dir.mkdir(parents=True, exist_ok=True)
    metadata_path = output_dir / "metadata.sqlite"
    hparams = tuned(args.model)
    arguments = configs.pipeline_arguments(
        pipeline_root=str(output_dir / configs.PIPELINE_NAME),
        data_root=str(data_root),
        serving_model_dir=str(serving_model_dir),
        split=dataclasses.replace(configs.SPLIT, method=args.split),
        span_window=args.span_window if spans.has_spans(data_root) else 0,
        accept_drift=args.accept_drift,
        warm_start=not args.cold_start,
        hparams=(dataclasses.replace(hparams, **configs.FORCED_BAD_MODEL_OVERRIDES)
                 if args.force_bad_model else hparams),
        beam_pipeline_args=(configs.portable_beam_args(args.worker_pool) if args.beam == "portable"
                            else beam_args(args.direct_running_mode, args.direct_num_workers)),
        enable_cache=not args.no_cache,
    )
    # The record's configuration: what create_pipeline gets, as JSON, and the code it runs.
    config: dict[str, Any] = {
        name: dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        for name, value in arguments.items()}
    config.update(metadata=str(metadata_path), force_bad_model=args.force_bad_model,
                  models_code_fingerprint=fingerprints.models_fingerprint(),
                  source_fingerprint=fingerprints.source_fingerprint())
    pipeline_root = Path(arguments["pipeline_root"])
    # One run per output folder: a second would write the same ML Metadata store.
    with run_lock.hold(output_dir):
        started = datetime.datetime.now()
        record_path = run_record.record_path(pipeline_root, started)
        record = run_record.new_record(data_root=Path(data_root), repo=configs.REPO_ROOT,
                                       config=config, started=started)
        unchanged = (None if args.no_cache or not metadata_path.exists() else
                     run_record.find_unchanged(record, pipeline_root, serving_model_dir))
        if unchanged is not None:
            earlier_path, earlier = unchanged
            # An unchanged run's record points at the run that did the work, and keeps its summary.
            run_record.write(record, record_path)
            run_record.finish(record, record_path, "unchanged", EXIT_PUSHED,
                              same_as=earlier.get("same_as") or str(earlier_path),
                              same_as_started=earlier.get("same_as_started") or earlier["started"],
                              pushed_to=earlier["pushed_to"], summary=earlier.get("summary"),
                              pipeline_run_id=earlier.get("pipeline_run_id"))
            print(format_unchanged(record, record_path, time.time() - start))
            return EXIT_PUSHED
        run_record.write(record, record_path)
        stale = stale_executions.fail_stale(metadata_path)
        if stale:
            logging.warning("Marked %d step(s) an interrupted run left running as failed in ML "
                            "Metadata (%s); they run again", len(stale), ", ".join(stale))
        logging.info("Running pipeline %s on %s; artifacts in %s; run record %s",
                     configs.PIPELINE_NAME, data_root, output_dir, record_path)
        try:
            summary = run_pipeline(arguments, metadata_path, args.verbose)
            if _CTRL_C.is_set():  # the KeyboardInterrupt was dropped on the way
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            run_record.finish(record, record_path, "interrupted", EXIT_INTERRUPTED)
            raise
        except Exception as e:
            if _CTRL_C.is_set():  # a step's KeyboardInterrupt, wrapped by Beam
                run_record.finish(record, record_path, "interrupted", EXIT_INTERRUPTED)
                raise KeyboardInterrupt from e
            run_record.finish(record, record_path, "failed", EXIT_ERROR,
                              error=expected_failure(e) or repr(e))
            raise
        from pipeline import run_summary

        text = run_summary.format_summary(summary) if summary else "No run recorded."
        code = EXIT_PUSHED if summary and summary.pushed_to else EXIT_NOT_BLESSED
        run_record.finish(record, record_path, "pushed" if code == EXIT_PUSHED else "not pushed",
                          code, pipeline_run_id=summary.run_id if summary else None,
                          pushed_to=summary.pushed_to if summary else None, summary=text)
    print("\n" + "=" * 72)
    print(text)
    print(f"Pipeline finished in {time.time() - start:.0f} s; ML Metadata: {metadata_path}")
    print(f"Run record (data checksums, versions, commit, configuration): {record_path}")
    print("=" * 72)
    return code


def run_pipeline(arguments: dict[str, Any], metadata_path: Path, verbose: bool):
    """Builds the pipeline, runs it with LocalDagRunner, returns its run_summary.RunSummary."""
    from tfx.orchestration import metadata
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline import run_summary
    from pipeline.pipeline import create_pipeline

    if not verbose:
        quiet_tensorflow()
    pipeline = create_pipeline(**arguments, metadata_connection_config=(
        metadata.sqlite_metadata_connection_config(str(metadata_path))))
    LocalDagRunner().run(pipeline)
    return run_summary.summarize_latest_run(str(metadata_path))


def format_unchanged(record: dict[str, Any], record_path: Path, seconds: float) -> str:
    """The summary of a run that found nothing changed: `record` as run_record.finish left it."""
    pushed_to = Path(record["pushed_to"])
    return "\n".join([
        "=" * 72,
        f"Nothing changed since the run of {record['same_as_started']}: the same data (sha256), "
        "code, configuration and packages.",
        "No step ran and nothing was pushed. That run's summary:",
        "",
        record.get("summary") or f"(in {record['same_as']})",
        "",
        f"Serving version {pushed_to.name}: {pushed_to}",
        "To run every step anyway: --no-cache (make run RUN_ARGS=--no-cache).",
        f"Finished in {seconds:.1f} s. Run record: {record_path}",
        "=" * 72])


if __name__ == "__main__":
    sys.exit(main())
