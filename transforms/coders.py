"""A coder for records that carry audio: Beam samples element sizes by encoding the element, which for a
decoded hour of audio means a second, transient copy of it (~230 MB per audio hour). This one pickles
like Beam's default but estimates the size from the sample count."""

from __future__ import annotations

import pickle

import apache_beam as beam

from asr_distill.records import DecodedAudio, Segment, VoicedAudio


def _samples_of(record) -> int:
    if isinstance(record, DecodedAudio):
        return record.wave.nbytes
    if isinstance(record, VoicedAudio):
        return record.audio.wave.nbytes
    return record.audio.nbytes


class AudioRecordCoder(beam.coders.Coder):
    def encode(self, value) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes):
        return pickle.loads(encoded)

    def estimate_size(self, value) -> int:
        return _samples_of(value) + 512  # the row and metadata around the samples

    def is_deterministic(self) -> bool:
        return False


for _kind in (DecodedAudio, VoicedAudio, Segment):
    beam.coders.registry.register_coder(_kind, AudioRecordCoder)
