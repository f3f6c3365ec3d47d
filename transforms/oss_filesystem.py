"""`oss://bucket/key` for every Beam IO: a FileSystem over asr_distill.oss (oss2).

Importing this module registers the scheme (Beam finds FileSystem subclasses); the pipeline modules
import it, so workers have it too. Reads are ranged GETs behind a buffered, seekable stream; writes
are a single PUT for small objects and a multipart upload beyond one part. OSS has no directories:
`mkdirs` does nothing and `delete` of a "dir/" removes everything under that prefix.
"""

from __future__ import annotations

import io
import os
import posixpath
from typing import Optional

from apache_beam.io.filesystem import BeamIOError, CompressedFile, CompressionTypes, FileMetadata, FileSystem
from apache_beam.io.filesystemio import Downloader, DownloaderStream, Uploader, UploaderStream
from apache_beam.options.pipeline_options import PipelineOptions

from asr_distill.oss import SCHEME, OssClient, split_oss_path

PART_BYTES = 16 * 2**20  # multipart part size (OSS allows 100 KB .. 5 GB)
READ_BUFFER = 4 * 2**20


class OssOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--oss_endpoint", default=None,
                            help="OSS endpoint, e.g. https://oss-cn-hangzhou-internal.aliyuncs.com "
                                 "(else data.oss_endpoint in the config, else OSS_ENDPOINT).")
        parser.add_argument("--oss_timeout_s", type=float, default=30.0,
                            help="Connect/read timeout of one OSS request; timeouts are retried.")
        parser.add_argument("--oss_credentials_file", default=None,
                            help="JSON or INI file with access_key_id / access_key_secret (else the "
                                 "OSS_ACCESS_KEY_ID / OSS_ACCESS_KEY_SECRET environment variables).")


_CLIENTS: dict = {}


def _client(options: Optional[PipelineOptions]) -> OssClient:
    oss = options.view_as(OssOptions) if options is not None else None
    endpoint = (oss and oss.oss_endpoint) or os.environ.get("OSS_ENDPOINT")
    credentials_file = oss and oss.oss_credentials_file
    timeout_s = (oss and oss.oss_timeout_s) or 30.0
    key = (endpoint, credentials_file, timeout_s)
    if key not in _CLIENTS:  # one client (and connection pool) per process
        _CLIENTS[key] = OssClient(endpoint, credentials_file, timeout_s=timeout_s)
    return _CLIENTS[key]


class _ObjectDownloader(Downloader):
    def __init__(self, client: OssClient, bucket: str, key: str):
        self._client, self._bucket, self._key = client, bucket, key
        self._size = client.head(bucket, key).size

    @property
    def size(self):
        return self._size

    def get_range(self, start, end):
        # OSS answers a range past the end with the whole object: never ask for one.
        return self._client.get_range(self._bucket, self._key, start, min(end, self._size))


class _ObjectUploader(Uploader):
    """Buffers a part; the first full part starts a multipart upload, a small object is one PUT."""

    def __init__(self, client: OssClient, bucket: str, key: str):
        self._client, self._bucket, self._key = client, bucket, key
        self._buffer = bytearray()
        self._upload_id = None
        self._parts: list = []

    def put(self, data):
        self._buffer += data
        while len(self._buffer) >= PART_BYTES:
            self._send_part(bytes(self._buffer[:PART_BYTES]))
            del self._buffer[:PART_BYTES]

    def _send_part(self, data: bytes):
        if self._upload_id is None:
            self._upload_id = self._client.start_multipart(self._bucket, self._key)
        number = len(self._parts) + 1
        self._parts.append(self._client.put_part(self._bucket, self._key, self._upload_id, number, data))

    def finish(self):
        if self._upload_id is None:
            self._client.put(self._bucket, self._key, bytes(self._buffer))
            return
        if self._buffer:
            self._send_part(bytes(self._buffer))
        self._client.finish_multipart(self._bucket, self._key, self._upload_id, self._parts)


class OssFileSystem(FileSystem):
    CHUNK_SIZE = READ_BUFFER

    def __init__(self, pipeline_options):
        super().__init__(pipeline_options)
        self._options = pipeline_options

    @classmethod
    def scheme(cls):
        return "oss"

    @property
    def _oss(self) -> OssClient:
        return _client(self._options)

    def join(self, basepath, *paths):
        path = basepath
        for p in paths:
            path = path.rstrip("/") + "/" + p.lstrip("/")
        return path

    def split(self, path):
        bucket, key = split_oss_path(path)
        head, tail = posixpath.split(key)
        return f"{SCHEME}{bucket}/{head}".rstrip("/") if head else f"{SCHEME}{bucket}", tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        bucket, prefix = split_oss_path(dir_or_prefix)
        try:
            for obj in self._oss.list(bucket, prefix):
                yield FileMetadata(f"{SCHEME}{bucket}/{obj.key}", obj.size, obj.mtime)
        except OSError as err:
            raise BeamIOError("List operation failed", {dir_or_prefix: err}) from None

    def list_children(self, path: str) -> tuple[list[FileMetadata], list[str]]:
        """One level under path: the objects there and the sub-prefixes, so a caller can list in parallel."""
        bucket, prefix = split_oss_path(path.rstrip("/") + "/")
        objects, prefixes = self._oss.list_children(bucket, prefix)
        return ([FileMetadata(f"{SCHEME}{bucket}/{o.key}", o.size, o.mtime) for o in objects],
                [f"{SCHEME}{bucket}/{p}" for p in prefixes])

    def _raw(self, path, mime_type, compression_type, writing: bool):
        bucket, key = split_oss_path(path)
        if writing:
            raw = io.BufferedWriter(UploaderStream(_ObjectUploader(self._oss, bucket, key)), buffer_size=PART_BYTES)
        else:
            raw = io.BufferedReader(DownloaderStream(_ObjectDownloader(self._oss, bucket, key),
                                                     read_buffer_size=READ_BUFFER),
                                    buffer_size=READ_BUFFER)
        if compression_type == CompressionTypes.AUTO:
            compression_type = CompressionTypes.detect_compression_type(path)
        if compression_type == CompressionTypes.UNCOMPRESSED:
            return raw
        return CompressedFile(raw, compression_type=compression_type)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._raw(path, mime_type, compression_type, writing=True)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._raw(path, mime_type, compression_type, writing=False)

    def copy(self, source_file_names, destination_file_names):
        errors = {}
        for src, dst in zip(source_file_names, destination_file_names):
            try:
                (sb, sk), (db, dk) = split_oss_path(src), split_oss_path(dst)
                if sb != db:
                    raise OSError("copying between buckets is not supported")
                self._oss.copy(sb, sk, dk)
            except OSError as err:
                errors[(src, dst)] = err
        if errors:
            raise BeamIOError("Copy operation failed", errors)

    def rename(self, source_file_names, destination_file_names):
        # Copy then delete: readers only ever look at final names, so the copy is what commits.
        self.copy(source_file_names, destination_file_names)
        self.delete(list(source_file_names))

    def exists(self, path):
        bucket, key = split_oss_path(path)
        try:
            self._oss.head(bucket, key)
            return True
        except FileNotFoundError:
            return key.endswith("/") or any(True for _ in self._oss.list(bucket, key.rstrip("/") + "/"))

    def size(self, path):
        return self.metadata(path).size_in_bytes

    def last_updated(self, path):
        return self.metadata(path).last_updated_in_seconds

    def checksum(self, path):
        return str(self.metadata(path).size_in_bytes)

    def metadata(self, path):
        bucket, key = split_oss_path(path)
        try:
            info = self._oss.head(bucket, key)
        except OSError as err:
            raise BeamIOError("Metadata operation failed", {path: err}) from None
        return FileMetadata(path, info.size, info.mtime)

    def delete(self, paths):
        errors = {}
        for path in paths:
            bucket, key = split_oss_path(path)
            try:
                keys = [key] if not key.endswith("/") else []
                if key.endswith("/") or not self._object_exists(bucket, key):
                    keys += [o.key for o in self._oss.list(bucket, key.rstrip("/") + "/")]
                if not keys:
                    raise FileNotFoundError(2, "nothing to delete")
                self._oss.delete(bucket, keys)
            except OSError as err:
                errors[path] = err
        if errors:
            raise BeamIOError("Delete operation failed", errors)

    def _object_exists(self, bucket: str, key: str) -> bool:
        try:
            self._oss.head(bucket, key)
            return True
        except FileNotFoundError:
            return False
