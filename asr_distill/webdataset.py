"""WebDataset tar shards as an index: each sample's audio member becomes a row naming its byte range.

WebDataset convention: a sample is the run of consecutive members sharing a key, the member path up to
the first dot of its file name (`clips/a01.flac`, `clips/a01.json` -> key `clips/a01`). A sample's
first audio member is what gets transcribed (read later as one byte range of the tar, so the tar is
never unpacked); a `.json` member is merged into `meta`. Samples without audio are left out.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from typing import BinaryIO, Iterator

from asr_distill.media_files import MEDIA_EXTENSIONS, extension
from asr_distill.shards import ByteRange

META_EXTENSION = "json"


class TarIndexError(ValueError):
    """A tar that cannot be read as a WebDataset shard."""


def _split(name: str) -> tuple[str, str]:
    folder, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(folder, stem), ext.lower()


def tar_samples(source: BinaryIO, tar_name: str) -> Iterator[tuple[int, dict]]:
    """(byte offset of the sample's audio member, raw index row) for every sample with audio.

    `tar_name` is the tar's name relative to where the rows will be resolved (its basename, since a
    row's uri is relative to its index file, here the tar itself).
    """
    try:
        tar = tarfile.open(fileobj=source, mode="r:")
    except tarfile.TarError as err:
        raise TarIndexError(f"not a readable uncompressed tar: {err}") from None
    with tar:
        key, audio, meta = None, None, {}
        for member in _members(tar):
            member_key, ext = _split(member.name)
            if member_key != key:
                if audio is not None:
                    yield audio.offset, _row(key, audio, meta)
                key, audio, meta = member_key, None, {}
            if extension(member.name) in MEDIA_EXTENSIONS and audio is None:
                audio = ByteRange(tar_name, member.offset_data, member.size)
            elif ext == META_EXTENSION:
                meta.update(_json_object(tar, member))
        if audio is not None:
            yield audio.offset, _row(key, audio, meta)


def _members(tar: tarfile.TarFile):
    try:
        for member in tar:
            if member.isfile():
                yield member
    except tarfile.TarError as err:
        raise TarIndexError(f"tar is damaged: {err}") from None


def _json_object(tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict:
    try:
        value = json.loads(tar.extractfile(member).read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"json_error": f"{member.name} is not valid JSON"}
    return value if isinstance(value, dict) else {"json": value}


def _row(key: str, audio: ByteRange, meta: dict) -> dict:
    row = {"key": key, "uri": audio.uri(), "size_bytes": audio.length}
    if meta:
        row["meta"] = meta
    return row
