"""Where an Evaluator's time goes: reruns a finished pipeline's Evaluator execution in this process
with the current code, times it, optionally under cProfile, and checks its metrics against the
ones that execution wrote.

    .venv/bin/python -m bench.evaluator_profile --metadata tfx_output/metadata.sqlite
    .venv/bin/python -m bench.evaluator_profile --node BlessedModelEvaluator --profile 30
    .venv/bin/python -m bench.evaluator_profile --without-paired-change   # the intervals' cost

The inputs (examples, candidate and baseline models) are the execution's own, read from ML
Metadata; the TFMA configuration is the current code's (pipeline.make_eval_configs with
configs.EVAL) unless --stored-config; the Beam pipeline is the local runner's (DirectRunner,
in_memory). Outputs go to a temporary folder: the pipeline's artifacts are not touched.
--without-paired-change drops the paired change (the blessing rules' intervals) from that
configuration's RatingErrors metric, and its thresholds, to time the Evaluator without it.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import models  # noqa: F401 - Keras 2 before TensorFlow
from pipeline import configs

NODES = {"Evaluator": "bias_baseline", "BlessedModelEvaluator": "latest_blessed"}


def last_execution(store, node: str):
    from ml_metadata.proto import metadata_store_pb2

    executions = [e for e in store.get_executions()
                  if e.last_known_state == metadata_store_pb2.Execution.COMPLETE
                  and any(c.type == "node" and c.name.endswith("." + node)
                          for c in store.get_contexts_by_execution(e.id))]
    if not executions:
        raise SystemExit(f"no completed {node} execution in this ML Metadata store")
    return max(executions, key=lambda e: e.id)


def artifacts(store, execution_id: int, event_type: int) -> dict[str, list]:
    from tfx.types import artifact_utils

    found: dict[str, list] = {}
    for event in store.get_events_by_execution_ids([execution_id]):
        if event.type != event_type:
            continue
        (artifact,) = store.get_artifacts_by_id([event.artifact_id])
        (artifact_type,) = store.get_artifact_types_by_id([artifact.type_id])
        found.setdefault(event.path.steps[0].key, []).append(
            artifact_utils.deserialize_artifact(artifact_type, artifact))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metadata", type=Path,
                        default=configs.OUTPUT_DIR / "metadata.sqlite")
    parser.add_argument("--node", choices=sorted(NODES), default="Evaluator")
    parser.add_argument("--stored-config", action="store_true",
                        help="the EvalConfig the execution ran with, not the current code's")
    parser.add_argument("--without-paired-change", action="store_true",
                        help="without RatingErrors' paired change and its thresholds")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="run under cProfile and print its N most expensive functions")
    args = parser.parse_args()

    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx.components.evaluator import executor as evaluator_executor
    from tfx.orchestration import data_types_utils
    from tfx.utils import proto_utils

    from components.evaluation import results
    from components.evaluation.metrics import RatingErrors
    from pipeline.pipeline import make_eval_configs

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(args.metadata)
    connection.sqlite.connection_mode = \
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(connection)
    execution = last_execution(store, args.node)
    inputs = artifacts(store, execution.id, metadata_store_pb2.Event.INPUT)
    written = artifacts(store, execution.id, metadata_store_pb2.Event.OUTPUT)
    properties = {k: data_types_utils.get_metadata_value(v)
                  for k, v in execution.custom_properties.items() if not k.startswith("__")}
    if not args.stored_config:
        eval_config = make_eval_configs(configs.EVAL)[NODES[args.node]]
        if args.without_paired_change:
            for spec in eval_config.metrics_specs:
                for metric in spec.metrics:
                    if metric.class_name == RatingErrors.__name__:
                        metric.config = json.dumps({**json.loads(metric.config), "baseline": ""})
                spec.per_slice_thresholds.clear()
        properties["eval_config"] = proto_utils.proto_to_json(eval_config)

    with tempfile.TemporaryDirectory(prefix="evaluator-profile-") as tmp:
        outputs = artifacts(store, execution.id, metadata_store_pb2.Event.OUTPUT)
        for key, items in outputs.items():
            for i, artifact in enumerate(items):
                artifact.uri = os.path.join(tmp, key, str(i))
                os.makedirs(artifact.uri)
        context = evaluator_executor.Executor.Context(
            beam_pipeline_args=configs.BEAM_PIPELINE_ARGS, tmp_dir=tmp, unique_id="profile")
        profile = cProfile.Profile() if args.profile else None
        start = time.time()
        if profile:
            profile.enable()
        evaluator_executor.Executor(context).Do(inputs, outputs, properties)
        if profile:
            profile.disable()
        seconds = time.time() - start
        now = results.load_evaluation(outputs["evaluation"][0].uri)
    then = results.load_evaluation(written["evaluation"][0].uri)
    # The metrics both runs computed (a configuration without a metric leaves it out).
    differences = [abs(value - now.metrics[key][model][name])
                   for key, by_model in then.metrics.items()
                   for model, values in by_model.items() for name, value in values.items()
                   if name in now.metrics.get(key, {}).get(model, {})]
    load = os.getloadavg()[0]
    print(f"{args.node} execution {execution.id} rerun in {seconds:.1f} s (load {load:.1f}"
          f"{', under cProfile' if profile else ''}); {len(differences)} metric values, "
          f"largest difference from the stored run {max(differences, default=0):.2g}; "
          f"validation {then.validation_ok} then, {now.validation_ok} now")
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
