"""The Kubeflow compile: a KFP v2 spec of the same pipeline the local runner runs."""

import dataclasses
import importlib
import json

import pipelines
import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.components.base import base_executor

from pipeline import configs, kubeflow_runner
from pipeline import pipeline as pl

SETTINGS = dataclasses.replace(
    configs.KUBEFLOW,
    pipeline_root="gs://test-bucket/tfx_output/movielens-tfx",
    data_root="gs://test-bucket/movielens/ml-latest-small",
    serving_model_dir="gs://test-bucket/serving_model/movielens",
    image="registry.example.com/movielens-tfx:test",
    beam_pipeline_args=("--runner=DataflowRunner", "--project=p", "--region=r",
                        "--temp_location=gs://test-bucket/tmp"),
    trainer_gpus=1,
)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kubeflow")
    spec_path = kubeflow_runner.compile_pipeline(SETTINGS, out)
    spec = json_format.ParseDict(json.loads(spec_path.read_text()),
                                 pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    job = json.loads((out / kubeflow_runner.PIPELINE_JOB_FILE).read_text())
    return spec, job


@pytest.fixture(scope="module")
def local_pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    return pipelines.local_pipeline(root / "data", root)


def executors(spec):
    deployment = json_format.MessageToDict(spec.deployment_spec)
    return deployment["executors"]


# KFP v2 compiles the latest-blessed-model Resolver into two tasks: the latest blessing, then its
# model, which is what the BlessedModelEvaluator reads.
RESOLVER_TASKS = {f"{pl.BLESSED_MODEL_RESOLVER_ID}-model-blessing-resolver",
                  f"{pl.BLESSED_MODEL_RESOLVER_ID}-model-resolver"}


def kfp_task(node_id):
    return f"{node_id}-model-resolver" if node_id == pl.BLESSED_MODEL_RESOLVER_ID else node_id


def test_every_local_component_is_a_task_with_the_same_dependencies(compiled, local_pipeline):
    spec, _ = compiled
    tasks = spec.root.dag.tasks
    ids = {c.id for c in local_pipeline.components}
    assert set(tasks) == ids - {pl.BLESSED_MODEL_RESOLVER_ID} | RESOLVER_TASKS
    for component in local_pipeline.components:
        if component.id == pl.BLESSED_MODEL_RESOLVER_ID:
            continue
        upstream = {kfp_task(node.id) for node in component.upstream_nodes}
        assert set(tasks[component.id].dependent_tasks) == upstream, component.id
    # Nothing trains on bad data; only the gate's verdict pushes.
    assert pl.ANOMALIES_GATE_ID in tasks[pl.TRANSFORM_ID].dependent_tasks
    assert pl.BLESSING_GATE_ID in tasks[pl.PUSHER_ID].dependent_tasks


def test_every_step_runs_the_pipeline_image_and_its_executor_imports(compiled):
    spec, _ = compiled
    for name, executor in executors(spec).items():
        if "resolver" in executor:  # resolved by the KFP backend: no container
            assert name.startswith(f"{pl.BLESSED_MODEL_RESOLVER_ID}-"), name
            continue
        container = executor["container"]
        assert container["image"] == SETTINGS.image, name
        args = container["args"]
        class_path = args[args.index("--executor_class_path") + 1]
        module, _, attr = class_path.rpartition(".")
        executor_class = getattr(importlib.import_module(module), attr)
        # What the step's container will instantiate: a TFX executor, not any importable name.
        assert isinstance(executor_class, type), class_path
        assert issubclass(executor_class, base_executor.BaseExecutor), class_path


def test_module_functions_and_beam_args_reach_the_components(compiled):
    spec, _ = compiled
    params = {name: task.inputs.parameters for name, task in spec.root.dag.tasks.items()}

    def constant(task, key):
        value = params[task][key].runtime_value
        return value.constant_value.string_value or value.constant.string_value

    assert constant(pl.TRAINER_ID, "run_fn") == configs.RUN_FN
    assert constant(pl.TRANSFORM_ID, "preprocessing_fn") == configs.PREPROCESSING_FN
    for fn in (configs.RUN_FN, configs.PREPROCESSING_FN):
        module, _, attr = fn.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attr))
    assert constant(pl.SCHEMA_GEN_ID, "schema_file") == SETTINGS.schema_path
    pusher = json.loads(constant(pl.PUSHER_ID, "push_destination"))
    assert pusher["filesystem"]["base_directory"] == SETTINGS.serving_model_dir
    example_gen = executors(spec)["MovieLensExampleGen_executor"]["container"]
    assert "--runner=DataflowRunner" in example_gen["args"]
    # The file-fingerprinting driver runs before KFP's cache check, as it does locally.
    driver = example_gen["lifecycle"]["preCacheCheck"]
    assert driver["command"][-1] == "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"
    assert "--runner=DataflowRunner" in driver["args"]


def test_data_root_is_a_runtime_parameter_of_the_example_gen(compiled):
    spec, job = compiled
    param = kubeflow_runner.DATA_ROOT_PARAMETER
    assert spec.root.input_definitions.parameters[param].default_value.string_value == \
        SETTINGS.data_root
    input_base = spec.root.dag.tasks[pl.EXAMPLE_GEN_ID].inputs.parameters["input_base"]
    assert input_base.component_input_parameter == param
    defaults = job["runtimeConfig"]["parameterValues"]
    assert defaults[param] == SETTINGS.data_root
    assert job["runtimeConfig"]["gcsOutputDirectory"] == SETTINGS.pipeline_root


def test_the_trainer_asks_for_a_gpu(compiled):
    spec, _ = compiled
    resources = executors(spec)["Trainer_executor"]["container"]["resources"]
    assert resources["accelerator"] == {"type": "nvidia.com/gpu", "count": "1"}
    for name, executor in executors(spec).items():
        if name != "Trainer_executor" and "container" in executor:
            assert "accelerator" not in executor["container"].get("resources", {}), name


def test_the_command_line_takes_beam_args_as_one_string(tmp_path):
    assert kubeflow_runner.main([
        "--image", "registry.example.com/movielens-tfx:cli",
        "--beam-pipeline-args", "--runner=DataflowRunner --project=p --region=r",
        "--output-dir", str(tmp_path)]) == 0
    spec = json.loads((tmp_path / kubeflow_runner.PIPELINE_SPEC_FILE).read_text())
    args = spec["deploymentSpec"]["executors"]["Transform_executor"]["container"]["args"]
    assert {"--runner=DataflowRunner", "--project=p", "--region=r"} <= set(args)


def test_in_spans_the_trainer_warm_starts_from_the_latest_blessed_model(tmp_path):
    spec_path = kubeflow_runner.compile_pipeline(
        dataclasses.replace(SETTINGS, span_window=4), tmp_path)
    tasks = json.loads(spec_path.read_text())["root"]["dag"]["tasks"]
    trainer = tasks[pl.TRAINER_ID]
    assert kfp_task(pl.BLESSED_MODEL_RESOLVER_ID) in trainer["dependentTasks"]
    assert trainer["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]["producerTask"] \
        == kfp_task(pl.BLESSED_MODEL_RESOLVER_ID)
    # The baseline always trains from scratch; so does a flat data root (the default above).
    assert "base_model" not in tasks[pl.BASELINE_TRAINER_ID]["inputs"]["artifacts"]


def test_a_flat_data_root_trains_from_scratch(compiled):
    spec, _ = compiled
    assert "base_model" not in spec.root.dag.tasks[pl.TRAINER_ID].inputs.artifacts
