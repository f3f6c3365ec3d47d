"""launch/modal/train_retriever.py, imported with the `modal` package (no network, no Modal account):
the settings it gives Modal, and its own logic (resume on every attempt, a commit per checkpoint)."""

import importlib
import sys
import threading
import time
from pathlib import Path

import modal
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def launch(monkeypatch):
    """The module, imported fresh, with what it asked of modal.App.function and of the image."""
    asked = {"function": [], "requirements": []}
    function, requirements = modal.App.function, modal.Image.pip_install_from_requirements

    def record_function(self, **kwargs):
        asked["function"].append(kwargs)
        return function(self, **kwargs)

    def record_requirements(self, path, *args, **kwargs):
        asked["requirements"].append(Path(path))
        return requirements(self, path, *args, **kwargs)

    monkeypatch.setattr(modal.App, "function", record_function)
    monkeypatch.setattr(modal.Image, "pip_install_from_requirements", record_requirements)
    monkeypatch.syspath_prepend(str(ROOT / "launch" / "modal"))
    sys.modules.pop("train_retriever", None)
    module = importlib.import_module("train_retriever")
    yield module, asked
    sys.modules.pop("train_retriever", None)


def test_the_modal_app_asks_for_eight_h200s_a_volume_and_retries(launch):
    module, asked = launch
    assert isinstance(module.app, modal.App)
    (kwargs,) = asked["function"]
    assert kwargs["gpu"] == "H200:8"
    assert kwargs["volumes"] == {"/data": module.volume}
    assert isinstance(kwargs["retries"], modal.Retries) and kwargs["retries"].max_retries >= 3
    assert kwargs["timeout"] >= 12 * 3600  # a long training run is not cut at Modal's 5-minute default
    assert asked["requirements"] == [ROOT / "requirements.txt", ROOT / "requirements-retriever.txt"]
    # every attempt runs torchrun on all 8 GPUs and resumes from the Volume's last checkpoint if any
    assert module.torchrun_command("retriever.yaml") == [
        "torchrun", "--nproc-per-node=8", "-m", "asr_distill.retrieval.train", "--config", "retriever.yaml",
        "--resume"]


def test_each_new_checkpoint_is_committed_to_the_volume(launch, tmp_path, monkeypatch):
    module, _asked = launch
    commits = []
    monkeypatch.setattr(module, "volume", type("Volume", (), {"commit": lambda self: commits.append(time.time())})())
    monkeypatch.setattr(module, "COMMIT_POLL_S", 0.05)
    run = tmp_path / "retriever-run"
    stop = threading.Event()
    watcher = threading.Thread(target=module._commit_new_checkpoints, args=(run, stop))
    watcher.start()
    try:
        time.sleep(0.3)
        assert commits == []  # nothing written, nothing committed
        run.mkdir()
        (run / "metrics.jsonl").write_text("{}\n")
        time.sleep(0.3)
        assert commits == []  # only checkpoints count
        (run / "last.pt").write_bytes(b"epoch 1")
        deadline = time.monotonic() + 5
        while not commits and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(commits) == 1
        time.sleep(0.3)
        assert len(commits) == 1  # committed once, not on every poll
    finally:
        stop.set()
        watcher.join()
