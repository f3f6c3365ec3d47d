"""Index rows: parse and validate one row of a JSONL or Parquet index."""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any, Optional

from asr_distill.records import IndexRow

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class IndexRowError(ValueError):
    """A row that cannot become an IndexRow."""


def default_key(uri: str) -> str:
    """The uri without its scheme and extension: oss://b/dir/a.mp3 -> b/dir/a."""
    path = _SCHEME.sub("", uri)
    root, _ext = posixpath.splitext(path)
    return root.lstrip("/") or path


def resolve_uri(uri: str, index_path: Optional[str]) -> str:
    """Relative paths in an index are relative to the index file's folder (local or oss://...)."""
    if _SCHEME.match(uri) or posixpath.isabs(uri) or not index_path:
        return uri
    scheme = _SCHEME.match(index_path)
    prefix = scheme.group(0) if scheme else ""
    base = posixpath.dirname(index_path[len(prefix):])
    return prefix + posixpath.normpath(posixpath.join(base, uri)) if base else prefix + uri


def parse_json_line(line: str) -> dict:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as err:
        raise IndexRowError(f"line is not valid JSON: {err.msg} at column {err.colno}") from None
    if not isinstance(raw, dict):
        raise IndexRowError(f"line is a JSON {type(raw).__name__}, not an object")
    return raw


def _optional(raw: dict, name: str, kind: type) -> Any:
    value = raw.get(name)
    if value is None:
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise IndexRowError(f"field {name!r} must be {kind.__name__}, got {value!r}") from None


def parse_index_row(raw: dict, index_path: Optional[str] = None) -> IndexRow:
    uri = raw.get("uri")
    if not isinstance(uri, str) or not uri.strip():
        raise IndexRowError("row has no 'uri'")
    uri = resolve_uri(uri.strip(), index_path)
    key = raw.get("key")
    if key is None or (isinstance(key, str) and not key.strip()):
        key = default_key(raw["uri"].strip())
    meta = raw.get("meta") or {}
    if not isinstance(meta, dict):
        raise IndexRowError(f"field 'meta' must be an object, got {type(meta).__name__}")
    return IndexRow(key=str(key), uri=uri, duration_s=_optional(raw, "duration_s", float),
                    size_bytes=_optional(raw, "size_bytes", int),
                    language=_optional(raw, "language", str), meta=meta,
                    reference_text=_optional(raw, "text", str))


def row_identity(raw: Any) -> tuple[Optional[str], Optional[str]]:
    """Best-effort (key, uri) of a row that failed to parse, for its failure record."""
    if not isinstance(raw, dict):
        return None, None
    uri = raw.get("uri") if isinstance(raw.get("uri"), str) else None
    key = raw.get("key")
    if key is None and uri:
        key = default_key(uri)
    return (str(key) if key is not None else None), uri
