"""The streaming rule (DESIGN.md): decoded audio never crosses a stage boundary. Between decode and
inference audio flows through fused steps; what is shuffled is rows, keys and texts.

A runner encodes an element only where it leaves a fused stage (a GroupByKey, a fusion break such as
an environment change). So these tests make every record that carries audio refuse to be pickled at
all, and run the real pipeline: it must still finish, with the same results. (This also catches
copies made for no reason: Beam's RunInference pickled each batch to count its bytes.)"""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from asr_distill.config import Config, validate_config
from asr_distill.records import DecodedAudio, Segment, VoicedAudio
from beam_pipeline import build
from beam_pipeline.pipeline import use_accelerator_hint
from conftest import write_index


class AudioCrossedAStageBoundary(AssertionError):
    pass


def _samples(record) -> np.ndarray:
    if isinstance(record, VoicedAudio):
        return record.audio.wave
    return record.wave if isinstance(record, DecodedAudio) else record.audio


def _refuse(self, protocol):
    if _samples(self).size:
        raise AudioCrossedAStageBoundary(f"a {type(self).__name__} was encoded: decoded audio left its fused stage")
    return object.__reduce_ex__(self, protocol)  # a segment without its audio (past the model) may travel


@pytest.fixture
def audio_stays_fused(monkeypatch):
    for record in (DecodedAudio, VoicedAudio, Segment):
        monkeypatch.setattr(record, "__reduce_ex__", _refuse, raising=False)


def _index(tmp_path, long_forms, short_speech_wav):
    rows = [{"key": k, "uri": str(t.path)} for k, t in long_forms.items()]
    rows.append({"key": "short", "uri": str(short_speech_wav[0])})
    return write_index(tmp_path / "index.jsonl", rows)


def _transcripts(written) -> beam.PCollection:
    return written["transcripts"] | beam.Map(lambda t: (t["key"], t["status"], len(t["segments"])))


def test_the_cpu_pipeline_keeps_audio_inside_one_fused_stage(audio_stays_fused, tmp_path, long_forms,
                                                            short_speech_wav):
    from apache_beam.testing.util import assert_that, equal_to

    index = _index(tmp_path, long_forms, short_speech_wav)
    with BeamTestPipeline() as p:
        # resume=True puts the committed-state reads and their joins in the graph too
        written = build(p, Config(), str(index), str(tmp_path / "o"), resume=True)
        keys = written["transcripts"] | beam.Map(lambda t: (t["key"], t["status"]))
        assert_that(keys, equal_to([(k, "ok") for k in [*long_forms, "short"]]))


def test_the_gpu_pipeline_with_an_accelerator_hint_keeps_audio_fused(audio_stays_fused, monkeypatch, tmp_path,
                                                                   long_forms, short_speech_wav):
    """The vllm backend with `inference.accelerator`: the hint is on the whole pipeline, so the
    inference step shares the decode step's environment and fuses with it."""
    from apache_beam.testing.util import assert_that, equal_to

    monkeypatch.setenv("ASR_DISTILL_VLLM_ENGINE", "fake_vllm")
    monkeypatch.setattr("asr_distill.asr.vllm_backend._ENGINES", {})
    cfg = validate_config({"inference": {"backend": "vllm", "model": "fake", "share_across_processes": False,
                                         "accelerator": "type:nvidia-h200;count:1"}})
    options = PipelineOptions([])
    use_accelerator_hint(options, cfg)
    index = _index(tmp_path, long_forms, short_speech_wav)
    with beam.Pipeline(options=options) as p:
        written = build(p, cfg, str(index), str(tmp_path / "o"))
        keys = written["transcripts"] | beam.Map(lambda t: t["key"])
        assert_that(keys, equal_to([*long_forms, "short"]))
    proto = p.to_runner_api()
    hinted = {t.environment_id for t in proto.components.transforms.values() if t.environment_id}
    [env] = hinted  # one environment for every step
    assert dict(proto.components.environments[env].resource_hints) == {
        "beam:resources:accelerator:v1": b"type:nvidia-h200;count:1"}


def test_the_guard_catches_audio_at_a_shuffle(audio_stays_fused):
    """The control: a pipeline that does shuffle segments fails the way the tests above would."""
    segment = Segment("k", 0, 0.0, 1.0, np.zeros(16000, np.float32))
    with pytest.raises(Exception, match="decoded audio left its fused stage"):
        with BeamTestPipeline() as p:
            _ = p | beam.Create([0]) | beam.Map(lambda _i: segment) | beam.Reshuffle() | beam.Map(len)
