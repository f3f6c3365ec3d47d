"""The live progress line of a local run: files, audio hours, segments, throughput, failures, ETA.

A thread in the launcher reads the progress taps' counts (transforms/progress.py) every `interval_s`
and rewrites one line on a terminal (a new line every `log_every_s` when stderr is not a terminal).
`--quiet` turns it off. ETA is for the phase running: the front end (files admitted but not yet
decoded) or inference (segments cut but not yet transcribed) — the DirectRunner runs them one after
the other.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Optional, TextIO

from transforms import progress as taps


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_line(c: dict, elapsed_s: float) -> str:
    admitted, decoded, failed = c.get("admitted", 0), c.get("decoded", 0), c.get("failed_files", 0)
    cut, transcribed = c.get("segments", 0), c.get("transcribed", 0)
    audio_s = c.get("audio_ms", 0) / 1000
    parts = [f"files {decoded}/{admitted}" if admitted else f"rows {c.get('rows', 0)}",
             f"{audio_s / 3600:.2f} h audio",
             f"segments {transcribed}/{cut}" if transcribed else f"segments {cut}",
             f"{audio_s / elapsed_s:.0f} audio-s/s" if elapsed_s > 0 else "",
             f"failures {failed}", f"done {c.get('transcripts', 0)}"]
    eta = None
    if transcribed and cut > transcribed:
        rate = transcribed / max(elapsed_s - c.get("_inference_start_s", 0.0), 1e-6)
        eta = (cut - transcribed) / rate
    elif admitted and decoded + failed < admitted and decoded + failed:
        eta = (admitted - decoded - failed) / ((decoded + failed) / elapsed_s)
    if eta is not None:
        parts.append(f"ETA {_duration(eta)}" + ("" if transcribed else " (front end)"))
    return " · ".join(p for p in parts if p) + f" · {_duration(elapsed_s)}"


class ProgressLine:
    def __init__(self, stream: Optional[TextIO] = None, interval_s: float = 1.0, log_every_s: float = 15.0):
        self._stream = stream or sys.stderr
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._interval_s = interval_s if self._tty else log_every_s
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._t0 = 0.0
        self._inference_start_s: Optional[float] = None

    def __enter__(self):
        taps.reset()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._show(final=True)

    def _loop(self):
        while not self._stop.wait(self._interval_s):
            self._show(final=False)

    def _show(self, final: bool):
        counts = taps.snapshot()
        elapsed = time.monotonic() - self._t0
        if counts.get("transcribed") and self._inference_start_s is None:
            self._inference_start_s = elapsed - self._interval_s  # first seen within the last interval
        counts["_inference_start_s"] = self._inference_start_s or 0.0
        line = progress_line(counts, elapsed)
        if self._tty:
            self._stream.write("\r" + line.ljust(100) + ("\n" if final else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
