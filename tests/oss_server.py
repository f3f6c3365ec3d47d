"""A small OSS-compatible HTTP server on loopback for tests: the part of the OSS REST API our file
system uses (put/get with ranges/head/delete/copy objects, list with or without a delimiter, multipart upload,
batch delete),
path-style addressing, and V1 signatures checked on every request (a wrong secret gets 403).

Faults can be injected: `server.faults.append(Fault("GET", "a.wav", "500", times=2))` answers the next
two GETs of a key containing "a.wav" with a 500; kind "slow" stalls the answer past the client's timeout.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

# Query parameters that are part of what is signed (the OSS V1 "sub-resources" this server knows).
SIGNED_SUBRESOURCES = {"acl", "uploads", "uploadId", "partNumber", "delete", "objectMeta", "location",
                       "append", "position", "tagging", "symlink", "restore", "security-token"}


@dataclass
class Fault:
    method: str
    key_fragment: str
    kind: str  # "500" or "slow"
    times: int = 1


class FakeOss:
    def __init__(self, access_key_id: str, access_key_secret: str, slow_s: float = 3.0):
        self.key_id = access_key_id
        self.secret = access_key_secret
        self.slow_s = slow_s
        self.buckets: dict[str, dict[str, tuple[bytes, float]]] = {}
        self.uploads: dict[str, dict] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"oss": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def fault_for(self, method: str, key: str):
        with self.lock:
            for f in self.faults:
                if f.method == method and f.key_fragment in key and f.times > 0:
                    f.times -= 1
                    return f.kind
        return None


def _xml(tag: str, body: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{tag}>{body}</{tag}>'.encode()


def _etag(data: bytes) -> str:
    # Cheap and stable enough for a test server (a real MD5 of a large object on every ranged GET is slow).
    return hashlib.md5(data[:4096] + len(data).to_bytes(8, "little")).hexdigest().upper()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


class _Handler(BaseHTTPRequestHandler):
    oss: FakeOss
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # -- plumbing -----------------------------------------------------------------------------------
    def _parse(self):
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        bucket, _, key = path.lstrip("/").partition("/")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        return bucket, key, query, body

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.send_header("x-oss-request-id", uuid.uuid4().hex)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str):
        body = _xml("Error", f"<Code>{code}</Code><Message>{escape(message)}</Message>"
                             f"<RequestId>{uuid.uuid4().hex}</RequestId><HostId>127.0.0.1</HostId>")
        self._send(status, body, {"Content-Type": "application/xml"})

    def _signature_ok(self, bucket: str, key: str, query: dict) -> bool:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("OSS ") or ":" not in auth:
            return False
        key_id, _, given = auth[4:].partition(":")
        oss_headers = sorted((k.lower(), v.strip()) for k, v in self.headers.items()
                             if k.lower().startswith("x-oss-"))
        resource = f"/{bucket}/{key}" if bucket else "/"
        sub = sorted((k, v) for k, v in query.items() if k in SIGNED_SUBRESOURCES)
        if sub:
            resource += "?" + "&".join(k if v == "" else f"{k}={v}" for k, v in sub)
        to_sign = "\n".join([self.command, self.headers.get("Content-MD5", ""),
                             self.headers.get("Content-Type", ""), self.headers.get("Date", "")])
        to_sign += "\n" + "".join(f"{k}:{v}\n" for k, v in oss_headers) + resource
        want = base64.b64encode(hmac.new(self.oss.secret.encode(), to_sign.encode(), hashlib.sha1).digest())
        return key_id == self.oss.key_id and hmac.compare_digest(want.decode(), given)

    def _handle(self):
        bucket, key, query, body = self._parse()
        self.oss.requests.append((self.command, key))
        if not self._signature_ok(bucket, key, query):
            return self._error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match")
        fault = self.oss.fault_for(self.command, key)
        if fault == "500":
            return self._error(500, "InternalError", "injected")
        if fault == "slow":
            time.sleep(self.oss.slow_s)
        objects = self.oss.buckets.setdefault(bucket, {})
        getattr(self, f"_{self.command.lower()}")(bucket, key, query, body, objects)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle

    # -- operations ---------------------------------------------------------------------------------
    def _get(self, bucket, key, query, body, objects):
        if not key:
            return self._list(bucket, query, objects)
        if key not in objects:
            return self._error(404, "NoSuchKey", "The specified key does not exist.")
        data, mtime = objects[key]
        headers = {"Last-Modified": email.utils.formatdate(mtime, usegmt=True),
                   "ETag": f'"{_etag(data)}"', "Content-Type": "application/octet-stream"}
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(206, data[start:end + 1], headers)
        self._send(200, data, headers)

    def _head(self, bucket, key, query, body, objects):
        if key not in objects:
            return self._send(404, b"", {"Content-Length": "0"})
        data, mtime = objects[key]
        self._send(200, b"", {"Content-Length": str(len(data)),
                              "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
                              "ETag": f'"{_etag(data)}"'})

    def _list(self, bucket, query, objects):
        prefix, marker = query.get("prefix", ""), query.get("marker", "")
        delimiter = query.get("delimiter", "")
        limit = int(query.get("max-keys", 100))
        entries = []  # (name, is a common prefix), in key order
        for k in sorted(k for k in objects if k.startswith(prefix) and k > marker):
            rest = k[len(prefix):]
            if delimiter and delimiter in rest:
                common = prefix + rest.split(delimiter, 1)[0] + delimiter
                if common > marker and (not entries or entries[-1][0] != common):
                    entries.append((common, True))
            else:
                entries.append((k, False))
        page, truncated = entries[:limit], len(entries) > limit
        items = "".join(
            f"<CommonPrefixes><Prefix>{escape(k)}</Prefix></CommonPrefixes>" if is_prefix else
            f"<Contents><Key>{escape(k)}</Key><LastModified>{_iso(objects[k][1])}</LastModified>"
            f"<ETag>\"{_etag(objects[k][0])}\"</ETag><Type>Normal</Type>"
            f"<Size>{len(objects[k][0])}</Size><StorageClass>Standard</StorageClass></Contents>"
            for k, is_prefix in page)
        next_marker = f"<NextMarker>{escape(page[-1][0])}</NextMarker>" if truncated else ""
        self._send(200, _xml("ListBucketResult",
                             f"<Name>{bucket}</Name><Prefix>{escape(prefix)}</Prefix><Marker>{escape(marker)}</Marker>"
                             f"<MaxKeys>{limit}</MaxKeys><Delimiter>{escape(delimiter)}</Delimiter>"
                             f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{next_marker}{items}"),
                   {"Content-Type": "application/xml"})

    def _put(self, bucket, key, query, body, objects):
        if "uploadId" in query:
            upload = self.oss.uploads.get(query["uploadId"])
            if upload is None:
                return self._error(404, "NoSuchUpload", "no such upload")
            upload["parts"][int(query["partNumber"])] = body
            return self._send(200, b"", {"ETag": f'"{_etag(body)}"'})
        source = self.headers.get("x-oss-copy-source")
        if source:
            src_bucket, _, src_key = unquote(source).lstrip("/").partition("/")
            src = self.oss.buckets.get(src_bucket, {}).get(src_key)
            if src is None:
                return self._error(404, "NoSuchKey", "The specified key does not exist.")
            objects[key] = (src[0], time.time())
            return self._send(200, _xml("CopyObjectResult", f"<LastModified>{_iso(time.time())}</LastModified>"
                                        f"<ETag>\"{_etag(src[0])}\"</ETag>"),
                              {"Content-Type": "application/xml"})
        objects[key] = (body, time.time())
        self._send(200, b"", {"ETag": f'"{_etag(body)}"'})

    def _post(self, bucket, key, query, body, objects):
        if "uploads" in query:
            upload_id = uuid.uuid4().hex
            self.oss.uploads[upload_id] = {"bucket": bucket, "key": key, "parts": {}}
            return self._send(200, _xml("InitiateMultipartUploadResult",
                                        f"<Bucket>{bucket}</Bucket><Key>{escape(key)}</Key><UploadId>{upload_id}</UploadId>"),
                              {"Content-Type": "application/xml"})
        if "uploadId" in query:
            upload = self.oss.uploads.pop(query["uploadId"], None)
            if upload is None:
                return self._error(404, "NoSuchUpload", "no such upload")
            numbers = [int(n.text) for n in ElementTree.fromstring(body).iter("PartNumber")]
            data = b"".join(upload["parts"][n] for n in numbers)
            objects[key] = (data, time.time())
            return self._send(200, _xml("CompleteMultipartUploadResult",
                                        f"<Bucket>{bucket}</Bucket><Key>{escape(key)}</Key>"
                                        f"<ETag>\"{_etag(data)}\"</ETag>"),
                              {"Content-Type": "application/xml"})
        if "delete" in query:
            root = ElementTree.fromstring(body)
            deleted = [n.text for n in root.iter("Key")]
            for k in deleted:
                objects.pop(k, None)
            quiet = (root.findtext("Quiet") or "false") == "true"
            items = "" if quiet else "".join(f"<Deleted><Key>{escape(k)}</Key></Deleted>" for k in deleted)
            return self._send(200, _xml("DeleteResult", items), {"Content-Type": "application/xml"})
        self._error(400, "InvalidRequest", "unsupported POST")

    def _delete(self, bucket, key, query, body, objects):
        objects.pop(key, None)
        self._send(204)
