# CPU worker image: Beam's Python 3.11 SDK harness + this package + the embedded Whisper base model.
# Runs decode, VAD, segmenting (and faster-whisper jobs). Build from the repository root:
#   docker build -f launch/docker/cpu.Dockerfile -t asr-distill-cpu:0.1.0 .
# As a worker-pool sidecar its command is `python -m beam_pipeline.worker_pool --service_port=50000`
# (see launch/flink, launch/spark).
# PIP_EXTRA_INDEX_URL may name a CPU-only torch index to keep the image small (none is named here).
FROM apache/beam_python3.11_sdk:2.77.0

ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 ASR_DISTILL_CACHE=/opt/asr-distill/models
WORKDIR /opt/asr-distill

COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY setup.py README.md ./
COPY asr_distill ./asr_distill
COPY transforms ./transforms
COPY beam_pipeline ./beam_pipeline
RUN pip install --no-deps . && python -m asr_distill.models

# The SDK image's entrypoint: `boot` starts an SDK worker, or a pool of them with --worker_pool.
ENTRYPOINT ["/opt/apache/beam/boot"]
