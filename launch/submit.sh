#!/bin/sh
# Submit a distillation job through a Beam job server (Flink or Spark: the job server decides; see
# launch/README.md).
#   launch/submit.sh INDEX OUTPUT [CONFIG]
# From outside the cluster, port-forward the job server first, e.g.
#   kubectl port-forward svc/beam-flink-job-server 8099 8098    (or svc/beam-spark-job-server)
# PARALLELISM (Flink): task managers x slots (32 in launch/flink/flink-session.yaml); Beam's job server
# reads no parallelism.default, and without --parallelism every step runs at parallelism 1.
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
  --parallelism="${PARALLELISM:-32}" \
  ${EXTRA_BEAM_ARGS:-}
