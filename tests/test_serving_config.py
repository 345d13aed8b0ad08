"""The production container's files (serving/): they parse as what TF Serving reads, and their
names, ports and paths agree with pipeline/configs.py and with each other.

No Docker or TF Serving binary here, so these are static checks; tests/test_serving.py runs the
development server and the clients for real.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from models import contract
from pipeline import configs

SERVING_DIR = configs.REPO_ROOT / "serving"
SERVING = configs.SERVING


def _pinned(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)", (configs.REPO_ROOT / "requirements.txt")
                      .read_text(), re.MULTILINE)
    assert match, f"{package} is not pinned in requirements.txt"
    return match.group(1)


def _message_classes() -> dict[str, type]:
    """MonitoringConfig and BatchingParameters, whose .proto files tensorflow-serving-api does not
    ship: the fields TF Serving 2.16 defines (tensorflow_serving/config/monitoring_config.proto,
    servables/tensorflow/session_bundle_config.proto), so that text_format rejects any other."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(wrappers_pb2.DESCRIPTOR.serialized_pb))
    f = descriptor_pb2.FileDescriptorProto(name="tf_serving_subset.proto",
                                           package="tensorflow.serving", syntax="proto3",
                                           dependency=["google/protobuf/wrappers.proto"])
    field = descriptor_pb2.FieldDescriptorProto
    optional, repeated = field.LABEL_OPTIONAL, field.LABEL_REPEATED

    def add(message, fields):
        m = f.message_type.add(name=message)
        for number, (name, ftype, type_name, label) in enumerate(fields, start=1):
            m.field.add(name=name, number=number, type=ftype, label=label,
                        **({"type_name": type_name} if type_name else {}))

    add("PrometheusConfig", [("enable", field.TYPE_BOOL, None, optional),
                             ("path", field.TYPE_STRING, None, optional)])
    add("MonitoringConfig", [("prometheus_config", field.TYPE_MESSAGE,
                              ".tensorflow.serving.PrometheusConfig", optional)])
    int64_value = ".google.protobuf.Int64Value"
    add("BatchingParameters", [
        ("max_batch_size", field.TYPE_MESSAGE, int64_value, optional),
        ("batch_timeout_micros", field.TYPE_MESSAGE, int64_value, optional),
        ("max_enqueued_batches", field.TYPE_MESSAGE, int64_value, optional),
        ("num_batch_threads", field.TYPE_MESSAGE, int64_value, optional),
        ("thread_pool_name", field.TYPE_MESSAGE, ".google.protobuf.StringValue", optional),
        ("allowed_batch_sizes", field.TYPE_INT64, None, repeated),
        ("pad_variable_length_inputs", field.TYPE_BOOL, None, optional),
    ])
    pool.Add(f)
    factory = message_factory.MessageFactory(pool)
    return {name: factory.GetPrototype(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
            for name in ("MonitoringConfig", "BatchingParameters")}


MESSAGES = _message_classes()


def _dockerfile() -> tuple[str, list[str], list[str], list[str]]:
    """(base image, COPY sources, EXPOSE ports, ENTRYPOINT + CMD) of serving/Dockerfile."""
    text = (SERVING_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip()
             and not line.strip().startswith("#")]
    instructions = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]
    base = [arg for op, arg in instructions if op == "FROM"]
    assert len(base) == 1, "one stage: the official TF Serving image plus configuration"
    copies = [shlex.split(arg)[:-1] for op, arg in instructions if op == "COPY"]
    exposed = [p for op, arg in instructions if op == "EXPOSE" for p in arg.split()]
    command = [a for op, arg in instructions if op in ("ENTRYPOINT", "CMD")
               for a in json.loads(arg)]  # exec form only: no shell between Docker and the server
    return base[0], [s for c in copies for s in c], exposed, command


def _flags(command: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in command if a.startswith("--"))


def test_the_image_is_the_official_gpu_serving_image_of_our_tensorflow_version():
    base, _, _, _ = _dockerfile()
    serving_api = _pinned("tensorflow-serving-api")
    assert base == f"tensorflow/serving:{serving_api}-gpu"
    # TF Serving releases follow TensorFlow's: same major.minor as the TensorFlow we train with.
    assert serving_api.split(".")[:2] == _pinned("tensorflow").split(".")[:2]


def test_the_server_flags_use_our_ports_and_the_copied_config_files():
    _, copied, exposed, command = _dockerfile()
    assert command[0] == "/usr/bin/tensorflow_model_server"
    flags = _flags(command)
    assert int(flags["port"]) == SERVING.grpc_port
    assert int(flags["rest_api_port"]) == SERVING.rest_port
    assert sorted(exposed) == sorted([str(SERVING.grpc_port), str(SERVING.rest_port)])
    assert flags["enable_batching"] == "true" and flags["enable_model_warmup"] == "true"
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        path = Path(flags[flag])
        assert str(path.parent) == SERVING.container_config_dir, flag
        assert path.name in copied, f"{flag}: {path.name} is not copied into the image"
        assert (SERVING_DIR / path.name).is_file(), f"{flag}: serving/{path.name} is missing"


def test_models_config_parses_as_model_server_config_for_our_model():
    config = text_format.Parse((SERVING_DIR / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == contract.MODEL_NAME
    assert model.base_path == SERVING.container_model_base_path
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 1


def test_batching_parameters_parse_and_fit_our_requests():
    params = text_format.Parse((SERVING_DIR / "batching_parameters.txt").read_text(),
                               MESSAGES["BatchingParameters"]())
    # A request bigger than max_batch_size is rejected: the benchmark's 100-pair requests and a
    # client's recommend for a page of users must fit.
    assert params.max_batch_size.value >= 1000
    # The development server refuses a larger request the same way.
    assert params.max_batch_size.value == SERVING.max_batch_size
    assert 0 < params.batch_timeout_micros.value <= 2000  # bounded latency cost for a lone request
    assert params.num_batch_threads.value >= 1
    assert params.max_enqueued_batches.value >= 1
    if params.allowed_batch_sizes:
        assert list(params.allowed_batch_sizes) == sorted(params.allowed_batch_sizes)
        assert params.allowed_batch_sizes[-1] == params.max_batch_size.value


def test_monitoring_config_exposes_prometheus_at_the_configured_path():
    config = text_format.Parse((SERVING_DIR / "monitoring.config").read_text(),
                               MESSAGES["MonitoringConfig"]())
    assert config.prometheus_config.enable
    assert config.prometheus_config.path == SERVING.prometheus_path


def test_text_protos_with_unknown_fields_are_rejected():
    # The checks above are only worth something if a misspelt field fails to parse.
    with pytest.raises(text_format.ParseError, match="max_batch_sise"):
        text_format.Parse("max_batch_sise { value: 1 }", MESSAGES["BatchingParameters"]())
    with pytest.raises(text_format.ParseError):
        text_format.Parse("model_config_list { config { nme: 'x' } }",
                          model_server_config_pb2.ModelServerConfig())


def test_docker_compose_mounts_the_pushed_models_and_requests_a_gpu():
    compose = yaml.safe_load((SERVING_DIR / "docker-compose.yml").read_text())
    (service,) = compose["services"].values()
    assert service["build"]["context"] == "."
    assert sorted(service["ports"]) == sorted(
        [f"{SERVING.grpc_port}:{SERVING.grpc_port}", f"{SERVING.rest_port}:{SERVING.rest_port}"])
    (volume,) = service["volumes"]
    source, target, mode = volume.split(":")
    assert (SERVING_DIR / source).resolve() == configs.SERVING_MODEL_DIR.resolve()
    assert target == SERVING.container_model_base_path and mode == "ro"
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert device["count"] >= 1
    base = _dockerfile()[0]
    assert service["image"].split(":")[1] == base.split(":")[1]  # tag follows the base image
    # The image's own flags run: compose must not replace them with flags of its own.
    assert "command" not in service and "entrypoint" not in service


def _k8s() -> dict[str, dict]:
    docs = [d for p in sorted((SERVING_DIR / "k8s").glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d]
    return {d["kind"]: d for d in docs}


def test_kubernetes_deployment_requests_a_gpu_and_probes_the_model_status():
    deployment = _k8s()["Deployment"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    assert container["image"].endswith(":" + _dockerfile()[0].split(":")[1])
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": SERVING.grpc_port, "rest": SERVING.rest_port}
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == f"/v1/models/{contract.MODEL_NAME}"
    assert ports.get(probe["port"], probe["port"]) == SERVING.rest_port
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == SERVING.container_model_base_path and mount["readOnly"]
    assert mount["name"] in {v["name"] for v in pod["spec"]["volumes"]}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == SERVING.prometheus_path
    assert int(annotations["prometheus.io/port"]) == SERVING.rest_port


def test_kubernetes_service_exposes_grpc_and_rest_of_the_deployment_pods():
    manifests = _k8s()
    service, deployment = manifests["Service"], manifests["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"grpc": (SERVING.grpc_port, "grpc"), "rest": (SERVING.rest_port, "rest")}
