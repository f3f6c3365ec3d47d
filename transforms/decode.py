"""Decode: open each uri through Beam's FileSystems (any registered scheme) and decode to 16 kHz mono."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from asr_distill.config import AudioConfig
from asr_distill.media import DecodeError, decode_to_mono16k
from asr_distill.records import SAMPLE_RATE, DecodedAudio, IndexRow
from transforms.common import StageOutputs, fail, run_stage


class OpenError(OSError):
    pass


def _open_error(err: Exception) -> OpenError:
    # The uri is in the failure record already; messages carry only the reason.
    reason = getattr(err, "strerror", None) or type(err).__name__
    if isinstance(err, BeamIOError) and getattr(err, "exception_details", None):
        inner = next(iter(err.exception_details.values()))
        reason = getattr(inner, "strerror", None) or type(inner).__name__
    return OpenError(f"cannot open: {reason}")


class DecodeDoFn(beam.DoFn):
    def __init__(self, cfg: AudioConfig):
        self._cfg = cfg

    def process(self, row: IndexRow):
        try:
            source = FileSystems.open(row.uri, mime_type="application/octet-stream",
                                      compression_type=CompressionTypes.UNCOMPRESSED)
        except (OSError, BeamIOError, ValueError) as err:
            yield fail("read", row, _open_error(err))
            return
        try:
            with source:
                wave = decode_to_mono16k(source, self._cfg.max_duration_s)
        except DecodeError as err:
            yield fail("decode", row, err)
            return
        except OSError as err:
            yield fail("read", row, _open_error(err))
            return
        Metrics.counter("decode", "files").inc()
        Metrics.counter("decode", "audio_ms").inc(int(len(wave) * 1000 / SAMPLE_RATE))
        yield DecodedAudio(row, wave)


class Decode(beam.PTransform):
    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self._cfg = cfg

    def expand(self, rows) -> StageOutputs:
        outputs, failures = run_stage(rows, "DecodeFiles", DecodeDoFn(self._cfg), "decode", lambda row: row)
        return StageOutputs(outputs.good, failures)
