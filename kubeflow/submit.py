"""Uploads the compiled pipeline to a Kubeflow Pipelines cluster and starts a run.

    python -m pipeline.kubeflow_runner                     # writes kubeflow/pipeline.json
    python -m kubeflow.submit --host https://KFP_HOST [--data-root gs://BUCKET/movielens/ml-32m]

Authentication is the kfp client's: a KFP behind an authenticating proxy takes
`--existing-token` (or KF_PIPELINES_SA_TOKEN_PATH in a cluster); `kubectl port-forward -n kubeflow
svc/ml-pipeline-ui 8080:80` and `--host http://localhost:8080` reach a cluster without one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipeline import configs
from pipeline.kubeflow_runner import DATA_ROOT_PARAMETER, PIPELINE_SPEC_FILE

REPO = configs.REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True, help="KFP API or UI endpoint")
    parser.add_argument("--pipeline-file", type=Path,
                        default=REPO / "kubeflow" / PIPELINE_SPEC_FILE)
    parser.add_argument("--data-root", help="value of the data_root runtime parameter")
    parser.add_argument("--experiment", default=configs.PIPELINE_NAME)
    parser.add_argument("--namespace", help="Kubeflow profile namespace (multi-user clusters)")
    parser.add_argument("--existing-token", help="bearer token for an authenticating proxy")
    parser.add_argument("--no-cache", action="store_true", help="disable KFP's step cache")
    args = parser.parse_args(argv)
    if not args.pipeline_file.is_file():
        print(f"error: {args.pipeline_file} not found; run `make kubeflow` first", file=sys.stderr)
        return 1

    import kfp  # imported here so that --help works without a cluster's client installed

    client = kfp.Client(host=args.host, namespace=args.namespace,
                        existing_token=args.existing_token)
    name = configs.PIPELINE_NAME
    version = time.strftime("%Y%m%d-%H%M%S")
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(str(args.pipeline_file), pipeline_name=name)
        pipeline_id = pipeline.pipeline_id
    client.upload_pipeline_version(str(args.pipeline_file), pipeline_version_name=version,
                                   pipeline_id=pipeline_id)
    arguments = {DATA_ROOT_PARAMETER: args.data_root} if args.data_root else {}
    run = client.create_run_from_pipeline_package(
        str(args.pipeline_file), arguments=arguments, run_name=f"{name}-{version}",
        experiment_name=args.experiment, namespace=args.namespace,
        enable_caching=not args.no_cache)
    print(f"Pipeline {name} version {version} uploaded; run started:")
    print(f"{args.host.rstrip('/')}/#/runs/details/{run.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
