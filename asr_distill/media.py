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


def _ffmpeg_message(err: "av.FFmpegError") -> str:
    # str(err) repeats errno and the (possibly secret-bearing) file name; the reason alone is enough.
    return getattr(err, "strerror", None) or type(err).__name__


# FFmpeg downmixes stereo to mono as (L + R) / sqrt(2), which lifts in-phase speech by 3 dB and can
# exceed full scale; we want the plain mean. Other layouts keep FFmpeg's dialogue-aware matrix.
_STEREO_TO_MEAN = np.float32(1 / np.sqrt(2))


def decode_to_mono16k(source: Union[str, BinaryIO], max_duration_s: Optional[float] = None) -> np.ndarray:
    """All of the first audio stream's samples, downmixed and resampled to 16 kHz, as float32.

    The header is checked before decoding (rate, channels, claimed duration), and the decoded length
    again while decoding: a header that lies in either direction costs at most max_duration_s of memory.
    """
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except av.FFmpegError as err:
        raise DecodeError(f"not a readable media file: {_ffmpeg_message(err)}") from None
    limit = int(max_duration_s * SAMPLE_RATE) if max_duration_s else None
    chunks: list[np.ndarray] = []
    total = 0
    with container:
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise NoAudioStreamError(f"no audio stream (streams: {', '.join(kinds)})")
        stream = container.streams.audio[0]
        _check_header(container, stream, max_duration_s)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        try:
            scale = None
            for frame in container.decode(stream):
                scale = _STEREO_TO_MEAN if frame.layout.nb_channels == 2 else None
                for out in resampler.resample(frame):
                    chunks.append(_checked(_scaled(out.to_ndarray().reshape(-1), scale)))
                    total += out.samples
                if limit is not None and total > limit:
                    raise TooLongError(f"audio longer than max_duration_s={max_duration_s:g}")
            for out in resampler.resample(None):
                chunks.append(_checked(_scaled(out.to_ndarray().reshape(-1), scale)))
        except av.FFmpegError as err:
            raise DecodeError(f"decoding failed: {_ffmpeg_message(err)}") from None
    wave = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if wave.size == 0:
        raise EmptyAudioError("audio stream holds no samples")
    if wave.size < MIN_SAMPLES:
        raise TooShortError(f"audio is {wave.size} samples at 16 kHz, shorter than one VAD window "
                            f"({MIN_SAMPLES})")
    return wave


def claimed_duration_s(container, stream) -> Optional[float]:
    """What the header says the audio lasts, if it says anything."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _check_header(container, stream, max_duration_s: Optional[float]) -> None:
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


def _checked(samples: np.ndarray) -> np.ndarray:
    if not np.isfinite(samples).all():
        raise NonFiniteAudioError("audio holds NaN or infinite samples")
    return samples


def _scaled(samples: np.ndarray, scale) -> np.ndarray:
    return samples * scale if scale is not None else samples
