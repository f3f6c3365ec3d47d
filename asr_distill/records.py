"""The records every stage and test shares (see DESIGN.md "Records").

Time is always seconds as float; sample arrays are float32, 16 kHz, mono.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from asr_distill.redact import redact

SAMPLE_RATE = 16000
_NO_AUDIO = np.zeros(0, np.float32)
STAGES = ("index", "read", "decode", "vad", "segment", "inference", "write")


@dataclass(frozen=True)
class IndexRow:
    key: str
    uri: str
    duration_s: Optional[float] = None
    size_bytes: Optional[int] = None
    language: Optional[str] = None
    meta: dict = field(default_factory=dict)
    reference_text: Optional[str] = None  # the row's `text`: a reference transcript (asr_distill/reference.py)
    # Set by Admit on --resume: indexes of this file's segments whose texts were committed before,
    # so the segment stage cuts them but does not send them to the model again.
    done_segments: tuple = ()


@dataclass(frozen=True)
class Failure:
    """One thing that did not make it, with the stage that gave up on it."""

    key: Optional[str]
    uri: Optional[str]
    stage: str
    error_type: str
    message: str
    segment_index: Optional[int] = None

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}")
        # Whoever built it, a failure record never carries credentials.
        object.__setattr__(self, "uri", redact(self.uri))
        object.__setattr__(self, "message", redact(self.message))

    @classmethod
    def of(cls, row: Optional[IndexRow], stage: str, err: BaseException,
           segment_index: Optional[int] = None) -> "Failure":
        return cls(key=row.key if row else None, uri=row.uri if row else None, stage=stage,
                   error_type=type(err).__name__, message=str(err) or type(err).__name__,
                   segment_index=segment_index)

    def to_json(self) -> dict:
        out = {"key": self.key, "uri": self.uri, "stage": self.stage,
               "error_type": self.error_type, "message": self.message}
        if self.segment_index is not None:
            out["segment_index"] = self.segment_index
        return out


@dataclass(frozen=True, eq=False)
class DecodedAudio:
    row: IndexRow
    wave: np.ndarray  # float32, SAMPLE_RATE, mono

    @property
    def duration_s(self) -> float:
        return len(self.wave) / SAMPLE_RATE


@dataclass(frozen=True)
class Region:
    """A stretch of a file in seconds from its start.

    A packed region also lists the `parts` whose audio, joined, is what the model hears: speech with
    the silences between shortened.
    """

    start_s: float
    end_s: float
    parts: tuple = ()  # tuple[tuple[float, float], ...]

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True, eq=False)
class VoicedAudio:
    """Decoded audio with the speech regions VAD found in it."""

    audio: DecodedAudio
    regions: list  # list[Region], in time order


@dataclass(frozen=True, eq=False)
class Segment:
    """A piece of one file's speech, at most max_segment_s long, sent to the model as one request."""

    key: str
    index: int
    start_s: float
    end_s: float
    audio: np.ndarray
    language: Optional[str] = None
    uri: Optional[str] = None
    parts: tuple = ()  # packed segments: the (start_s, end_s) stretches joined into `audio`
    hints: Optional[tuple] = None  # with --retriever: the glossary terms found likely in it, for the prompt

    @property
    def segment_id(self) -> str:
        return segment_id(self.key, self.index)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def without_audio(self) -> "Segment":
        """The same segment without its samples: what travels once the model has heard it."""
        return dataclasses.replace(self, audio=_NO_AUDIO)


def segment_id(key: str, index: int) -> str:
    return f"{key}-{index:05d}"


@dataclass(frozen=True)
class FileInfo:
    """What reassembly needs to know about a file besides its segments' texts."""

    row: IndexRow
    duration_s: float
    speech_s: float
    num_segments: int


@dataclass(frozen=True)
class SegmentText:
    """The model's transcript of one segment, with the quality signals the backend gives."""

    key: str
    index: int
    start_s: float
    end_s: float
    text: str
    signals: dict[str, Any] = field(default_factory=dict)
    parts: tuple = ()
    chunks: Optional[dict] = None  # with --glossary: its term chunks and skipped hits (transforms/terms.py)
    hints: Optional[tuple] = None  # with --retriever: the term hints its prompt had

    def to_json(self) -> dict:
        out = {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "text": self.text,
               **self.signals}
        if self.parts:
            out["parts"] = [[round(a, 3), round(b, 3)] for a, b in self.parts]
        if self.hints is not None:
            out["meta"] = {"term_hints": list(self.hints)}
        return out
