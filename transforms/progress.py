"""Progress taps: pass-through steps that count what flows by, for the live progress line.

The counts live in this module, in the process that runs the DoFns: with the DirectRunner's default
in-memory mode that is the launcher, which prints them (beam_pipeline/progress.py). Under runners whose
workers are other processes the taps count there and the launcher shows nothing; Beam's metrics (in
run.json) are the record either way.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Callable, Optional

import apache_beam as beam

_LOCK = threading.Lock()
_COUNTS: Counter = Counter()


def snapshot() -> dict:
    with _LOCK:
        return dict(_COUNTS)


def reset() -> None:
    with _LOCK:
        _COUNTS.clear()


class _Tap(beam.DoFn):
    def __init__(self, name: str, amounts: Optional[Callable]):
        self._name = name
        self._amounts = amounts

    def process(self, element):
        extra = self._amounts(element) if self._amounts else {}
        with _LOCK:
            _COUNTS[self._name] += 1
            for key, value in extra.items():
                _COUNTS[key] += value
        yield element


def tap(pcoll, name: str, amounts: Optional[Callable] = None):
    """Counts the elements of pcoll under `name` (and amounts(element) -> {name: value}); returns pcoll."""
    pcoll | f"Progress{name.title().replace('_', '')}" >> beam.ParDo(_Tap(name, amounts))
    return pcoll
