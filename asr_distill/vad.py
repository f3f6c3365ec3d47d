"""Voice activity detection behind one small interface: speech_regions(wave) -> list[Region].

Backends (config `vad.backend`), all Silero VAD with the silero-vad wheel's weights:
- `silero-sequence` (default): the wheel's sequence ONNX model on ONNX Runtime, a block of frames per
  call (asr_distill/silero_blocks.py); no torch in the process (a CPU job's workers skip its 2 s import);
- `silero`: the network over blocks of frames in torch, 2.4x the speed of the above on one core (the GPU
  configs, whose nodes have torch anyway); both give the stock model's probabilities to ~1e-5, and
  `speech_spans` below turns them into regions;
- `silero-onnx` / `silero-jit`: the package's own `get_speech_timestamps`, one model call per 32 ms
  frame (the reference the others are tested against; imports torch).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from asr_distill.config import VadConfig
from asr_distill.records import SAMPLE_RATE, Region
from asr_distill.silero_blocks import FRAME


class SpeechDetector(Protocol):
    def speech_regions(self, wave: np.ndarray) -> list[Region]: ...


class SileroVad:
    """Silero VAD from the silero-vad wheel (weights ship inside it; nothing is downloaded)."""

    def __init__(self, cfg: VadConfig):
        if cfg.backend == "silero-sequence":
            from asr_distill.silero_blocks import SileroSequence

            probs = SileroSequence().speech_probs
        elif cfg.backend == "silero":
            import torch

            from asr_distill.silero_blocks import SileroBlocks

            torch.set_num_threads(cfg.num_threads)
            probs = SileroBlocks().speech_probs
        else:
            self._spans = _stock_spans(cfg)
            return
        self._spans = lambda wave: speech_spans(probs(wave), len(wave), cfg)

    def speech_regions(self, wave: np.ndarray) -> list[Region]:
        spans = self._spans(np.ascontiguousarray(wave, dtype=np.float32))
        return [Region(start / SAMPLE_RATE, end / SAMPLE_RATE) for start, end in spans]


def _stock_spans(cfg: VadConfig):
    """The package's own get_speech_timestamps, one model call per frame (the reference)."""
    import silero_vad
    import torch

    torch.set_num_threads(cfg.num_threads)
    model = silero_vad.load_silero_vad(onnx=cfg.backend == "silero-onnx")

    def spans(wave: np.ndarray) -> list[tuple[int, int]]:
        stamps = silero_vad.get_speech_timestamps(
            torch.from_numpy(wave), model, threshold=cfg.threshold, sampling_rate=SAMPLE_RATE,
            min_speech_duration_ms=cfg.min_speech_ms, min_silence_duration_ms=cfg.min_silence_ms,
            speech_pad_ms=cfg.speech_pad_ms)
        return [(s["start"], s["end"]) for s in stamps]

    return spans


def speech_spans(probs: np.ndarray, n_samples: int, cfg: VadConfig) -> list[tuple[int, int]]:
    """Silero's rule from per-frame speech probabilities to (start, end) sample spans, as the silero-vad
    package applies it (with no cap on a region's length: the segmenting stage cuts to 30 s):
    - speech starts at the first frame at or above `threshold`;
    - it ends where the probability drops below threshold - 0.15 (hysteresis) and stays off for
      `min_silence_ms` (a frame at or above threshold meanwhile cancels the end);
    - regions of `min_speech_ms` or less are dropped; a region still open at the end runs to the end;
    - each side is padded by `speech_pad_ms`; where two regions are closer than twice that, the gap
      between them is split in the middle instead."""
    on, off = cfg.threshold, max(cfg.threshold - 0.15, 0.01)
    min_speech = SAMPLE_RATE * cfg.min_speech_ms / 1000
    min_silence = SAMPLE_RATE * cfg.min_silence_ms / 1000
    pad = int(SAMPLE_RATE * cfg.speech_pad_ms / 1000)
    spans: list[list[int]] = []
    start = quiet_from = None
    for i, p in enumerate(np.asarray(probs, dtype=np.float32).tolist()):
        at = i * FRAME
        if p >= on:
            quiet_from = None
            start = at if start is None else start
        elif start is not None and p < off:
            quiet_from = at if quiet_from is None else quiet_from
            if at - quiet_from >= min_silence:
                if quiet_from - start > min_speech:
                    spans.append([start, quiet_from])
                start = quiet_from = None
    if start is not None and n_samples - start > min_speech:
        spans.append([start, n_samples])
    for i, span in enumerate(spans):
        if i == 0:
            span[0] = max(0, span[0] - pad)
        if i + 1 < len(spans):
            gap = spans[i + 1][0] - span[1]
            give = gap // 2 if gap < 2 * pad else pad
            span[1] = min(n_samples, span[1] + give)
            spans[i + 1][0] = max(0, spans[i + 1][0] - give)
        else:
            span[1] = min(n_samples, span[1] + pad)
    return [(s, e) for s, e in spans]
