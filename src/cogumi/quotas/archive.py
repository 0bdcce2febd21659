"""Where retention keeps a run before deleting it: a directory, an S3-compatible bucket, or both.

A store's ``put`` returns only once the bundle is safely written (the file
renamed into place; the object acknowledged by the server after it checked
the body's MD5) and raises :class:`ArchiveError` otherwise, so retention
deletes a run only after every configured store holds it.

Every store uses the same key, ``<org>/<project>/<run>.json``; the bucket's
key gets ``retention_archive_s3_prefix`` in front. The S3 client is boto3
(the optional ``s3`` extra), called on a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path
from typing import Any, Protocol

from cogumi.config import Settings
from cogumi.runs.models import Run

INSTALL_HINT = "S3 archiving needs boto3: pip install 'cogumi[s3]'"


class ArchiveError(Exception):
    """A bundle could not be stored; the message says why (never a credential)."""


class ArchiveStore(Protocol):
    name: str

    async def put(self, *, key: str, body: bytes) -> None: ...


def object_key(run: Run) -> str:
    return f"{run.org_id}/{run.project_id}/{run.id}.json"


def stores_from_settings(settings: Settings) -> list[ArchiveStore]:
    """The stores retention must write each run to before deleting it (none: no archive)."""
    stores: list[ArchiveStore] = []
    if settings.retention_archive_dir is not None:
        stores.append(DirectoryStore(settings.retention_archive_dir))
    if settings.retention_archive_s3_bucket:
        stores.append(S3Store(settings))
    return stores


class DirectoryStore:
    name = "directory"

    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, *, key: str, body: bytes) -> None:
        try:
            await asyncio.to_thread(_write_atomically, self.root / key, body)
        except OSError as exc:
            raise ArchiveError(f"directory {self.root}: {exc.strerror or exc}") from exc


def _write_atomically(path: Path, body: bytes) -> None:
    """Temp file, fsync, rename: a crash never leaves half a bundle under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    with tmp.open("wb") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def s3_prefix(settings: Settings) -> str:
    prefix = settings.retention_archive_s3_prefix.strip("/")
    return f"{prefix}/" if prefix else ""


class S3Store:
    """``PutObject`` with ``Content-MD5``: the server refuses a body that arrived damaged."""

    name = "s3"

    def __init__(self, settings: Settings) -> None:
        assert settings.retention_archive_s3_bucket
        self.settings = settings
        self.bucket = settings.retention_archive_s3_bucket
        self.prefix = s3_prefix(settings)
        self._client: Any = None

    async def put(self, *, key: str, body: bytes) -> None:
        if self._client is None:
            self._client = await asyncio.to_thread(make_s3_client, self.settings)
        await asyncio.to_thread(self._put, self.prefix + key, body)

    def _put(self, key: str, body: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        digest = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body,
                ContentType="application/json", ContentMD5=digest,
            )  # fmt: skip
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "error"), error.get("Message", "")
            raise ArchiveError(f"s3://{self.bucket}/{key}: {code} {message}".strip()) from exc
        except BotoCoreError as exc:
            raise ArchiveError(f"s3://{self.bucket}/{key}: {exc}") from exc


def make_s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the archive bucket (raises :class:`ArchiveError` without boto3)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ArchiveError(INSTALL_HINT) from exc
    secret = settings.retention_archive_s3_secret_access_key
    config = Config(
        connect_timeout=10,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        # Plain Content-MD5 integrity: understood by every S3-compatible server.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path" if settings.retention_archive_s3_endpoint_url else "auto"},
    )
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=settings.retention_archive_s3_endpoint_url,
        region_name=settings.retention_archive_s3_region,
        aws_access_key_id=settings.retention_archive_s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        config=config,
    )


def check_available(settings: Settings) -> str | None:
    """Why the configured archive cannot work in this process, or None."""
    if not settings.retention_archive_s3_bucket:
        return None
    try:
        import boto3  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    return None
