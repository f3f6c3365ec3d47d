"""Decode: open each uri through Beam's FileSystems (any registered scheme) and decode to 16 kHz mono.

A uri naming a byte range (asr_distill.shards) reads only that range: a WebDataset tar member is decoded
like a file; a packed `.dat` range is already 16 kHz int16 and is not decoded at all (memory-mapped when
the shard is local, one ranged read otherwise).
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from asr_distill.config import AudioConfig
from asr_distill.media import DecodeError, EmptyAudioError, TooLongError, decode_to_mono16k
from asr_distill.records import SAMPLE_RATE, DecodedAudio, IndexRow
from asr_distill.shards import (ByteRange, PcmError, RangeReader, parse_byte_range, pcm16_to_float,
                                pcm_from_bytes, read_pcm_mmap)
from asr_distill.retry import RetryPolicy, is_transient, retry_call
from transforms.common import StageOutputs, fail, run_stage


class OpenError(OSError):
    pass


class FileTooLargeError(ValueError):
    pass


def _open_error(err: Exception, uri: str, attempts: int) -> OpenError:
    # The uri is in the failure record already; messages carry only the reason.
    if isinstance(err, ValueError) and "Unable to get filesystem" in str(err):
        return OpenError(f"cannot open: no file system is registered for {FileSystems.get_scheme(uri)}://")
    if isinstance(err, BeamIOError) and getattr(err, "exception_details", None):
        err = next(iter(err.exception_details.values()))
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    if is_transient(err):
        reason += f" ({type(err).__name__}; still failing after {attempts} attempts)"
    return OpenError(f"cannot open: {reason}")


def _size(source) -> int:
    size = source.seek(0, 2)
    source.seek(0)
    return size


class DecodeDoFn(beam.DoFn):
    def __init__(self, cfg: AudioConfig, retry: RetryPolicy):
        self._cfg = cfg
        self._retry = retry

    def _check_size(self, size: int) -> None:
        if size == 0:
            raise EmptyAudioError("file is empty (0 bytes)")
        if self._cfg.max_size_bytes and size > self._cfg.max_size_bytes:
            raise FileTooLargeError(f"file is {size} bytes, more than max_size_bytes={self._cfg.max_size_bytes}")

    def _open_and_decode(self, uri: str):
        rng = parse_byte_range(uri)
        if rng is not None and rng.is_pcm:
            return self._read_packed(rng)
        source = FileSystems.open(rng.path if rng else uri, mime_type="application/octet-stream",
                                  compression_type=CompressionTypes.UNCOMPRESSED)
        with source:
            size = rng.length if rng else _size(source)
            self._check_size(size)
            if rng is not None:
                source = RangeReader(source, rng.offset, rng.length)
            return decode_to_mono16k(source, self._cfg.max_duration_s)

    def _read_packed(self, rng: ByteRange):
        self._check_size(rng.length)
        if self._cfg.max_duration_s and rng.length / 2 / SAMPLE_RATE > self._cfg.max_duration_s:
            raise TooLongError(f"packed item is {rng.length / 2 / SAMPLE_RATE:.0f} s, more than "
                                    f"max_duration_s={self._cfg.max_duration_s:g}")
        if FileSystems.get_scheme(rng.path) is None:  # a local shard: map it, do not read it
            return pcm16_to_float(read_pcm_mmap(rng))
        with FileSystems.open(rng.path, mime_type="application/octet-stream",
                              compression_type=CompressionTypes.UNCOMPRESSED) as source:
            source.seek(rng.offset)
            return pcm16_to_float(pcm_from_bytes(source.read(rng.length)))

    def process(self, row: IndexRow):
        def count_retry(_err):
            Metrics.counter("read", "retries").inc()
        try:
            # A transient error anywhere in reading starts the file again; decode errors are final.
            wave = retry_call(lambda: self._open_and_decode(row.uri), self._retry, "read media",
                              on_retry=count_retry)
        except (DecodeError, PcmError) as err:
            yield fail("decode", row, err)
            return
        except FileTooLargeError as err:
            yield fail("read", row, err)
            return
        except (OSError, BeamIOError, ValueError) as err:
            yield fail("read", row, _open_error(err, row.uri, self._retry.attempts))
            return
        Metrics.counter("decode", "files").inc()
        Metrics.counter("decode", "audio_ms").inc(int(len(wave) * 1000 / SAMPLE_RATE))
        yield DecodedAudio(row, wave)


class Decode(beam.PTransform):
    def __init__(self, cfg: AudioConfig, retry: RetryPolicy = RetryPolicy()):
        super().__init__()
        self._cfg = cfg
        self._retry = retry

    def expand(self, rows) -> StageOutputs:
        outputs, failures = run_stage(rows, "DecodeFiles", DecodeDoFn(self._cfg, self._retry), "decode",
                                      lambda row: row, output_type=DecodedAudio)
        return StageOutputs(outputs.good, failures)
