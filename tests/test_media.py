import io

import numpy as np
import pytest

import speechgen
from asr_distill.media import DecodeError, EmptyAudioError, NoAudioStreamError, TooLongError, decode_to_mono16k


def envelope(wave: np.ndarray, frame: int = 320) -> np.ndarray:
    n = len(wave) // frame
    return np.sqrt(np.square(wave[: n * frame].reshape(n, frame)).mean(axis=1))


@pytest.fixture(scope="module")
def reference(short_speech_wav):
    wav, _truth = short_speech_wav
    return decode_to_mono16k(str(wav))


@pytest.mark.parametrize("ext", sorted(speechgen.ENCODINGS))
def test_every_container_decodes_to_the_same_speech(media_dir, short_speech_wav, reference, ext):
    src, _ = short_speech_wav
    path = speechgen.encode(src, media_dir / f"container_test.{ext}")
    wave = decode_to_mono16k(str(path))
    assert wave.dtype == np.float32 and wave.ndim == 1
    # Lossy codecs add a little priming/padding; the duration stays within 0.1 s.
    assert abs(len(wave) - len(reference)) / 16000 < 0.1
    a, b = envelope(reference), envelope(wave)
    # Align encoder delay (at most 0.1 s) and compare loudness envelopes.
    best = max(np.corrcoef(a[: len(a) - 10], b[lag: lag + len(a) - 10])[0, 1] for lag in range(0, 6))
    assert best > 0.95


def test_decodes_from_a_file_object(short_speech_wav, reference):
    wav, _ = short_speech_wav
    wave = decode_to_mono16k(io.BytesIO(wav.read_bytes()))
    np.testing.assert_array_equal(wave, reference)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_a_sine_exact(tmp_path, rate):
    t = np.arange(int(rate * 2.0)) / rate
    sine = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    stereo = np.stack([sine, sine], axis=1)
    path = tmp_path / f"sine_{rate}.wav"
    speechgen.write_wav(path, (stereo * 32767).astype(np.int16).reshape(-1), rate, channels=2)
    wave = decode_to_mono16k(str(path))
    assert abs(len(wave) - 32000) <= 2
    expected = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(len(wave)) / 16000)
    inner = slice(400, len(wave) - 400)  # skip the resampler's edge transients
    err = wave[inner] - expected[inner]
    snr_db = 10 * np.log10(np.mean(expected[inner] ** 2) / np.mean(err ** 2))
    assert snr_db > 40


def test_stereo_downmix_averages_channels(tmp_path):
    rate = 16000
    left = np.full(rate, 0.4)
    right = np.full(rate, -0.2)
    path = tmp_path / "lr.wav"
    speechgen.write_wav(path, (np.stack([left, right], 1) * 32767).astype(np.int16).reshape(-1), rate, 2)
    wave = decode_to_mono16k(str(path))
    assert np.allclose(wave[100:-100], 0.1, atol=0.01)


def test_broken_inputs_fail_with_clear_errors(broken_files, media_dir, short_speech_wav):
    with pytest.raises(DecodeError, match="not a readable media file|decoding failed|no audio"):
        decode_to_mono16k(str(broken_files["garbage"]))
    with pytest.raises(DecodeError, match="not a readable media file"):
        decode_to_mono16k(str(broken_files["text"]))
    with pytest.raises(DecodeError):
        decode_to_mono16k(str(broken_files["empty"]))
    video_only = media_dir / "video_only.mp4"
    import subprocess
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=black:s=64x48:r=5",
                    "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", str(video_only)], check=True)
    with pytest.raises(NoAudioStreamError, match="no audio stream"):
        decode_to_mono16k(str(video_only))
    wav, _ = short_speech_wav
    with pytest.raises(TooLongError, match="max_duration_s=2"):
        decode_to_mono16k(str(wav), max_duration_s=2)


def test_zero_samples_is_empty_audio(tmp_path):
    path = tmp_path / "zero.wav"
    speechgen.write_wav(path, np.zeros(0, np.int16), 16000)
    with pytest.raises(EmptyAudioError):
        decode_to_mono16k(str(path))
