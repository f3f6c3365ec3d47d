"""Alibaba OSS through oss2: paths, credentials, and the few object calls the file system needs.

Errors come out as the exceptions the rest of the code already understands: FileNotFoundError for a
missing object, PermissionError for a refused one, TransientIOError (retried with backoff) for 5xx
answers, timeouts and dropped connections. Credentials come from OSS_ACCESS_KEY_ID /
OSS_ACCESS_KEY_SECRET or a credentials file and appear in no message.
"""

from __future__ import annotations

import configparser
import json
import logging
import os
from dataclasses import dataclass
from typing import Iterator, Optional

from asr_distill.retry import RetryPolicy, TransientIOError, retry_call

SCHEME = "oss://"

# oss2 logs every request's headers at DEBUG/INFO, the Authorization header (with the access key id)
# included: keep it to warnings, whatever level the job's logging is at.
logging.getLogger("oss2").setLevel(logging.WARNING)


class OssConfigError(ValueError):
    """OSS cannot be used as configured; the message says what is missing."""


def split_oss_path(path: str) -> tuple[str, str]:
    """oss://bucket/some/key -> ("bucket", "some/key")."""
    if not path.startswith(SCHEME):
        raise ValueError(f"not an oss:// path: {path}")
    bucket, _, key = path[len(SCHEME):].partition("/")
    if not bucket:
        raise ValueError(f"oss:// path without a bucket: {path}")
    return bucket, key


def load_credentials(credentials_file: Optional[str] = None) -> tuple[str, str]:
    """(access key id, secret) from the environment, else from a JSON or INI credentials file."""
    key_id, secret = os.environ.get("OSS_ACCESS_KEY_ID"), os.environ.get("OSS_ACCESS_KEY_SECRET")
    if key_id and secret:
        return key_id, secret
    path = credentials_file or os.environ.get("OSS_CREDENTIALS_FILE")
    if not path:
        raise OssConfigError("no OSS credentials: set OSS_ACCESS_KEY_ID and OSS_ACCESS_KEY_SECRET, or "
                             "OSS_CREDENTIALS_FILE / --oss_credentials_file")
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as err:
        raise OssConfigError(f"cannot read the OSS credentials file: {err.strerror}") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        parser = configparser.ConfigParser()
        parser.read_string(text if text.lstrip().startswith("[") else "[default]\n" + text)
        values = dict(parser[parser.sections()[0]]) if parser.sections() else {}
    key_id, secret = values.get("access_key_id"), values.get("access_key_secret")
    if not key_id or not secret:
        raise OssConfigError("the OSS credentials file needs access_key_id and access_key_secret")
    return key_id, secret


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float


def _translated(err: Exception) -> Exception:
    """oss2's exception as ours; the message names the status and OSS error code only."""
    import oss2

    if isinstance(err, oss2.exceptions.NoSuchKey) or getattr(err, "status", None) == 404:
        return FileNotFoundError(2, f"no such object ({getattr(err, 'code', '') or 'NotFound'})")
    if isinstance(err, oss2.exceptions.RequestError):  # connection refused, reset, timed out
        return TransientIOError(f"OSS request failed: {type(getattr(err, 'exception', err)).__name__}")
    status = getattr(err, "status", 0) or 0
    code = getattr(err, "code", "") or ""
    if status >= 500 or status == 429:
        return TransientIOError(f"OSS answered {status} {code}".strip())
    if status == 403:
        return PermissionError(13, f"OSS refused the request: {code or 'AccessDenied'}")
    return OSError(f"OSS answered {status} {code}".strip())


class OssClient:
    """One endpoint, any bucket; every call retried on transient errors."""

    def __init__(self, endpoint: str, credentials_file: Optional[str] = None,
                 retry: RetryPolicy = RetryPolicy(), timeout_s: float = 30.0):
        import oss2

        if not endpoint:
            raise OssConfigError("no OSS endpoint: set data.oss_endpoint in the config, --oss_endpoint, "
                                 "or OSS_ENDPOINT")
        self._oss2 = oss2
        self._auth = oss2.Auth(*load_credentials(credentials_file))
        self._endpoint = endpoint
        self._retry = retry
        self._timeout_s = timeout_s
        self._buckets: dict = {}

    def _bucket(self, name: str):
        if name not in self._buckets:
            self._buckets[name] = self._oss2.Bucket(self._auth, self._endpoint, name,
                                                    connect_timeout=self._timeout_s)
        return self._buckets[name]

    def _call(self, what: str, fn):
        def once():
            try:
                return fn()
            except self._oss2.exceptions.OssError as err:
                raise _translated(err) from None
        return retry_call(once, self._retry, f"oss {what}")

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        marker = ""
        while True:
            page = self._call("list", lambda m=marker: self._bucket(bucket).list_objects(
                prefix=prefix, marker=m, max_keys=1000))
            for obj in page.object_list:
                yield ObjectInfo(obj.key, obj.size, float(obj.last_modified))
            if not page.is_truncated:
                return
            marker = page.next_marker

    def list_children(self, bucket: str, prefix: str) -> tuple[list[ObjectInfo], list[str]]:
        """One level under prefix (which ends in '/'): its objects, and its sub-prefixes ("folders")."""
        objects, prefixes, marker = [], [], ""
        while True:
            page = self._call("list", lambda m=marker: self._bucket(bucket).list_objects(
                prefix=prefix, delimiter="/", marker=m, max_keys=1000))
            objects += [ObjectInfo(o.key, o.size, float(o.last_modified)) for o in page.object_list]
            prefixes += list(page.prefix_list)
            if not page.is_truncated:
                return objects, prefixes
            marker = page.next_marker

    def head(self, bucket: str, key: str) -> ObjectInfo:
        meta = self._call("head", lambda: self._bucket(bucket).get_object_meta(key))
        return ObjectInfo(key, int(meta.content_length), float(meta.last_modified or 0))

    def get_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object."""
        if end <= start:
            return b""
        return self._call("get", lambda: self._bucket(bucket).get_object(
            key, byte_range=(start, end - 1)).read())

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self._call("put", lambda: self._bucket(bucket).put_object(key, data))

    def start_multipart(self, bucket: str, key: str) -> str:
        return self._call("init multipart", lambda: self._bucket(bucket).init_multipart_upload(key).upload_id)

    def put_part(self, bucket: str, key: str, upload_id: str, number: int, data: bytes):
        result = self._call("upload part", lambda: self._bucket(bucket).upload_part(key, upload_id, number, data))
        return self._oss2.models.PartInfo(number, result.etag)

    def finish_multipart(self, bucket: str, key: str, upload_id: str, parts: list) -> None:
        self._call("complete multipart",
                   lambda: self._bucket(bucket).complete_multipart_upload(key, upload_id, parts))

    def copy(self, bucket: str, src_key: str, dst_key: str) -> None:
        self._call("copy", lambda: self._bucket(bucket).copy_object(bucket, src_key, dst_key))

    def delete(self, bucket: str, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            chunk = keys[i:i + 1000]
            self._call("delete", lambda c=chunk: self._bucket(bucket).batch_delete_objects(c))
