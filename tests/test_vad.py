import subprocess
import sys

import numpy as np
import pytest

from asr_distill.config import VadConfig
from asr_distill.media import decode_to_mono16k
from asr_distill.silero_blocks import SileroBlocks, SileroSequence
from asr_distill.vad import SileroVad, speech_spans
from benchmarks.frontend import naive_decode, naive_regions

BACKENDS = ["silero", "silero-sequence", "silero-onnx", "silero-jit"]


@pytest.mark.parametrize("backend", BACKENDS)
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


def test_block_probabilities_are_the_stock_models(long_forms):
    """Frame by frame through silero-vad's own ONNX wrapper vs our blocks: the same numbers."""
    import torch
    from silero_vad import load_silero_vad

    wave = decode_to_mono16k(str(long_forms["talk_flac"].path))[: 16000 * 20 + 100]  # a partial last frame
    stock = load_silero_vad(onnx=True)
    padded = np.zeros(-(-len(wave) // 512) * 512, np.float32)
    padded[: len(wave)] = wave
    want = np.array([stock(torch.from_numpy(padded[i:i + 512]), 16000).item() for i in range(0, len(padded), 512)])
    for runner in (SileroBlocks, SileroSequence):
        for block in (7, 256, 4096):  # state carried across blocks of any size
            got = runner(block_frames=block).speech_probs(wave)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=1e-4)


def test_speech_spans_are_the_packages_rule():
    """Our probabilities-to-regions rule against silero-vad's own, on probability tracks of every kind
    (smooth, jumpy, flickering around the thresholds) and settings: the same sample spans."""
    from silero_vad import get_speech_timestamps_from_probs

    rng = np.random.default_rng(0)
    for _ in range(400):
        frames = int(rng.integers(0, 300))
        probs = np.clip(np.cumsum(rng.normal(0, rng.choice([0.05, 0.2, 0.5]), frames)) * 0.3 + rng.uniform(0, 1),
                        0, 1).astype(np.float32)
        cfg = VadConfig(threshold=float(rng.choice([0.3, 0.5, 0.7])), min_speech_ms=int(rng.choice([0, 100, 250])),
                        min_silence_ms=int(rng.choice([0, 100, 300, 2000])),
                        speech_pad_ms=int(rng.choice([0, 30, 200, 400])))
        samples = max(0, frames * 512 - int(rng.integers(0, 512)))
        want = get_speech_timestamps_from_probs(
            probs.tolist(), threshold=cfg.threshold, min_speech_duration_ms=cfg.min_speech_ms,
            min_silence_duration_ms=cfg.min_silence_ms, speech_pad_ms=cfg.speech_pad_ms,
            audio_length_samples=samples)
        assert speech_spans(probs, samples, cfg) == [(s["start"], s["end"]) for s in want], cfg


def test_the_default_vad_never_imports_torch(long_forms):
    """A CPU job's processes skip torch's import: the default backend's regions, in a fresh process,
    without torch, equal the torch backend's."""
    path = str(long_forms["talk_mp3"].path)
    script = ("import sys; from asr_distill.config import VadConfig; from asr_distill.media import decode_to_mono16k; "
              "from asr_distill.vad import SileroVad; "
              f"r = SileroVad(VadConfig()).speech_regions(decode_to_mono16k({path!r})); "
              "print('torch' in sys.modules, [(x.start_s, x.end_s) for x in r])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    torch_imported, regions = out.split(" ", 1)
    assert torch_imported == "False"
    want = SileroVad(VadConfig(backend="silero")).speech_regions(decode_to_mono16k(path))
    assert regions.strip() == str([(x.start_s, x.end_s) for x in want])


def test_front_end_regions_match_the_naive_reference(long_forms):
    """Ours (soxr decode + block VAD) vs the reference (FFmpeg resampler + stock per-frame Silero):
    the same number of regions, every boundary within 30 ms."""
    cfg = VadConfig()
    vad = SileroVad(cfg)
    for name, talk in long_forms.items():
        ref = naive_regions(naive_decode(str(talk.path)), cfg)
        ours = [(r.start_s, r.end_s) for r in vad.speech_regions(decode_to_mono16k(str(talk.path)))]
        assert len(ours) == len(ref), name
        for (a0, a1), (b0, b1) in zip(ref, ours):
            assert abs(a0 - b0) <= 0.030 and abs(a1 - b1) <= 0.030, (name, (a0, a1), (b0, b1))
