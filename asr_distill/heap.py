"""Give the memory of finished files back to the system, so a worker's RSS does not grow with the corpus.

Each file's wave (float32, 64 KB per audio second) and its copies are freed once its segments are cut,
but glibc keeps most freed chunks inside its heaps instead of returning them: measured on 100 corpus
files decoded, VAD'ed and cut five times over in one process, RSS went 844 -> 1069 MB, and
`malloc_trim(0)` brought it back to 604 MB each time (a leak would not come back). `HeapTrimmer`
calls it once every few files. Where there is no glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Optional


def _malloc_trim() -> Optional[ctypes._CFuncPtr]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


class HeapTrimmer:
    def __init__(self, every: int = 8):
        self._every = every
        self._count = 0
        self._trim = _malloc_trim()

    @property
    def available(self) -> bool:
        return self._trim is not None

    def between_files(self) -> None:
        self._count += 1
        if self._trim is not None and self._count % self._every == 0:
            self._trim(0)
