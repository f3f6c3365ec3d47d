"""Generated speech for tests, benchmarks and the demo: espeak-ng sentences with pauses, known text.

Needs espeak-ng and ffmpeg on PATH (Debian packages `espeak-ng`, `ffmpeg`; `make test` installs them).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SENTENCES = [
    "The weather today is sunny with a light breeze from the west.",
    "Please remember to bring your notebook to the meeting tomorrow morning.",
    "The library opens early on weekdays and closes late on Fridays.",
    "She planted tomatoes and peppers in the garden behind the house.",
    "Our train was delayed because of heavy snow on the northern line.",
    "He bought fresh bread and a bottle of milk at the corner shop.",
    "The museum has a new exhibition about ancient ships and sailors.",
    "Children were playing football in the park until it got dark.",
    "The doctor said that a short walk every day is good for the heart.",
    "We watched the sunset from the top of the old stone tower.",
    "The company will announce its new product at the end of the month.",
    "My neighbour repaired the fence after the storm last night.",
    "The students listened carefully while the teacher explained the lesson.",
    "A large ship sailed slowly into the harbour before dawn.",
    "They decided to cook dinner at home instead of going out.",
    "The river flows through the valley and into the quiet lake.",
    "Farmers in the region are hoping for rain later this week.",
    "The pilot welcomed the passengers and described the route.",
    "Coffee prices have risen sharply over the past few months.",
    "The orchestra played a beautiful piece by a young composer.",
    "Remember to switch off the lights when you leave the office.",
    "The hikers reached the summit just before the clouds rolled in.",
    "A friendly dog followed us all the way back to the village.",
    "The new bridge will make the journey to the city much shorter.",
]


def missing_tools() -> list[str]:
    return [t for t in ("espeak-ng", "ffmpeg") if shutil.which(t) is None]


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", " ")).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    return jiwer.wer(normalize(reference), normalize(hypothesis))


def _speak(text: str, voice: str, speed: int, pitch: int | None = None) -> tuple[np.ndarray, int]:
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), *(["-p", str(pitch)] if pitch is not None else []),
                        "-w", tmp.name, text], check=True, capture_output=True)
        with wave.open(tmp.name) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return pcm, rate


def speak_16k(text: str, voice: str, speed: int, pitch: int | None = None) -> np.ndarray:
    """16 kHz int16 samples (espeak-ng speaks at 22.05 kHz; resampled by linear interpolation)."""
    pcm, rate = _speak(text, voice, speed, pitch)
    n = int(len(pcm) * 16000 / rate)
    return np.interp(np.arange(n) * (rate / 16000), np.arange(len(pcm)), pcm.astype(np.float32)).astype(np.int16)


def trim_silence(pcm: np.ndarray, threshold: int = 400) -> np.ndarray:
    """From the first to the last sample louder than `threshold`: where the speech is."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    return pcm[loud[0]:loud[-1] + 1]


@dataclass(frozen=True)
class Utterance:
    start_s: float
    end_s: float
    text: str


def long_form(path: Path, sentences: list[str], pauses_s: list[float], voice: str = "en-us",
              speed: int = 165, lead_s: float = 0.5) -> list[Utterance]:
    """One WAV of the sentences separated by the given pauses; returns when each was spoken."""
    rate = None
    pieces, truth, t = [], [], lead_s
    for i, text in enumerate(sentences):
        pcm, rate = _speak(text, voice, speed)
        pause = pauses_s[i % len(pauses_s)]
        if not pieces:
            pieces.append(np.zeros(int(lead_s * rate), np.int16))
        pieces.append(pcm)
        truth.append(Utterance(round(t, 3), round(t + len(pcm) / rate, 3), text))
        pieces.append(np.zeros(int(pause * rate), np.int16))
        t += len(pcm) / rate + int(pause * rate) / rate
    write_wav(path, np.concatenate(pieces), rate)
    return truth


def write_wav(path: Path, pcm: np.ndarray, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(pcm, dtype=np.int16).tobytes())


def write_raw_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1,
                  declared_data_bytes: int | None = None) -> Path:
    """A RIFF/WAVE file written by hand, so tests can make what no encoder would: float samples holding
    NaN, absurd rates, a data chunk whose declared size lies."""
    samples = np.ascontiguousarray(samples)
    is_float = samples.dtype.kind == "f"
    fmt_code, width = (3, 4) if is_float else (1, 2)
    data = samples.astype("<f4" if is_float else "<i2").tobytes()
    fmt = struct.pack("<HHIIHH", fmt_code, channels, rate, rate * channels * width, channels * width, 8 * width)
    size = len(data) if declared_data_bytes is None else declared_data_bytes
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", min(len(body), 0xFFFFFFFF)) + body)
    return path


# ffmpeg arguments per target container; video containers get a tiny black picture track.
ENCODINGS = {
    "wav": ["-c:a", "pcm_s16le"],
    "flac": ["-c:a", "flac"],
    "mp3": ["-ac", "2", "-ar", "44100", "-c:a", "libmp3lame", "-b:a", "64k"],
    "ogg": ["-c:a", "libopus", "-b:a", "32k"],
    "opus": ["-c:a", "libopus", "-b:a", "24k"],
    "m4a": ["-ar", "48000", "-c:a", "aac", "-b:a", "64k"],
    "aac": ["-c:a", "aac", "-b:a", "64k"],
    "mp4": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"],
    "mkv": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "libopus", "-b:a", "32k"],
    "webm": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus", "-b:a", "32k"],
}
VIDEO = {"mp4", "mkv", "webm"}


def encode(src_wav: Path, dst: Path) -> Path:
    ext = dst.suffix.lstrip(".")
    cmd = ["ffmpeg", "-v", "error", "-y"]
    if ext in VIDEO:
        cmd += ["-f", "lavfi", "-i", "color=c=black:s=64x48:r=5", "-i", str(src_wav), "-shortest"]
    else:
        cmd += ["-i", str(src_wav)]
    subprocess.run(cmd + ENCODINGS[ext] + [str(dst)], check=True, capture_output=True)
    return dst


def make_demo(out_dir: Path) -> None:
    """The small files shipped in launch/demo (regenerate with `python tests/speechgen.py DIR`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    plans = [("weather", SENTENCES[0:5], [0.6, 1.4, 2.8], "mp3"),
             ("harbour", SENTENCES[12:17], [1.0, 0.5, 2.0], "ogg"),
             ("museum", SENTENCES[6:9], [0.8], "m4a")]
    for name, sentences, pauses, ext in plans:
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "speech.wav"
            truth = long_form(wav, sentences, pauses)
            encode(wav, out_dir / f"{name}.{ext}")
        rows.append({"key": f"demo/{name}", "uri": f"{name}.{ext}",
                     "meta": {"reference_text": " ".join(u.text for u in truth)}})
    with open(out_dir / "index.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    make_demo(Path(sys.argv[1]))
