"""How terms sound: eSpeak NG's own letter-to-sound rules and dictionary (libespeak-ng, the library of
the `espeak-ng` package), called in-process through ctypes: a term's phonemes in eSpeak's ASCII
notation ("Kubernetes" -> "kj'u:b3n,i:ts"), stress marks kept.

The term retriever reads a term by its phonemes (`model.char_input: phonemes`): a term never heard in
training is still spelled in sounds it has heard (issue 42). Nothing is downloaded: the rules ship
with the system package. Where the library is missing, a glossary can carry its terms'
pronunciations itself (`"pronunciations": {"term": "phonemes"}`), as the GPU machine's corpus does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from functools import lru_cache
from typing import Iterable, Optional

_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: AUDIO_OUTPUT_SYNCHRONOUS (no sound device)
_CHARS_UTF8 = 1
_PHONEMES_ASCII = 0  # phonememode: eSpeak's ASCII mnemonics, as `espeak-ng -x` prints them
_LOCK = threading.Lock()  # the library keeps one global state
NO_ESPEAK = ("no libespeak-ng: install the espeak-ng package (Debian: apt-get install espeak-ng), or give "
             "the glossary's pronunciations in its file")


class PronounceError(RuntimeError):
    pass


@lru_cache(maxsize=None)
def _library(voice: str) -> ctypes.CDLL:
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as err:
        raise PronounceError(NO_ESPEAK) from err
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
    if lib.espeak_Initialize(_SYNCHRONOUS, 0, None, 0) <= 0:
        raise PronounceError("libespeak-ng did not initialise (its data folder missing?)")
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise PronounceError(f"eSpeak NG has no voice {voice!r}")
    return lib


def phonemes(text: str, voice: str = "en-us") -> str:
    """One text's phonemes, its clauses joined by spaces ("Dr. Smith" is two clauses to eSpeak)."""
    lib = _library(voice)
    raw = ctypes.c_char_p(" ".join(text.split()).encode("utf-8"))
    pointer = ctypes.pointer(raw)
    parts = []
    with _LOCK:
        while pointer.contents.value:
            out = lib.espeak_TextToPhonemes(pointer, _CHARS_UTF8, _PHONEMES_ASCII)
            if out:
                parts.append(out.decode("utf-8", "replace").strip())
    return " ".join(p for p in parts if p)


def pronunciations(terms: Iterable[str], given: Optional[dict] = None, voice: str = "en-us") -> list[str]:
    """Each term's phonemes: the glossary's own where it gives one, else eSpeak NG's."""
    given = given or {}
    return [given[t] if t in given else phonemes(t, voice) for t in terms]
