"""Where a remote store's bytes live: a folder (``file:///path``) or S3 (``s3://bucket/prefix``).

A backend knows five operations on keys (``objects/ab/cdef...``, ``bubbles/...``), all it
needs from an object store:

- ``get(key, start=0, end=None)`` -> bytes (``[start:end]`` by a ranged read when ``end`` is
  given), or ``None`` when the key does not exist
- ``exists(key)`` -> bool
- ``put_new(key, data)`` -> True if written, False if the key existed (create-only: never
  overwrites; S3 ``PutObject`` with ``If-None-Match: *``, a folder ``link(2)``)
- ``list(prefix)`` -> every key under ``prefix``

Each counts its requests and bytes in ``stats`` (the benchmark and the tests read them).
The S3 backend needs boto3 (``pip install 'pip-omni[s3]'``), imported only when an
``s3://`` remote is used.
"""

from __future__ import annotations

import collections
import os
import re
import threading
import uuid

from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import makedirs  # 0755 whatever the umask, as the store's own

__all__ = ["RemoteStoreError", "Backend", "FileBackend", "S3Backend", "open_backend", "MAX_GET_BYTES"]

MAX_GET_BYTES = 1 << 30  # one object, as for archive members
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class RemoteStoreError(OmnipkgError, OSError):
    """A remote store that cannot be read or written, or that holds something wrong."""


class Backend:
    url: str

    def __init__(self) -> None:
        self.stats = {"requests": 0, "bytes_up": 0, "bytes_down": 0}
        self.gets: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def _count(self, up: int = 0, down: int = 0, get: str | None = None) -> None:
        with self._lock:
            self.stats["requests"] += 1
            self.stats["bytes_up"] += up
            self.stats["bytes_down"] += down
            if get is not None:
                self.gets[get] += 1

    workers = 4  # parallel transfers


class FileBackend(Backend):
    """A folder, local or on a network filesystem. Create-only writes: a file written in
    ``<root>/tmp/`` and hard-linked to its key (``link`` fails if the key exists)."""

    def __init__(self, root: str, url: str) -> None:
        super().__init__()
        self.root = root
        self.url = url

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes | None:
        """The bytes of ``key`` (``[start:end]`` only, when given), or None if it does not exist."""
        self._count(get=key)
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                data = f.read(MAX_GET_BYTES + 1 if end is None else end - start)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise RemoteStoreError(f"cannot read {key!r} from the remote {self.url!r}: {e.strerror}",
                                   "is the shared folder mounted and readable?") from None
        with self._lock:
            self.stats["bytes_down"] += len(data)
        return data

    def exists(self, key: str) -> bool:
        self._count()
        return os.path.exists(self._path(key))

    def put_new(self, key: str, data: bytes) -> bool:
        dest = self._path(key)
        if os.path.exists(dest):
            self._count()
            return False
        self._count(up=len(data))
        tmpdir = os.path.join(self.root, "tmp")
        tmp = os.path.join(tmpdir, uuid.uuid4().hex)
        try:
            makedirs(tmpdir)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o444)
            makedirs(os.path.dirname(dest))
            try:
                os.link(tmp, dest)  # atomic and create-only: a reader sees all of it or nothing
            except FileExistsError:
                return False
            return True
        except OSError as e:
            raise RemoteStoreError(f"cannot write {key!r} to the remote {self.url!r}: {e.strerror}",
                                   "is the shared folder mounted and writable?") from None
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def list(self, prefix: str) -> list[str]:
        self._count()
        base = self._path(prefix.rstrip("/"))
        out = []
        for dirpath, dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            if rel == ".":
                dirs[:] = [d for d in dirs if d != "tmp"]  # writers' staging, not keys
                out += files
            else:
                out += [f"{rel}/{f}" for f in files]
        return sorted(out)


class S3Backend(Backend):
    """``s3://bucket/prefix`` on any S3-compatible service, through boto3 (the standard AWS
    credential chain: environment, shared files, profiles, SSO, instance roles)."""

    workers = 16

    def __init__(self, bucket: str, prefix: str, url: str, endpoint_url: str | None = None) -> None:
        super().__init__()
        try:
            import boto3
            import botocore.config
            import botocore.exceptions
        except ImportError:
            raise RemoteStoreError(f"the remote {url!r} needs boto3, which is not installed",
                                   "pip install 'pip-omni[s3]'") from None
        self._exc = botocore.exceptions
        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        self.endpoint = endpoint_url
        config = botocore.config.Config(
            max_pool_connections=self.workers,
            retries={"max_attempts": 3, "mode": "standard"},
            # Services other than AWS (MinIO, Ceph, R2, a loopback test server) take path-style URLs.
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        try:
            self.client = boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)
        except (self._exc.BotoCoreError, ValueError) as e:
            raise RemoteStoreError(f"cannot use the remote {url!r}: {e}",
                                   "check --endpoint-url / AWS_ENDPOINT_URL and the AWS region") from None

    def _error(self, e: Exception, key: str, doing: str) -> RemoteStoreError:
        where = f"s3://{self.bucket}/{self.prefix}{key}"
        if isinstance(e, self._exc.NoCredentialsError):
            return RemoteStoreError(f"no AWS credentials to {doing} {where!r}",
                                    "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE (the standard AWS chain)")
        if isinstance(e, self._exc.EndpointConnectionError):
            return RemoteStoreError(f"cannot reach the remote {self.url!r} ({self.endpoint or 'AWS'}): {e}",
                                    "check --endpoint-url / AWS_ENDPOINT_URL and the network")
        if isinstance(e, self._exc.ClientError):
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
                        "InvalidToken", "403") or status == 403:
                return RemoteStoreError(f"the remote {self.url!r} refused the credentials to {doing} {where!r} "
                                        f"({code or status})",
                                        "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, "
                                        "and that they may read and write the bucket")
            if code == "NoSuchBucket":
                return RemoteStoreError(f"the bucket {self.bucket!r} of the remote {self.url!r} does not exist",
                                        "create it, or check the bucket name and --endpoint-url")
            return RemoteStoreError(f"cannot {doing} {where!r}: {code or status} {err.get('Message', '')}".rstrip(),
                                    "check the remote URL and the service")
        return RemoteStoreError(f"cannot {doing} {where!r}: {e}", "check the remote URL and the service")

    def _call(self, doing: str, key: str, fn, **kw):
        try:
            return fn(Bucket=self.bucket, Key=self.prefix + key, **kw)
        except self._exc.ClientError as e:
            return e
        except (self._exc.BotoCoreError, OSError) as e:
            raise self._error(e, key, doing) from None

    @staticmethod
    def _code(e) -> str:
        return str(e.response.get("Error", {}).get("Code", ""))

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes | None:
        ranged = {"Range": f"bytes={start}-{end - 1}"} if end is not None else {}
        r = self._call("read", key, self.client.get_object, **ranged)
        if isinstance(r, Exception):
            self._count(get=key)
            if self._code(r) in ("NoSuchKey", "404"):
                return None
            raise self._error(r, key, "read")
        try:
            data = r["Body"].read(MAX_GET_BYTES + 1)
        except (self._exc.BotoCoreError, OSError) as e:
            raise self._error(e, key, "read") from None
        self._count(down=len(data), get=key)
        return data

    def exists(self, key: str) -> bool:
        r = self._call("check", key, self.client.head_object)
        self._count()
        if isinstance(r, Exception):
            if self._code(r) in ("NoSuchKey", "404", "NotFound"):
                return False
            raise self._error(r, key, "check")
        return True

    def put_new(self, key: str, data: bytes) -> bool:
        r = self._call("write", key, self.client.put_object, Body=data, IfNoneMatch="*")
        self._count(up=len(data))
        if isinstance(r, Exception):
            # 412: it exists. 409: another writer is putting the same key now; it will exist.
            if self._code(r) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise self._error(r, key, "write")
        return True

    def list(self, prefix: str) -> list[str]:
        out = []
        token = None
        while True:
            kw = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
            if token:
                kw["ContinuationToken"] = token
            try:
                r = self.client.list_objects_v2(**kw)
            except (self._exc.ClientError, self._exc.BotoCoreError, OSError) as e:
                raise self._error(e, prefix, "list") from None
            finally:
                self._count()
            out += [o["Key"][len(self.prefix):] for o in r.get("Contents", [])]
            if not r.get("IsTruncated"):
                return sorted(out)
            token = r["NextContinuationToken"]


def open_backend(url: str, endpoint_url: str | None = None) -> Backend:
    """The backend of ``url`` (``s3://bucket/prefix`` or ``file:///path``)."""
    from urllib.parse import unquote, urlsplit

    if not isinstance(url, str) or "://" not in url:
        raise RemoteStoreError(f"not a remote store URL: {url!r}", "write s3://bucket/prefix or file:///path")
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise RemoteStoreError(f"a file:// remote must be an absolute local path, not {url!r}",
                                   "write file:///path/to/folder (three slashes)")
        return FileBackend(os.path.normpath(unquote(parts.path)), url)
    if parts.scheme == "s3":
        if not _BUCKET.match(parts.netloc or ""):
            raise RemoteStoreError(f"not an S3 bucket name in {url!r}", "write s3://bucket/prefix")
        if parts.query or parts.fragment or any(p in (".", "..") for p in parts.path.split("/")):
            raise RemoteStoreError(f"an s3:// remote is s3://bucket/prefix, not {url!r}", "write s3://bucket/prefix")
        return S3Backend(parts.netloc, parts.path, url, endpoint_url)
    raise RemoteStoreError(f"unknown kind of remote store {url!r}", "write s3://bucket/prefix or file:///path")
