#!/bin/sh
# Submit a distillation job to the Flink session cluster through Beam's job server (launch/README.md).
#   launch/flink/submit.sh INDEX OUTPUT [CONFIG]      e.g. oss://bucket/index.parquet oss://bucket/out
# JOB_SERVER defaults to the in-cluster service; from outside, port-forward it:
#   kubectl port-forward svc/beam-flink-job-server 8099 8098
set -eu
INDEX=$1
OUTPUT=$2
CONFIG=${3:-launch/config/h200.yaml}
JOB_SERVER=${JOB_SERVER:-localhost}
exec python -m beam_pipeline \
  --input_index="$INDEX" --output="$OUTPUT" --config="$CONFIG" \
  --runner=PortableRunner \
  --job_endpoint="$JOB_SERVER:8099" --artifact_endpoint="$JOB_SERVER:8098" \
  --environment_type=EXTERNAL --environment_config=localhost:50000 --sdk_worker_parallelism=4 \
  ${EXTRA_BEAM_ARGS:-}
