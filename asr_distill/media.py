"""Decode any audio or video container to float32 16 kHz mono with PyAV (FFmpeg bundled in the wheel)."""

from __future__ import annotations

from typing import BinaryIO, Optional, Union

import av
import numpy as np

from asr_distill.records import SAMPLE_RATE


class DecodeError(Exception):
    """A file that could not be turned into audio samples."""


class NoAudioStreamError(DecodeError):
    pass


class EmptyAudioError(DecodeError):
    pass


class TooLongError(DecodeError):
    pass


class TooShortError(DecodeError):
    pass


class BadHeaderError(DecodeError):
    """The container describes audio no decoder should be asked to produce."""


class NonFiniteAudioError(DecodeError):
    pass


# Below one VAD window (32 ms at 16 kHz) there is nothing to look at.
MIN_SAMPLES = 512
MIN_RATE_HZ, MAX_RATE_HZ = 1000, 768000
MAX_CHANNELS = 64


def ffmpeg_message(err: "av.FFmpegError") -> str:
    # str(err) repeats errno and the (possibly secret-bearing) file name; the reason alone is enough.
    return getattr(err, "strerror", None) or type(err).__name__


# Decoded frames are gathered this long before they are downmixed and resampled in one call: per-frame
# Python work, not decoding, was what made decoding slow (benchmarks/RESULTS.md).
_FLUSH_S = 2.0
_SAMPLE_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32,
                  "dbl": np.float64}
_INT_SCALE = {np.dtype(np.int16): 2.0 ** -15, np.dtype(np.int32): 2.0 ** -31, np.dtype(np.int64): 2.0 ** -63}


def decode_to_mono16k(source: Union[str, BinaryIO], max_duration_s: Optional[float] = None) -> np.ndarray:
    """All of the first audio stream's samples, downmixed and resampled to 16 kHz, as float32.

    Stereo is averaged (the plain mean of the channels); other layouts go through FFmpeg's downmix
    matrix. FFmpeg's resampler gets ~2 s blocks rather than single frames. The header is checked
    before decoding (rate, channels, claimed duration) and the decoded length while decoding, so a
    header that lies in either direction costs at most max_duration_s of memory.
    """
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except av.FFmpegError as err:
        raise DecodeError(f"not a readable media file: {ffmpeg_message(err)}") from None
    with container:
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise NoAudioStreamError(f"no audio stream (streams: {', '.join(kinds)})")
        stream = container.streams.audio[0]
        claimed = _check_header(container, stream, max_duration_s)
        out = _Mono16k(stream.codec_context.sample_rate, max_duration_s, claimed)
        try:
            for frame in container.decode(stream):
                out.add(frame)
        except av.FFmpegError as err:
            raise DecodeError(f"decoding failed: {ffmpeg_message(err)}") from None
        wave = out.finish()
    if wave.size == 0:
        raise EmptyAudioError("audio stream holds no samples")
    if wave.size < MIN_SAMPLES:
        raise TooShortError(f"audio is {wave.size} samples at 16 kHz, shorter than one VAD window "
                            f"({MIN_SAMPLES})")
    return wave


class _Mono16k:
    """Frames in, float32 16 kHz mono out, into one growing array."""

    def __init__(self, rate: int, max_duration_s: Optional[float], claimed_s: Optional[float]):
        self._rate = rate
        self._limit = int(max_duration_s * SAMPLE_RATE) if max_duration_s else None
        self._max_duration_s = max_duration_s
        self._pending: list = []  # decoded frames not yet turned into samples
        self._pending_kind = None
        self._pending_n = 0
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        # Room for what the header claims (never more than the limit); it grows if the header undersold.
        guess = int((claimed_s or 60.0) * SAMPLE_RATE * 1.01) + SAMPLE_RATE
        self._buf = np.empty(min(guess, self._limit + 1) if self._limit else guess, np.float32)
        self._n = 0

    def add(self, frame) -> None:
        if frame.sample_rate != self._rate:
            raise DecodeError(f"sample rate changes inside the stream ({self._rate} -> {frame.sample_rate} Hz)")
        if self._pending and (frame.format.name, frame.layout.name) != self._pending_kind:
            self._flush(last=False)
        self._pending_kind = (frame.format.name, frame.layout.name)
        self._pending.append(frame)
        self._pending_n += frame.samples
        if self._pending_n >= _FLUSH_S * self._rate:
            self._flush(last=False)

    def finish(self) -> np.ndarray:
        self._flush(last=True)
        wave = self._buf[: self._n]
        # A header that oversold leaves untouched (unallocated) room behind: drop it.
        return wave.copy() if self._n < len(self._buf) // 2 else wave

    def _mono16k(self, frames: list) -> np.ndarray:
        """The frames (all of one format and layout) as float32 16 kHz mono, through FFmpeg's resampler
        fed one block instead of frame by frame (the same samples, a fraction of the calls)."""
        if frames[0].layout.nb_channels > 2:  # FFmpeg knows how 5.1 and friends fold down for speech
            return self._resampled(frames)
        block = av.AudioFrame.from_ndarray(self._mono(frames)[None], format="flt", layout="mono")
        block.sample_rate = self._rate
        return self._resampled([block])

    def _resampled(self, frames: list) -> np.ndarray:
        out = [o.to_ndarray().reshape(-1) for f in frames for o in self._resampler.resample(f)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _mono(self, frames: list) -> np.ndarray:
        """Mono or stereo frames as one float32 block at the source rate; stereo is the plain mean."""
        fmt, channels = frames[0].format, frames[0].layout.nb_channels
        dtype = np.dtype(_SAMPLE_DTYPES[fmt.name.rstrip("p")])
        if fmt.is_planar:
            planes = [np.concatenate([np.frombuffer(f.planes[c], dtype, f.samples) for f in frames])
                      for c in range(channels)]
        else:
            packed = np.concatenate([np.frombuffer(f.planes[0], dtype, f.samples * channels) for f in frames])
            planes = [packed[c::channels] for c in range(channels)]
        mono = planes[0].astype(np.float32) if channels == 1 else (
            planes[0].astype(np.float32) + planes[1].astype(np.float32)) * np.float32(0.5)
        if dtype == np.uint8:
            return (mono - 128) / 128
        scale = _INT_SCALE.get(dtype)
        return mono * np.float32(scale) if scale else mono

    def _flush(self, last: bool) -> None:
        block = self._mono16k(self._pending) if self._pending else np.zeros(0, np.float32)
        self._pending, self._pending_n = [], 0
        if last:
            block = np.concatenate([block, self._resampled([None])])
        if not np.isfinite(block).all():
            raise NonFiniteAudioError("audio holds NaN or infinite samples")
        end = self._n + len(block)
        if self._limit is not None and end > self._limit:
            raise TooLongError(f"audio longer than max_duration_s={self._max_duration_s:g}")
        if end > len(self._buf):
            grown = np.empty(max(end, 2 * len(self._buf)), np.float32)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n:end] = block
        self._n = end


def claimed_duration_s(container, stream) -> Optional[float]:
    """What the header says the audio lasts, if it says anything."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _check_header(container, stream, max_duration_s: Optional[float]) -> Optional[float]:
    ctx = stream.codec_context
    rate = ctx.sample_rate or 0
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise BadHeaderError(f"sample rate {rate} Hz is outside {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz")
    channels = ctx.channels or 0
    if not 1 <= channels <= MAX_CHANNELS:
        raise BadHeaderError(f"{channels} channels (expected 1..{MAX_CHANNELS})")
    claimed = claimed_duration_s(container, stream)
    if max_duration_s and claimed is not None and claimed > max_duration_s:
        raise TooLongError(f"header says {claimed:.0f} s of audio, more than max_duration_s={max_duration_s:g}")
    return claimed
