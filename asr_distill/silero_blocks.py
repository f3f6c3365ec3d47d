"""Silero VAD's network run over many frames per call, with the weights of the silero-vad wheel.

The stock way (`get_speech_timestamps`) calls the model once per 32 ms frame (512 samples plus 64 of
context), so Python and runtime overhead dominate. Only the LSTM depends on the previous frame; the
STFT and the four convolutions see one frame each. Here those run batched over a block of frames (the
STFT as an FFT: Silero's STFT basis is a periodic-Hann-windowed DFT), the LSTM runs over the block
inside torch's fused loop, and the state carries to the next block. Per-frame probabilities match
the stock model to ~1e-5 (tests/test_vad.py); asr_distill/vad.py turns them into timestamps.

`SileroSequence` is the same framing through the wheel's own sequence ONNX model (one ONNX Runtime
call per block, the LSTM inside it): no torch at all, so a CPU job's processes never import it (about
2 CPU-s each), at ~40% of the blocks' speed (630 against 1480 audio-s per CPU-s, one core).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

FRAME = 512  # samples per frame at 16 kHz
CONTEXT = 64  # samples of the previous frame each frame sees
N_FFT, HOP = 256, 128
REFLECT = 64  # the model pads each frame on the right by reflection before its STFT


class SileroBlocks:
    def __init__(self, block_frames: int = 2048):
        import torch

        self._torch = torch
        self._block = block_frames
        weights = torch.jit.load(str(wheel_file("silero_vad.jit")), map_location="cpu")._model.state_dict()
        basis = weights["stft.forward_basis_buffer"][0, 0]  # row 0 of the DFT basis is the window itself
        self._window = basis.clone()
        self._convs = [(weights[f"encoder.{i}.reparam_conv.weight"], weights[f"encoder.{i}.reparam_conv.bias"],
                        stride) for i, stride in enumerate((1, 2, 2, 1))]
        self._lstm = torch.nn.LSTM(128, 128)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self._lstm, f"{name}_l0").copy_(weights[f"decoder.rnn.{name}"])
        self._out_w = weights["decoder.decoder.2.weight"][:, :, 0]  # (1, 128)
        self._out_b = weights["decoder.decoder.2.bias"]
        # Where each of a frame's 4 STFT windows reads in the frame's 576 samples (the reflected tail
        # included), so one gather builds every window of a block.
        padded = np.r_[np.arange(CONTEXT + FRAME), CONTEXT + FRAME - 2 - np.arange(REFLECT)]
        starts = np.arange(0, len(padded) - N_FFT + 1, HOP)
        self._gather = torch.from_numpy(padded[starts[:, None] + np.arange(N_FFT)])  # (4, 256)

    def speech_probs(self, wave: np.ndarray) -> np.ndarray:
        """One speech probability per 512-sample frame (the last frame zero-padded)."""
        torch = self._torch
        frames = -(-len(wave) // FRAME)
        out, state = [], None
        with torch.inference_mode():
            for first in range(0, frames, self._block):
                last = min(frames, first + self._block)
                x = torch.from_numpy(block_samples(wave, first, last)).unfold(0, CONTEXT + FRAME, FRAME)
                h, state = self._lstm(self._features(x).unsqueeze(1), state)
                logits = torch.nn.functional.relu(h[:, 0]) @ self._out_w.T + self._out_b
                out.append(torch.sigmoid(logits).reshape(-1))
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

    def _features(self, frames):
        torch = self._torch
        F = torch.nn.functional
        windows = frames[:, self._gather] * self._window  # (n, 4, 256)
        x = torch.fft.rfft(windows, dim=-1).abs().transpose(1, 2)  # (n, 129, 4)
        for weight, bias, stride in self._convs:
            x = F.relu(F.conv1d(x, weight, bias, stride=stride, padding=1))
        return x[:, :, 0]  # (n, 128)


class SileroSequence:
    """Silero VAD through the wheel's sequence ONNX model (`silero_vad_16k_sequence.onnx`: frames of 576
    samples in, one probability each out, the LSTM state passed from call to call), on ONNX Runtime."""

    def __init__(self, block_frames: int = 2048):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = options.intra_op_num_threads = 1  # the front end: one core per process
        self._session = onnxruntime.InferenceSession(str(wheel_file("silero_vad_16k_sequence.onnx")), options,
                                                     providers=["CPUExecutionProvider"])
        self._block = block_frames

    def speech_probs(self, wave: np.ndarray) -> np.ndarray:
        """One speech probability per 512-sample frame (the last frame zero-padded)."""
        frames = -(-len(wave) // FRAME)
        out = []
        h = c = np.zeros((1, 1, 128), np.float32)
        rows = np.arange(CONTEXT + FRAME)
        for first in range(0, frames, self._block):
            last = min(frames, first + self._block)
            block = block_samples(wave, first, last)
            x = block[np.arange(last - first)[:, None] * FRAME + rows]  # (frames, 576), each with its context
            probs, h, c = self._session.run(None, {"input": x, "h": h, "c": c})
            out.append(probs.reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def block_samples(wave: np.ndarray, first: int, last: int) -> np.ndarray:
    """Frames first..last-1 with the 64 samples before them (zeros before the start and past the end);
    a block at a time, so an hour of audio is never copied whole."""
    start = first * FRAME - CONTEXT
    block = np.zeros(CONTEXT + (last - first) * FRAME, np.float32)
    piece = wave[max(start, 0): last * FRAME]
    block[max(-start, 0): max(-start, 0) + len(piece)] = piece
    return block


def wheel_file(name: str) -> Path:
    """A model file of the silero-vad wheel, found without importing the package (its __init__ imports
    torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the silero-vad package is not installed (pip install silero-vad)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    if not path.is_file():
        raise RuntimeError(f"{path}: not in the installed silero-vad wheel")
    return path
