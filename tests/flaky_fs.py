"""A Beam FileSystem for tests: `flaky:///abs/path` is the local file, except that calls listed in
`FlakyFileSystem.plan` fail the way a remote store does (a reset connection, a timeout) a given number
of times first. Importing this module registers the scheme (Beam finds FileSystem subclasses).

State is class-level, so it works with the in-process DirectRunner that these tests use.
"""

from __future__ import annotations

import io
from collections import Counter

from apache_beam.io.filesystem import FileMetadata, MatchResult
from apache_beam.io.localfilesystem import LocalFileSystem

PREFIX = "flaky://"


def flaky(path) -> str:
    return PREFIX + str(path)


class _BreaksMidRead(io.RawIOBase):
    """Reads some bytes, then the connection drops."""

    def __init__(self, inner, after: int):
        self._inner, self._left = inner, after

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        return self._inner.seek(offset, whence)

    def tell(self):
        return self._inner.tell()

    def readinto(self, buf):
        if self._left <= 0:
            raise ConnectionResetError(104, "Connection reset by peer")
        data = self._inner.read(min(len(buf), self._left))
        self._left -= len(data)
        buf[: len(data)] = data
        return len(data)

    def close(self):
        self._inner.close()
        super().close()


class FlakyFileSystem(LocalFileSystem):
    # (operation, local path or name fragment) -> how many more times it fails
    plan: dict[tuple[str, str], int] = {}
    calls: Counter = Counter()

    @classmethod
    def scheme(cls):
        return "flaky"

    @classmethod
    def reset(cls, plan=None):
        cls.plan = dict(plan or {})
        cls.calls = Counter()

    @classmethod
    def _trip(cls, op: str, path: str) -> bool:
        for (plan_op, fragment), left in cls.plan.items():
            if plan_op == op and fragment in path and left > 0:
                cls.plan[(plan_op, fragment)] = left - 1
                return True
        return False

    def _local(self, path: str) -> str:
        return path[len(PREFIX):] if path.startswith(PREFIX) else path

    def open(self, path, mime_type="application/octet-stream", compression_type="auto"):
        local = self._local(path)
        FlakyFileSystem.calls[("open", local)] += 1
        if self._trip("open", local):
            raise TimeoutError("timed out")
        f = super().open(local, mime_type, compression_type)
        if self._trip("read", local):
            return io.BufferedReader(_BreaksMidRead(f, after=4096))
        return f

    def create(self, path, mime_type="application/octet-stream", compression_type="auto"):
        local = self._local(path)
        if self._trip("create", local):
            raise ConnectionResetError(104, "Connection reset by peer")
        return super().create(local, mime_type, compression_type)

    def rename(self, sources, destinations):
        for dst in destinations:
            if self._trip("rename", self._local(dst)):
                raise ConnectionResetError(104, "Connection reset by peer")
        super().rename([self._local(s) for s in sources], [self._local(d) for d in destinations])

    def match(self, patterns, limits=None):
        results = super().match([self._local(p) for p in patterns], limits)
        return [MatchResult(PREFIX + r.pattern, [FileMetadata(PREFIX + m.path, m.size_in_bytes, m.last_updated_in_seconds)
                                                 for m in r.metadata_list]) for r in results]

    def exists(self, path):
        return super().exists(self._local(path))

    def mkdirs(self, path):
        return super().mkdirs(self._local(path))

    def delete(self, paths):
        return LocalFileSystem(None).delete([self._local(p) for p in paths])

    def size(self, path):
        return super().size(self._local(path))

    def metadata(self, path):
        m = super().metadata(self._local(path))
        return FileMetadata(PREFIX + m.path, m.size_in_bytes, m.last_updated_in_seconds)
