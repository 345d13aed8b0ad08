"""What a run produced, read back from ML Metadata: blessing, metrics, where the model went."""

from __future__ import annotations

import dataclasses
import math

import tensorflow_model_analysis as tfma
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from models import features

HEADLINE_METRICS = ("root_mean_squared_error", "mean_absolute_error", "example_count")


@dataclasses.dataclass
class RunSummary:
    run_id: str
    blessed: bool | None = None
    pushed_to: str | None = None
    evaluation_uri: str | None = None
    # slice name ("overall" or a genre) -> metric name -> value
    metrics: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    failures: list[str] = dataclasses.field(default_factory=list)
    # component id -> (execution state name, wall seconds), in execution order
    components: dict[str, tuple[str, float]] = dataclasses.field(default_factory=dict)


def _latest(store, context_id: int, type_name: str):
    artifacts = [a for a in store.get_artifacts_by_context(context_id)
                 if a.type == type_name]
    return max(artifacts, key=lambda a: a.id) if artifacts else None


def load_slice_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """TFMA output -> {"overall" | genre: {metric: value}} for the headline metrics."""
    result = tfma.load_eval_result(evaluation_uri)
    table: dict[str, dict[str, float]] = {}
    for slice_key, by_output in result.slicing_metrics:
        if not slice_key:
            name = "overall"
        elif len(slice_key) == 1 and slice_key[0][0] == features.GENRES:
            value = slice_key[0][1]
            name = value.decode() if isinstance(value, bytes) else str(value)
        else:
            continue
        values = by_output.get("", {}).get("", {})
        table[name] = {m: float(v.get("doubleValue", math.nan)) for m, v in values.items()
                       if m in HEADLINE_METRICS}
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


def summarize_latest_run(metadata_path: str) -> RunSummary | None:
    store = open_store(metadata_path)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return None
    run = max(runs, key=lambda c: c.id)
    summary = RunSummary(run_id=run.name, components=component_executions(store, run.id))
    blessing = _latest(store, run.id, "ModelBlessing")
    if blessing is not None:
        summary.blessed = blessing.custom_properties["blessed"].int_value == 1
    pushed = _latest(store, run.id, "PushedModel")
    if pushed is not None and pushed.custom_properties["pushed"].int_value == 1:
        summary.pushed_to = pushed.custom_properties["pushed_destination"].string_value
    evaluation = _latest(store, run.id, "ModelEvaluation")
    if evaluation is not None:
        summary.evaluation_uri = evaluation.uri
        summary.metrics = load_slice_metrics(evaluation.uri)
        validation = tfma.load_validation_result(evaluation.uri)
        for per_slice in validation.metric_validations_per_slice:
            for failure in per_slice.failures:
                summary.failures.append(
                    f"{failure.metric_key.name} = {failure.metric_value.double_value.value:.4f} "
                    f"fails {failure.metric_threshold}".replace("\n", " "))
    return summary


def format_summary(summary: RunSummary) -> str:
    lines = [f"Run {summary.run_id}: " + ", ".join(
        f"{node} {seconds:.0f}s" + (" (cached)" if state == "CACHED" else "")
        for node, (state, seconds) in summary.components.items())]
    overall = summary.metrics.get("overall")
    if overall:
        lines.append("Eval split, overall: RMSE {:.4f}  MAE {:.4f}  ({:,.0f} ratings)".format(
            overall.get("root_mean_squared_error", math.nan),
            overall.get("mean_absolute_error", math.nan), overall.get("example_count", 0)))
    genres = sorted(((k, v) for k, v in summary.metrics.items() if k != "overall"),
                    key=lambda kv: -kv[1].get("example_count", 0))
    if genres:
        lines.append(f"  {'genre':<20} {'RMSE':>7} {'MAE':>7} {'ratings':>8}")
        for name, m in genres:
            lines.append(f"  {name:<20} {m.get('root_mean_squared_error', math.nan):7.4f} "
                         f"{m.get('mean_absolute_error', math.nan):7.4f} "
                         f"{m.get('example_count', 0):8,.0f}")
    if summary.blessed:
        lines.append("Model BLESSED by the Evaluator.")
    elif summary.blessed is False:
        lines.append("Model NOT blessed: " + ("; ".join(summary.failures) or "see the evaluation"))
    lines.append(f"Pushed model: {summary.pushed_to}" if summary.pushed_to
                 else "Nothing was pushed in this run.")
    if summary.evaluation_uri:
        lines.append(f"Evaluation: {summary.evaluation_uri}")
    return "\n".join(lines)
