"""Which files are media: by extension, then by the first bytes (the container's signature); probing.

Used by the index builder, which must tell a million recordings from the notes, thumbnails and
half-copied files lying beside them without decoding anything.
"""

from __future__ import annotations

from typing import BinaryIO, Union

import av

from asr_distill.media import claimed_duration_s, ffmpeg_message

MEDIA_EXTENSIONS = frozenset({
    "wav", "flac", "mp3", "ogg", "opus", "oga", "m4a", "aac", "wma", "aif", "aiff", "aifc", "amr", "webm",
    "mka", "mp4", "mov", "mkv", "avi", "3gp", "caf", "mpg", "mpeg", "ts", "m4v", "wmv", "asf"})
HEAD_BYTES = 4096  # enough for every signature below, and for an ID3 tag header


def extension(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base.lstrip(".") else ""


def _mpeg_audio_sync(head: bytes) -> bool:
    """A bare MP3 frame header or AAC ADTS header: 11 sync bits and no reserved field values.

    This is a sniff, not a proof: about one random file in 3000 passes, and the decode stage fails it.
    """
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    if head[1] & 0xF6 == 0xF0:  # ADTS: MPEG-4/2 AAC, layer bits 00
        return (head[2] >> 2) & 0x0F < 13
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate != 15 and rate != 3


def has_media_signature(head: bytes) -> bool:
    """True when the first bytes of a file are those of a media container or a raw audio stream."""
    if head[:3] == b"ID3":  # ID3v2 before MP3 (or FLAC, AAC) data
        return True
    if head[:4] in (b"RIFF", b"RF64", b"BW64"):
        return head[8:12] in (b"WAVE", b"AVI ")
    if head[:4] == b"FORM":
        return head[8:12] in (b"AIFF", b"AIFC")
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):  # MP4 / MOV / 3GP / M4A
        return True
    if head.startswith((b"fLaC", b"OggS", b"\x1a\x45\xdf\xa3", b"#!AMR", b"caff",
                        b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",  # ASF: WMA / WMV
                        b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):  # MPEG program / video stream
        return True
    if head[:1] == b"\x47" and head[188:189] == b"\x47":  # MPEG transport stream packets
        return True
    return _mpeg_audio_sync(head)


class ProbeError(ValueError):
    pass


def probe(source: Union[str, BinaryIO]) -> dict:
    """duration_s, codec, sample_rate, channels of the first audio stream, from the container alone."""
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise ProbeError("no audio stream")
            stream = container.streams.audio[0]
            duration = claimed_duration_s(container, stream)
            return {"duration_s": None if duration is None else round(duration, 3),
                    "codec": stream.codec_context.codec.canonical_name,
                    "sample_rate": stream.codec_context.sample_rate, "channels": stream.codec_context.channels}
    except av.FFmpegError as err:
        raise ProbeError(f"not a readable media file: {ffmpeg_message(err)}") from None
