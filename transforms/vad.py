"""VAD: Silero speech regions per file; the model loads once per DoFn instance in setup()."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from asr_distill.config import VadConfig
from asr_distill.records import DecodedAudio, VoicedAudio
from asr_distill.vad import SileroVad
from transforms.common import StageOutputs, fail, run_stage


class VadDoFn(beam.DoFn):
    def __init__(self, cfg: VadConfig):
        self._cfg = cfg
        self._vad = None

    def setup(self):
        # Silero keeps recurrent state inside the model object, so each DoFn instance (thread) has its own.
        self._vad = SileroVad(self._cfg)

    def process(self, audio: DecodedAudio):
        try:
            regions = self._vad.speech_regions(audio.wave)
        except (ValueError, RuntimeError) as err:
            yield fail("vad", audio.row, err)
            return
        Metrics.counter("vad", "files").inc()
        Metrics.counter("vad", "speech_ms").inc(int(1000 * sum(r.duration_s for r in regions)))
        yield VoicedAudio(audio, regions)


class DetectSpeech(beam.PTransform):
    def __init__(self, cfg: VadConfig):
        super().__init__()
        self._cfg = cfg

    def expand(self, audio) -> StageOutputs:
        outputs, failures = run_stage(audio, "Silero", VadDoFn(self._cfg), "vad", lambda a: a.row,
                                      output_type=VoicedAudio)
        return StageOutputs(outputs.good, failures)
