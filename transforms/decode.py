"""Decode: open each uri through Beam's FileSystems (any registered scheme) and decode to 16 kHz mono.

A uri naming a byte range (asr_distill.shards) reads only that range: a WebDataset tar member is decoded
like a file; a packed `.dat` range is already 16 kHz int16 and is not decoded at all (memory-mapped when
the shard is local, one ranged read otherwise).
"""

from __future__ import annotations

import io

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from asr_distill.config import AudioConfig
from asr_distill.media import DecodeError, EmptyAudioError, TooLongError, decode_to_mono16k
from asr_distill.records import SAMPLE_RATE, DecodedAudio, IndexRow
from asr_distill.shards import (PCM_DTYPE, ByteRange, PcmError, RangeReader, parse_byte_range,
                                pcm16_to_float, pcm_from_bytes, read_pcm_mmap)
from asr_distill.retry import RetryPolicy, is_transient, retry_call
from transforms.common import StageOutputs, fail, run_stage, report_cpu


READ_BUFFER_BYTES = 4 * 2**20


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
        if rng is not None:
            return self._read_range(rng)
        source = FileSystems.open(uri, mime_type="application/octet-stream",
                                  compression_type=CompressionTypes.UNCOMPRESSED)
        with source:
            self._check_size(_size(source))
            return decode_to_mono16k(source, self._cfg.max_duration_s)

    def _read_range(self, rng: ByteRange):
        """A tar member, decoded; or a packed item, mapped (local shard) or read, not decoded."""
        self._check_size(rng.length)
        if rng.is_pcm:
            seconds = rng.length / PCM_DTYPE.itemsize / SAMPLE_RATE
            if self._cfg.max_duration_s and seconds > self._cfg.max_duration_s:
                raise TooLongError(f"packed item is {seconds:.0f} s, more than "
                                   f"max_duration_s={self._cfg.max_duration_s:g}")
            if FileSystems.get_scheme(rng.path) is None:
                return pcm16_to_float(read_pcm_mmap(rng))
        with FileSystems.open(rng.path, mime_type="application/octet-stream",
                              compression_type=CompressionTypes.UNCOMPRESSED) as source:
            # Not through the stream's own buffer, which would fetch 4 MiB (on oss://) for an item of a
            # few kilobytes: through one no bigger than the item, so a small item is one exact read.
            raw = getattr(source, "raw", source)
            window = RangeReader(io.BufferedReader(raw, buffer_size=min(rng.length, READ_BUFFER_BYTES)),
                                 rng.offset, rng.length)
            if rng.is_pcm:
                data = window.read(rng.length)
                if len(data) < rng.length:
                    raise PcmError(f"packed range {rng.offset}+{rng.length} runs past the end of its shard")
                return pcm16_to_float(pcm_from_bytes(data))
            return decode_to_mono16k(window, self._cfg.max_duration_s)

    def finish_bundle(self):
        report_cpu()

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
