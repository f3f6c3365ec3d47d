"""Voice activity detection behind one small interface: speech_regions(wave) -> list[Region].

Backends (config `vad.backend`), all Silero VAD from the silero-vad wheel, all turned into timestamps by
the package's own state machine:
- `silero` (default): the network over blocks of frames per call (asr_distill/silero_blocks.py), ~10x
  the stock loop on one core, same probabilities to ~1e-5;
- `silero-sequence`: the wheel's sequence ONNX model (one call per 512 frames);
- `silero-onnx` / `silero-jit`: the stock `get_speech_timestamps`, one model call per 32 ms frame (the
  reference the others are tested against).
"""

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
        import silero_vad

        self._cfg = cfg
        self._torch = torch
        self._silero = silero_vad
        torch.set_num_threads(cfg.num_threads)
        if cfg.backend == "silero":
            from asr_distill.silero_blocks import SileroBlocks

            self._probs = SileroBlocks().speech_probs
        elif cfg.backend == "silero-sequence":
            self._probs = silero_vad.load_silero_vad(sequence=True).audio_forward
        else:
            self._probs = None
            self._model = silero_vad.load_silero_vad(onnx=cfg.backend == "silero-onnx")

    def _options(self) -> dict:
        cfg = self._cfg
        return dict(threshold=cfg.threshold, sampling_rate=SAMPLE_RATE, min_speech_duration_ms=cfg.min_speech_ms,
                    min_silence_duration_ms=cfg.min_silence_ms, speech_pad_ms=cfg.speech_pad_ms)

    def speech_regions(self, wave: np.ndarray) -> list[Region]:
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        if self._probs is None:
            stamps = self._silero.get_speech_timestamps(self._torch.from_numpy(wave), self._model,
                                                        **self._options())
        else:
            stamps = self._silero.get_speech_timestamps_from_probs(
                self._probs(wave), audio_length_samples=len(wave), **self._options())
        return [Region(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]
