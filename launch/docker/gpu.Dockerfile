# GPU worker image: CUDA runtime, vLLM (its own torch build), Beam's SDK harness and this package.
# Runs the whole pipeline on GPU nodes: the CPU stages on the node's cores, inference on its GPUs.
# Build from the repository root:
#   docker build -f launch/docker/gpu.Dockerfile -t asr-distill-gpu:0.1.0 .
# Model weights are not baked in: mount them (e.g. /models/Qwen2-Audio-7B-Instruct) and set
# inference.model in the job's config (launch/config/h200.yaml).

# Beam's boot binary (the SDK harness entrypoint, also the worker pool) comes from the SDK image.
FROM apache/beam_python3.12_sdk:2.77.0 AS beam

FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3.12 python3.12-venv \
 && rm -rf /var/lib/apt/lists/*
# The worker pool starts SDK workers with `python` from PATH: the venv's comes first.
RUN python3.12 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ASR_DISTILL_CACHE=/opt/asr-distill/models HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1
WORKDIR /opt/asr-distill

# vLLM first: it pins its CUDA torch build; the CPU requirements then go in without their CPU torch pin.
COPY requirements.txt requirements-gpu.txt ./
RUN pip install -r requirements-gpu.txt \
 && grep -v '^torch==' requirements.txt > /tmp/requirements-no-torch.txt \
 && pip install -r /tmp/requirements-no-torch.txt

COPY setup.py README.md ./
COPY asr_distill ./asr_distill
COPY transforms ./transforms
COPY beam_pipeline ./beam_pipeline
RUN pip install --no-deps . && python -m asr_distill.models

COPY --from=beam /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]
