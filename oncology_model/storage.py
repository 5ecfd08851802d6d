"""Objects in S3 or an S3-compatible store, named by `s3://BUCKET/KEY` URLs, through boto3.

Credentials and the endpoint come from the standard AWS chain only (environment, profile, web
identity in Kubernetes, instance metadata) plus `AWS_ENDPOINT_URL` for an S3-compatible store:
never a command line, and no message of this module shows them. Every failure is a
`StorageError` naming the URL and the cause in words (missing bucket or object, credentials
refused, store unreachable, store stopped answering during a transfer).

`ONCOLOGY_STORAGE_TIMEOUT` (seconds, default 30) bounds each connect and each read: a store that
stops answering mid-transfer fails the transfer instead of hanging it. Nothing here writes a
partial object: `AtomicObject` uploads in parts that become the object only when it is closed
without error.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SCHEME = "s3://"
TIMEOUT_VARIABLE = "ONCOLOGY_STORAGE_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
CHUNK = 1024 * 1024
# Parts of a streamed upload: S3 wants at least 5 MiB for every part but the last; this is what
# a streamed upload holds in memory at most.
PART_SIZE = 8 * 1024 * 1024
CONTENT_TYPES = {
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".csv": "text/csv",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml",
    ".whl": "application/zip",
    ".onnx": "application/octet-stream",
    ".joblib": "application/octet-stream",
}


class StorageError(OSError):
    """An object store operation failed; the message names the URL and the cause."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "object store error"


def is_url(location: str | Path | ObjectUrl) -> bool:
    """True for an `s3://` URL (as text or `ObjectUrl`); a `Path` never is one."""
    return isinstance(location, ObjectUrl) or (
        isinstance(location, str) and location.startswith(SCHEME)
    )


@dataclass(frozen=True)
class ObjectUrl:
    """An object (`key`) or a prefix (`key` ending in `/`, or empty: the whole bucket)."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, text: str) -> ObjectUrl:
        if not text.startswith(SCHEME):
            raise ValueError(f"{text!r} is not an s3:// URL")
        bucket, _, key = text[len(SCHEME) :].partition("/")
        if not bucket:
            raise ValueError(f"{text!r} names no bucket: use s3://BUCKET/KEY")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    @property
    def name(self) -> str:
        """The last part of the key (a file's name)."""
        return self.key.rstrip("/").rpartition("/")[2]

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    def as_prefix(self) -> ObjectUrl:
        """The same location as a prefix (a folder): `key/`."""
        return self if self.is_prefix else ObjectUrl(self.bucket, self.key + "/")

    def child(self, name: str) -> ObjectUrl:
        """`name` under this location taken as a prefix."""
        return ObjectUrl(self.bucket, self.as_prefix().key + name)


def location(text: str) -> Path | ObjectUrl:
    """A command-line location: an `ObjectUrl` for `s3://...`, else a local `Path`. (A `Path`
    would fold `s3://` into `s3:/`, so the commands take their locations through this.)"""
    return ObjectUrl.parse(text) if text.startswith(SCHEME) else Path(text)


def timeout() -> float:
    """Seconds each connect and each read may take (`ONCOLOGY_STORAGE_TIMEOUT`)."""
    text = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        value = 0.0
    if not value > 0:
        raise StorageError(f"{TIMEOUT_VARIABLE}={text!r} is not a number of seconds above 0")
    return value


@cache
def client() -> Any:
    """The S3 client of the standard AWS chain (and `AWS_ENDPOINT_URL`), bounded in time."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise StorageError("s3:// locations need boto3: pip install 'oncology-model[s3]'") from None
    seconds = timeout()
    config = Config(
        connect_timeout=seconds,
        read_timeout=seconds,
        retries={"mode": "standard", "max_attempts": 3},
        # Checksums only where S3 requires them: S3-compatible stores do not all know the newer
        # CRC headers, and every artifact is checked against its SHA-256 anyway.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", config=config)


def storage_error(url: ObjectUrl | str, error: Exception) -> StorageError:
    """The StorageError saying in words why an operation on `url` failed."""
    from botocore import exceptions as aws

    if isinstance(error, StorageError):
        return error
    if isinstance(error, aws.ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        bucket = url.bucket if isinstance(url, ObjectUrl) else url
        if code == "NoSuchBucket":
            return StorageError(f"{url}: the bucket {bucket} does not exist")
        if code in ("NoSuchKey", "NotFound") or status == 404:
            return StorageError(f"{url} does not exist")
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
            return StorageError(f"{url} already exists and is never overwritten")
        if code in _REFUSED or status == 403:
            return StorageError(
                f"{url}: the object store refused the credentials ({code or status}): check "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the service "
                "account's role, and what they may do in the bucket"
            )
        return StorageError(f"{url}: the object store answered {code or status}")
    if isinstance(error, aws.ParamValidationError):
        return StorageError(f"{url} cannot be asked for: {error}")
    if isinstance(error, aws.NoCredentialsError | aws.PartialCredentialsError):
        return StorageError(
            f"{url}: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or a web identity (a Kubernetes service account with a role)"
        )
    if isinstance(error, aws.EndpointConnectionError | aws.ConnectTimeoutError):
        return StorageError(f"{url}: the object store cannot be reached ({_endpoint()})")
    if isinstance(error, aws.ReadTimeoutError):
        return StorageError(
            f"{url}: the object store stopped answering (nothing for {timeout():g} s, "
            f"{TIMEOUT_VARIABLE})"
        )
    if isinstance(error, aws.BotoCoreError | OSError):
        return StorageError(
            f"{url}: the transfer broke off ({type(error).__name__}): the object store "
            "stopped answering"
        )
    raise error


_REFUSED = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
    }
)


def _endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS"


def list_objects(prefix: ObjectUrl) -> list[ObjectUrl]:
    """The objects directly under `prefix` (as files in a folder: not those of its
    "subfolders"), in name order, hidden ones (`.name`) left out."""
    found: list[ObjectUrl] = []
    try:
        pages = client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=prefix.bucket, Prefix=prefix.key, Delimiter="/"):
            for item in page.get("Contents", []):
                url = ObjectUrl(prefix.bucket, item["Key"])
                if not url.is_prefix and not url.name.startswith("."):
                    found.append(url)
    except Exception as error:
        raise storage_error(prefix, error) from None
    return sorted(found, key=lambda url: url.key)


def any_under(prefix: ObjectUrl) -> bool:
    """Whether any object's key starts with `prefix`."""
    try:
        answer = client().list_objects_v2(Bucket=prefix.bucket, Prefix=prefix.key, MaxKeys=1)
    except Exception as error:
        raise storage_error(prefix, error) from None
    return bool(answer.get("KeyCount") or answer.get("Contents"))


def read_bytes(url: ObjectUrl, *, limit: int) -> bytes:
    """The whole object, refused when larger than `limit` bytes."""
    with open_object(url) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise StorageError(f"{url} is larger than {limit:,} bytes")
    return data


def download(url: ObjectUrl, path: Path) -> str:
    """Write the object to `path`, chunk by chunk; its SHA-256. On any failure `path` is
    removed: never a half-written file."""
    digest = hashlib.sha256()
    try:
        with open_object(url) as stream, path.open("wb") as out:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def open_object(url: ObjectUrl) -> io.BufferedReader:
    """The object as a binary stream read from the store as it is consumed (lines or blocks):
    memory stays bounded whatever the object's size."""
    try:
        answer = client().get_object(Bucket=url.bucket, Key=url.key)
    except Exception as error:
        raise storage_error(url, error) from None
    return io.BufferedReader(_Body(url, answer["Body"]), buffer_size=CHUNK)


class _Body(io.RawIOBase):
    """botocore's streaming body as a raw stream, its failures as StorageError."""

    def __init__(self, url: ObjectUrl, body: Any) -> None:
        self.url = url
        self.body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self.body.read(len(buffer))
        except Exception as error:
            raise storage_error(self.url, error) from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.body.close()
        super().close()


def content_type(name: str) -> str:
    """The Content-Type an object named `name` is stored with."""
    suffix = Path(name).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


def put_bytes(url: ObjectUrl, data: bytes, *, only_new: bool = False) -> None:
    """Store `data` as `url` with its content type; with `only_new`, refuse (StorageError) when
    the object exists already (a conditional write: no race with another writer)."""
    extra = {"IfNoneMatch": "*"} if only_new else {}
    try:
        client().put_object(
            Bucket=url.bucket, Key=url.key, Body=data, ContentType=content_type(url.key), **extra
        )
    except Exception as error:
        raise storage_error(url, error) from None


def put_file(path: Path, url: ObjectUrl, *, only_new: bool = False) -> None:
    """`put_bytes` of a local file (files here are reports and models: megabytes at most)."""
    put_bytes(url, path.read_bytes(), only_new=only_new)


def put_tree(folder: Path, prefix: ObjectUrl, *, only_new: bool = False) -> list[ObjectUrl]:
    """Every file under `folder` as an object under `prefix` (same relative names)."""
    written = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        url = prefix.child(path.relative_to(folder).as_posix())
        put_file(path, url, only_new=only_new)
        written.append(url)
    return written


class AtomicObject(io.RawIOBase):
    """A writable stream that becomes the object `url` only when `commit` is called: up to
    `PART_SIZE` bytes are held in memory, more go up as parts of a multipart upload, which
    `abort` (or `close` without `commit`) discards, so the store never shows a partial object
    and an existing one stays as it was."""

    def __init__(self, url: ObjectUrl, *, part_size: int = PART_SIZE) -> None:
        self.url = url
        self.part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._done = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buffer += data
        while len(self._buffer) >= self.part_size:
            self._send(bytes(self._buffer[: self.part_size]))
            del self._buffer[: self.part_size]
        return len(data)

    def _send(self, part: bytes) -> None:
        s3 = client()
        try:
            if self._upload_id is None:
                self._upload_id = s3.create_multipart_upload(
                    Bucket=self.url.bucket, Key=self.url.key, ContentType=content_type(self.url.key)
                )["UploadId"]
            number = len(self._parts) + 1
            answer = s3.upload_part(
                Bucket=self.url.bucket,
                Key=self.url.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=part,
            )
        except Exception as error:
            raise storage_error(self.url, error) from None
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def commit(self) -> None:
        """Make what was written the object."""
        if self._upload_id is None:
            put_bytes(self.url, bytes(self._buffer))
        else:
            if self._buffer:
                self._send(bytes(self._buffer))
            try:
                client().complete_multipart_upload(
                    Bucket=self.url.bucket,
                    Key=self.url.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
            except Exception as error:
                raise storage_error(self.url, error) from None
        self._buffer.clear()
        self._done = True

    def abort(self) -> None:
        """Discard what was written; the store keeps nothing of it."""
        self._buffer.clear()
        if self._upload_id is not None and not self._done:
            upload, self._upload_id = self._upload_id, None
            try:
                client().abort_multipart_upload(
                    Bucket=self.url.bucket, Key=self.url.key, UploadId=upload
                )
            except Exception as error:
                raise storage_error(self.url, error) from None
        self._done = True

    def close(self) -> None:
        if not self._done:
            self.abort()
        super().close()
