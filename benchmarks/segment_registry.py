"""Segments made before timing, looked up by index inside the pipeline, and the keys that came back.

A separate importable module so that Beam pickles these functions by reference: a function of
`__main__` is pickled by value, with every global it touches (here: all the audio), into each DoFn copy.
"""

import threading

SEGMENTS: list = []
RETURNED: list = []
_LOCK = threading.Lock()


def lookup(i: int):
    return SEGMENTS[i]


def record(keyed) -> None:
    key, text = keyed
    with _LOCK:
        RETURNED.append(f"{key}-{text.index:05d}")


def record_failure(failure) -> None:
    with _LOCK:
        RETURNED.append(("failed", failure.key, failure.segment_index, failure.message))
