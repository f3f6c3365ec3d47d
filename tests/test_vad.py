import pytest

from asr_distill.config import VadConfig
from asr_distill.media import decode_to_mono16k
from asr_distill.vad import SileroVad


@pytest.mark.parametrize("backend", ["silero-onnx", "silero-jit"])
def test_regions_cover_each_spoken_sentence(long_forms, backend):
    talk = long_forms["talk_mp3"]
    wave = decode_to_mono16k(str(talk.path))
    regions = SileroVad(VadConfig(backend=backend)).speech_regions(wave)
    # Every sentence lies inside one region (with the 0.2 s padding and a little codec delay).
    for u in talk.utterances:
        assert any(r.start_s <= u.start_s + 0.15 and u.end_s - 0.15 <= r.end_s for r in regions), u
    # Pauses of 1.6 s and 3.2 s separate regions: no region spans them.
    pauses = [(a.end_s, b.start_s) for a, b in zip(talk.utterances, talk.utterances[1:])
              if b.start_s - a.end_s > 1.5]
    for lo, hi in pauses:
        assert not any(r.start_s < lo + 0.5 and r.end_s > hi - 0.5 for r in regions)
    speech = sum(r.duration_s for r in regions)
    spoken = sum(u.end_s - u.start_s for u in talk.utterances)
    assert 0.8 * spoken < speech < 1.3 * spoken


def test_silence_has_no_regions(silence_file):
    wave = decode_to_mono16k(str(silence_file))
    assert SileroVad(VadConfig()).speech_regions(wave) == []
