"""The end-of-run summary: what a run produced, read back from ML Metadata (blessing, metrics,
where the model went), and its text for the console."""

from __future__ import annotations

import dataclasses
import json
import math
import os

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import serving_check, span_drift
from components.atomic_pusher import IDENTICAL_KEY
from components.evaluation import blessing_gate, results, topk
from components.evaluation.eval_sample import SampleInfo
from components.evaluation.report_gen import (
    REPORT_FILE,
    EvaluationReport,
    format_choices,
    load_training_choices,
)
from models import features
from pipeline.pipeline import (
    BLESSED_MODEL_EVALUATOR_ID,
    BLESSING_GATE_ID,
    EVAL_SAMPLE_ID,
    EVALUATOR_ID,
    PUSHER_ID,
    REPORT_GEN_ID,
    SERVING_CHECK_ID,
    SPAN_DRIFT_ID,
    TOPK_EVALUATOR_ID,
    TRAINER_ID,
)


@dataclasses.dataclass
class RunSummary:
    run_id: str
    blessed: bool | None = None
    pushed_to: str | None = None
    # The blessed model was the version already served (pushed_to): no new version was made.
    already_served: bool = False
    # The ServingCheck's verdict on a blessed model: whether it served, and what it measured or
    # why it failed.
    served: bool | None = None
    serving_check: str = ""
    # SpanDrift's drift.json: the newest span against the previous one (empty: nothing compared).
    drift: dict = dataclasses.field(default_factory=dict)
    evaluation_uri: str | None = None
    report_path: str | None = None
    # slice name ("overall" or a genre) -> metric name -> value, of the candidate; the bias
    # baseline's and the latest blessed model's RMSE as "baseline_rmse" and "blessed_rmse".
    metrics: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    # The TopKEvaluator's metrics of the candidate, popularity and the latest blessed model.
    top_k: topk.TopKEvaluation | None = None
    # One message per failed blessing rule and slice, naming the EvalSettings field.
    failures: list[str] = dataclasses.field(default_factory=list)
    # component id -> (execution state name, wall seconds), in execution order
    components: dict[str, tuple[str, float]] = dataclasses.field(default_factory=dict)
    # What the Trainer chose on its validation data (models/trainer.py, training_choices).
    training_choices: dict | None = None
    # What the TFMA Evaluators read of the eval split (EvalSample).
    eval_sample: SampleInfo | None = None


def load_slice_metrics(evaluation_uri: str, blessed_evaluation_uri: str | None = None
                       ) -> dict[str, dict[str, float]]:
    """Evaluator outputs -> {"overall" | genre: {metric: value}} of the candidate."""
    evaluation = results.load_evaluation(evaluation_uri)
    blessed = results.load_evaluation(blessed_evaluation_uri) if blessed_evaluation_uri else None
    table: dict[str, dict[str, float]] = {}
    for key, by_model in evaluation.metrics.items():
        if key != results.OVERALL and key[0] != features.GENRES:
            continue
        row = dict(by_model.get(results.CANDIDATE, {}))
        row["baseline_rmse"] = evaluation.value(key, results.BIAS_BASELINE, results.RMSE)
        if blessed is not None and blessed.baseline == results.LATEST_BLESSED:
            row["blessed_rmse"] = blessed.value(key, results.LATEST_BLESSED, results.RMSE)
        table["overall" if key == results.OVERALL else key[1]] = row
    return table


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def component_executions(store, run_context_id: int) -> dict[str, tuple[str, float]]:
    """{component id: (state, wall seconds)} of one pipeline run, in execution order."""
    result = {}
    for execution in sorted(store.get_executions_by_context(run_context_id), key=lambda e: e.id):
        node = next(c.name.split(".")[-1] for c in store.get_contexts_by_execution(execution.id)
                    if c.type == "node")
        seconds = (execution.last_update_time_since_epoch
                   - execution.create_time_since_epoch) / 1000.0
        state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        result[node] = (state, seconds)
    return result


def node_outputs(store, run_context_id: int) -> dict[str, list[metadata_store_pb2.Artifact]]:
    """{component id: its output artifacts} in one pipeline run (cached executions included)."""
    executions = {e.id: e for e in store.get_executions_by_context(run_context_id)}
    node_of = {}
    for execution_id in executions:
        node_of[execution_id] = next(
            c.name.split(".")[-1] for c in store.get_contexts_by_execution(execution_id)
            if c.type == "node")
    artifact_ids: dict[str, list[int]] = {}
    for event in store.get_events_by_execution_ids(list(executions)):
        if event.type in (metadata_store_pb2.Event.OUTPUT,
                          metadata_store_pb2.Event.DECLARED_OUTPUT):
            artifact_ids.setdefault(node_of[event.execution_id], []).append(event.artifact_id)
    by_id = {a.id: a for a in store.get_artifacts_by_id(
        sorted({i for ids in artifact_ids.values() for i in ids}))}
    return {node: [by_id[i] for i in ids] for node, ids in artifact_ids.items()}


def _output(outputs, node: str, type_name: str):
    found = [a for a in outputs.get(node, []) if a.type == type_name]
    return max(found, key=lambda a: a.id) if found else None


def summarize_latest_run(metadata_path: str) -> RunSummary | None:
    store = open_store(metadata_path)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return None
    run = max(runs, key=lambda c: c.id)
    summary = RunSummary(run_id=run.name, components=component_executions(store, run.id))
    outputs = node_outputs(store, run.id)
    blessing = _output(outputs, BLESSING_GATE_ID, "ModelBlessing")
    if blessing is not None:
        props = blessing.custom_properties
        summary.blessed = props[blessing_gate.BLESSED_KEY].int_value == 1
        failures = props[blessing_gate.FAILURES_KEY].string_value
        summary.failures = [f for f in failures.split("\n") if f]
    drift = _output(outputs, SPAN_DRIFT_ID, "ExampleAnomalies")
    drift_path = drift and os.path.join(drift.uri, span_drift.DRIFT_FILE)
    if drift_path and os.path.exists(drift_path):
        with open(drift_path) as f:
            summary.drift = json.load(f)
    check = _output(outputs, SERVING_CHECK_ID, "InfraBlessing")
    if check is not None and summary.blessed:
        props = check.custom_properties
        summary.serving_check = props[serving_check.REASON_KEY].string_value
        summary.served = props[serving_check.BLESSED_KEY].int_value == 1
    pushed = _output(outputs, PUSHER_ID, "PushedModel")
    if pushed is not None and pushed.custom_properties["pushed"].int_value == 1:
        summary.pushed_to = pushed.custom_properties["pushed_destination"].string_value
        identical = pushed.custom_properties.get(IDENTICAL_KEY)
        summary.already_served = identical is not None and identical.int_value == 1
    evaluation = _output(outputs, EVALUATOR_ID, "ModelEvaluation")
    blessed_evaluation = _output(outputs, BLESSED_MODEL_EVALUATOR_ID, "ModelEvaluation")
    if evaluation is not None:
        summary.evaluation_uri = evaluation.uri
        summary.metrics = load_slice_metrics(
            evaluation.uri, blessed_evaluation.uri if blessed_evaluation else None)
    sample = _output(outputs, EVAL_SAMPLE_ID, "Examples")
    if sample is not None:
        summary.eval_sample = SampleInfo.load(sample.uri)
    topk_evaluation = _output(outputs, TOPK_EVALUATOR_ID, "ModelEvaluation")
    if topk_evaluation is not None:
        summary.top_k = topk.TopKEvaluation.load(topk_evaluation.uri)
    report = _output(outputs, REPORT_GEN_ID, EvaluationReport.TYPE_NAME)
    if report is not None:
        summary.report_path = os.path.join(report.uri, REPORT_FILE)
    model = _output(outputs, TRAINER_ID, "Model")
    if model is not None:
        summary.training_choices = load_training_choices(model.uri)
    return summary


def format_summary(summary: RunSummary) -> str:
    lines = [f"Run {summary.run_id}: " + ", ".join(
        f"{node} {seconds:.0f}s" + (" (cached)" if state == "CACHED" else "")
        for node, (state, seconds) in summary.components.items())]
    has_blessed = any("blessed_rmse" in m for m in summary.metrics.values())
    header = f"  {'slice':<20} {'RMSE':>7} {'MAE':>7} {'ratings':>8} {'bias':>7}" + (
        f" {'blessed':>7}" if has_blessed else "")
    rows = sorted(summary.metrics.items(),
                  key=lambda kv: (kv[0] != "overall", -kv[1].get(results.EXAMPLE_COUNT, 0)))
    if rows:
        lines.append("Eval split, candidate vs the bias baseline's RMSE"
                     + (" and the latest blessed model's" if has_blessed else "")
                     + (f" (on {summary.eval_sample.describe()})"
                        if summary.eval_sample and summary.eval_sample.sampled else "") + ":")
        lines.append(header)
    for name, m in rows:
        lines.append(f"  {name:<20} {m.get(results.RMSE, math.nan):7.4f} "
                     f"{m.get(results.MAE, math.nan):7.4f} "
                     f"{m.get(results.EXAMPLE_COUNT, 0):8,.0f} "
                     f"{m.get('baseline_rmse', math.nan):7.4f}"
                     + (f" {m.get('blessed_rmse', math.nan):7.4f}" if has_blessed else ""))
    if summary.top_k is not None:
        lines += format_top_k(summary.top_k)
    if summary.training_choices is not None:
        lines.append(format_choices(summary.training_choices))
    if summary.drift.get("features"):
        lines.append(format_drift(summary.drift))
    if summary.blessed:
        lines.append("Model BLESSED: every blessing rule holds.")
    if summary.serving_check:
        lines.append(f"Serving check {'passed' if summary.served else 'FAILED'}: "
                     f"{summary.serving_check}")
    elif summary.blessed is False:
        lines.append("Model NOT blessed. Failed:")
        lines += [f"  - {failure}" for failure in summary.failures or ["see the evaluation"]]
    if summary.already_served:
        lines.append(f"Pushed model: none new; the blessed model is already served as "
                     f"{summary.pushed_to}")
    else:
        lines.append(f"Pushed model: {summary.pushed_to}" if summary.pushed_to
                     else "Nothing was pushed in this run.")
    if summary.evaluation_uri:
        lines.append(f"Evaluation: {summary.evaluation_uri}")
    if summary.report_path:
        lines.append(f"Report: {summary.report_path}")
    return "\n".join(lines)


def format_drift(drift: dict) -> str:
    """One line: every feature's distance from the previous span and its threshold."""
    short = {span_drift.JENSEN_SHANNON: "JS", span_drift.L_INFINITY: "L-inf"}
    parts = [f"{name} {short[f['measure']]} {f['distance']:.3f} (limit {f['threshold']:g}"
             + (", ACCEPTED" if f["drifted"] else "") + ")"
             for name, f in drift["features"].items()]
    return (f"Drift from span {drift['previous_span']} to span {drift['span']}: "
            + ", ".join(parts))


def format_top_k(top_k: topk.TopKEvaluation) -> list[str]:
    """A few lines: each model's overall top-k metrics, then its NDCG per user-activity bucket."""
    k, buckets = top_k.k, top_k.buckets()[1:]
    users = ", ".join(f"{b}: {top_k.counts[b]['users']:,}" for b in buckets)
    titles = [t.format(k=k) for t in topk.METRIC_TITLES.values()]
    lines = [f"Top-{k} recommendations for the {top_k.counts[topk.OVERALL]['users']:,} users "
             f"with train and eval ratings; then NDCG@{k} by user activity ({users} users):",
             f"  {'model':<20}" + "".join(f" {t:>12}" for t in titles)
             + "".join(f" {b:>8}" for b in buckets)]
    for model in top_k.models:
        lines.append(f"  {results.MODEL_TITLES[model]:<20}"
                     + "".join(f" {top_k.value(model, topk.OVERALL, m):12.4f}"
                               for m in topk.METRIC_TITLES)
                     + "".join(f" {top_k.value(model, b, results.NDCG):8.4f}" for b in buckets))
    return lines
