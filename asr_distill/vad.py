"""Voice activity detection behind one small interface: speech_regions(wave) -> list[Region]."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from asr_distill.config import VadConfig
from asr_distill.records import SAMPLE_RATE, Region


class SpeechDetector(Protocol):
    def speech_regions(self, wave: np.ndarray) -> list[Region]: ...


class SileroVad:
    """Silero VAD from the silero-vad wheel (weights ship inside it; nothing is downloaded)."""

    def __init__(self, cfg: VadConfig):
        import torch
        from silero_vad import get_speech_timestamps, load_silero_vad

        self._cfg = cfg
        self._torch = torch
        self._get_speech_timestamps = get_speech_timestamps
        torch.set_num_threads(cfg.num_threads)
        self._model = load_silero_vad(onnx=cfg.backend == "silero-onnx")

    def speech_regions(self, wave: np.ndarray) -> list[Region]:
        cfg = self._cfg
        stamps = self._get_speech_timestamps(
            self._torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
            self._model,
            threshold=cfg.threshold,
            sampling_rate=SAMPLE_RATE,
            min_speech_duration_ms=cfg.min_speech_ms,
            min_silence_duration_ms=cfg.min_silence_ms,
            speech_pad_ms=cfg.speech_pad_ms,
        )
        return [Region(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]
