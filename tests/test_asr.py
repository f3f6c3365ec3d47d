import numpy as np
import pytest

import speechgen
from asr_distill.asr import Transcription, load_backend, transcribe_isolating
from asr_distill.config import InferenceConfig
from asr_distill.media import decode_to_mono16k
from asr_distill.records import Segment


@pytest.fixture(scope="module")
def whisper():
    return load_backend(InferenceConfig())


def _segments_of(talk, n=3):
    wave = decode_to_mono16k(str(talk.path))
    segs = []
    for i, u in enumerate(talk.utterances[:n]):
        a, b = max(0.0, u.start_s - 0.2), u.end_s + 0.2
        segs.append(Segment(talk.key, i, a, b, wave[int(a * 16000): int(b * 16000)]))
    return segs


def test_batch_transcribes_each_segment_with_signals(whisper, long_forms):
    talk = long_forms["talk_flac"]
    segs = _segments_of(talk, 3)
    out = whisper.transcribe_batch(segs)
    assert len(out) == 3
    for seg, u, tr in zip(segs, talk.utterances, out):
        assert speechgen.word_error_rate(u.text, tr.text) <= 0.15, (u.text, tr.text)
        assert -1.0 < tr.signals["avg_logprob"] <= 0
        assert 0 <= tr.signals["no_speech_prob"] < 0.5
        assert 0.5 < tr.signals["compression_ratio"] < 2.4
        assert tr.signals["num_tokens"] > 5


def test_batching_does_not_change_text(whisper, long_forms):
    segs = _segments_of(long_forms["talk_mp3"], 3)
    together = [t.text for t in whisper.transcribe_batch(segs)]
    alone = [whisper.transcribe_batch([s])[0].text for s in segs]
    assert together == alone


def test_language_hint_is_recorded(whisper, long_forms):
    seg = _segments_of(long_forms["talk_mp3"], 1)[0]
    hinted = Segment(seg.key, 0, seg.start_s, seg.end_s, seg.audio, language="en")
    tr = whisper.transcribe_batch([hinted])[0]
    assert tr.signals["language"] == "en" and speechgen.word_error_rate(
        long_forms["talk_mp3"].utterances[0].text, tr.text) <= 0.15


def test_term_hints_go_to_faster_whisper_as_hotwords_one_call_per_set(whisper, long_forms, monkeypatch):
    """A segment's term hints (--retriever) are faster-whisper's `hotwords`; segments with other hints
    are decoded in a call of their own (one prompt a call), and their texts come back in order."""
    import dataclasses

    segs = _segments_of(long_forms["talk_mp3"], 3)
    plain = [t.text for t in whisper.transcribe_batch(segs)]
    calls = []
    forward = whisper._pipeline.forward

    def spy(features, tokenizer, meta, options):
        calls.append((len(features), options.hotwords))
        return forward(features, tokenizer, meta, options)

    monkeypatch.setattr(whisper._pipeline, "forward", spy)
    hinted = [dataclasses.replace(segs[0], hints=("Grafana",)), segs[1], dataclasses.replace(segs[2], hints=())]
    out = whisper.transcribe_batch(hinted)
    assert sorted(calls, key=str) == sorted([(1, "Grafana"), (2, None)], key=str)
    assert [t.text for t in out[1:]] == plain[1:]  # no hints: the same text as before
    assert speechgen.word_error_rate(long_forms["talk_mp3"].utterances[0].text, out[0].text) <= 0.15


class FlakyBackend:
    """A backend that cannot transcribe segments whose audio is empty; the rest work."""

    model_name = "double"
    prompt = None
    recoverable_errors = (ValueError,)

    def __init__(self):
        self.calls = []

    def transcribe_batch(self, segments):
        self.calls.append([s.index for s in segments])
        if any(len(s.audio) == 0 for s in segments):
            raise ValueError("empty audio")
        return [Transcription(f"seg{s.index}") for s in segments]


def test_a_bad_segment_fails_alone():
    segs = [Segment("k", i, i, i + 1, np.zeros(0 if i == 2 else 160, np.float32)) for i in range(5)]
    backend = FlakyBackend()
    out = transcribe_isolating(backend, segs)
    assert [o.text if isinstance(o, Transcription) else "ERR" for o in out] == \
        ["seg0", "seg1", "ERR", "seg3", "seg4"]
    assert isinstance(out[2], ValueError)
    assert backend.calls[0] == [0, 1, 2, 3, 4] and len(backend.calls) == 6


def test_unrecoverable_errors_propagate():
    class Broken(FlakyBackend):
        def transcribe_batch(self, segments):
            raise MemoryError("out of memory")
    with pytest.raises(MemoryError):
        transcribe_isolating(Broken(), [Segment("k", 0, 0, 1, np.zeros(10, np.float32))])
