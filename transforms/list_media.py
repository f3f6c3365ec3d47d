"""ListMedia: a directory or prefix (any FileSystems scheme) -> one index row per media file under it.

The root is listed one level deep first (local folders, and oss:// with a delimiter listing); each
folder under it is then listed, recursively, by whichever worker gets it, so a corpus kept in many
folders is listed in parallel (other schemes: the root is listed whole by one worker). Then, spread
over the workers: files are kept by extension, then by their first bytes, and with `probe` opened by
PyAV for duration, codec, rate and channels. Hidden files and folders (a name starting with '.') are
left out; a file with a media extension that is not media becomes a failure (stage index).
"""

from __future__ import annotations

import os
import posixpath
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from asr_distill.media_files import HEAD_BYTES, MEDIA_EXTENSIONS, ProbeError, extension, has_media_signature, probe
from asr_distill.records import Failure
from asr_distill.retry import RetryPolicy, retry_call
from transforms.common import FAILURES, GOOD


class NotMediaError(ValueError):
    pass


class ListedMedia(NamedTuple):
    rows: beam.PCollection  # dict: key, uri, size_bytes (+ duration_s, codec, sample_rate, channels)
    failures: beam.PCollection  # Failure


def relative_key(root: str, path: str) -> str:
    """The path under root, without its extension: ROOT/a/b c.mp3 -> 'a/b c'."""
    rel = path[len(root):].lstrip("/")
    stem, ext = posixpath.splitext(rel)
    return stem if ext else rel


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def _children(root: str):
    """(files as (path, size), folders) one level under root, or None when the scheme cannot say."""
    if FileSystems.get_scheme(root) is None:
        with os.scandir(root) as entries:
            found = list(entries)
        return ([(e.path, e.stat().st_size) for e in found if e.is_file()],
                [e.path for e in found if e.is_dir()])
    fs = FileSystems.get_filesystem(root)
    if hasattr(fs, "list_children"):  # oss://
        files, folders = fs.list_children(root)
        return [(m.path, m.size_in_bytes) for m in files], folders
    return None


class _Keep:
    """Counts what is listed and keeps candidates by name: not hidden, a media extension."""

    def __init__(self, root: str):
        self._root = root

    def __call__(self, path: str, size: int):
        Metrics.counter("index", "files_listed").inc()
        rel = path[len(self._root):].lstrip("/")
        if _hidden(rel) or extension(rel) not in MEDIA_EXTENSIONS:
            Metrics.counter("index", "files_not_media").inc()
            return []
        return [(path, size)]


class _Split(beam.DoFn):
    """root -> ("file", (path, size)) for files directly under it, ("folder", path) for each folder."""

    def __init__(self, retry: RetryPolicy):
        self._retry = retry

    def process(self, root: str):
        children = retry_call(lambda: _children(root), self._retry, "list media")
        if children is None:
            yield "folder", root
            return
        files, folders = children
        keep = _Keep(root)
        for path, size in files:
            yield from (("file", item) for item in keep(path, size))
        for folder in folders:
            if not _hidden(folder.rstrip("/").rsplit("/", 1)[-1]):
                yield "folder", folder


class _List(beam.DoFn):
    def __init__(self, root: str, retry: RetryPolicy):
        self._root = root
        self._retry = retry

    def process(self, item):
        kind, value = item
        if kind == "file":
            yield value
            return
        keep = _Keep(self._root)
        found = retry_call(lambda: FileSystems.match([FileSystems.join(value.rstrip("/"), "**")])[0].metadata_list,
                           self._retry, "list media")
        for meta in found:
            yield from keep(meta.path, meta.size_in_bytes)


class _Inspect(beam.DoFn):
    def __init__(self, root: str, probe: bool, retry: RetryPolicy):
        self._root, self._probe, self._retry = root, probe, retry

    def process(self, item):
        path, size = item
        row = {"key": relative_key(self._root, path), "uri": path, "size_bytes": size}
        try:
            row.update(retry_call(lambda: self._inspect(path), self._retry, "inspect media"))
        except (NotMediaError, ProbeError, OSError) as err:
            Metrics.counter("index", "files_rejected").inc()
            yield beam.pvalue.TaggedOutput(FAILURES, Failure(key=row["key"], uri=path, stage="index",
                                                             error_type=type(err).__name__,
                                                             message=str(err) or type(err).__name__))
            return
        Metrics.counter("index", "media_files").inc()
        yield row

    def _inspect(self, path: str) -> dict:
        with FileSystems.open(path, mime_type="application/octet-stream",
                              compression_type=CompressionTypes.UNCOMPRESSED) as f:
            head = f.read(HEAD_BYTES)
            if not head:
                raise NotMediaError("file is empty")
            if not has_media_signature(head):
                raise NotMediaError(f"has a media extension but not a media file's first bytes ({head[:8]!r})")
            if not self._probe:
                return {}
            f.seek(0)
            return probe(f)


class ListMedia(beam.PTransform):
    def __init__(self, root: str, probe: bool = False, retry: RetryPolicy = RetryPolicy()):
        super().__init__()
        self._root = root.rstrip("/")
        self._probe = probe
        self._retry = retry

    def expand(self, pbegin) -> ListedMedia:
        out = (pbegin
               | "Root" >> beam.Create([self._root])
               | "Split" >> beam.ParDo(_Split(self._retry))
               | "SpreadFolders" >> beam.Reshuffle()
               | "List" >> beam.ParDo(_List(self._root, self._retry))
               | "Spread" >> beam.Reshuffle()
               | "Inspect" >> beam.ParDo(_Inspect(self._root, self._probe, self._retry))
               .with_outputs(FAILURES, main=GOOD))
        return ListedMedia(out[GOOD], out[FAILURES])
