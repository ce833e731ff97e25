"""
A real S3 server on loopback for tests: moto's server (the S3 HTTP API, over a socket, no mock patching)
on a free port, with a journal of the requests it served, and an Airflow ``aws`` connection to it.

``ObjectStoragePath("s3://docjobs_s3@bucket/prefix")`` then reaches it through the Amazon provider and
s3fs, as a deployment's store does. ``conftest`` imports the fixtures:

- ``s3_server`` (session): the running :class:`S3Server`; each xdist worker starts its own.
- ``s3`` (function): a fresh bucket and the ``docjobs_s3`` connection set in the environment; gives an
  :class:`S3Bucket` (``s3.uri("results")`` is ``s3://docjobs_s3@<bucket>/results``).

A :class:`Place` is where a test keeps files, a local folder or a bucket prefix, so that one test runs on
both.

Outside pytest (a deployment test's own processes), ``with S3Server() as server:`` runs it, and
``server.connection_json()`` is the value of an ``AIRFLOW_CONN_<ID>`` variable for every process.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CONN_ID = "docjobs_s3"
REGION = "us-east-1"
# moto accepts any credentials; these only make botocore sign requests instead of hunting for a chain.
ACCESS_KEY, SECRET_KEY = "docjobs-test-key", "docjobs-test-secret"


class S3Server:
    """
    moto's S3 server in a thread on ``127.0.0.1`` and a free port; every request is journaled.

    ``requests`` holds ``(method, path, query)`` of each request served, in order (the path starts with
    the bucket: ``/bucket/key``).
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requests: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> S3Server:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)

        def journaled(environ: dict[str, Any], start_response: Any) -> Any:
            entry = (environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""))
            with self._lock:
                self.requests.append(entry)
            return app(environ, start_response)

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass  # werkzeug prints every request to stderr

        self._server = make_server(self.host, 0, journaled, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def connection_json(self) -> str:
        """An Airflow ``aws`` connection to this server (the value of ``AIRFLOW_CONN_<ID>``)."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": ACCESS_KEY,
                "password": SECRET_KEY,
                "extra": {"endpoint_url": self.url, "region_name": REGION},
            }
        )

    def client(self) -> Any:
        """A plain boto3 S3 client on this server: to read or prepare objects without our code."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_bucket(self, name: str | None = None) -> str:
        """A new bucket (a unique name unless given); its name."""
        name = name or f"docjobs-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def journal(self, bucket: str, method: str | None = None) -> list[tuple[str, str, str]]:
        """The requests served for ``bucket`` (and of ``method``, if given)."""
        with self._lock:
            served = list(self.requests)
        return [
            r
            for r in served
            if (r[1] == f"/{bucket}" or r[1].startswith(f"/{bucket}/")) and method in (None, r[0])
        ]


@dataclass(frozen=True)
class S3Bucket:
    """One test's bucket on the S3 server, reached through the Airflow connection ``conn_id``."""

    server: S3Server
    name: str
    conn_id: str = CONN_ID

    def uri(self, key: str = "") -> str:
        """``s3://{conn_id}@{bucket}/{key}``: the form a user gives ``results_uri`` or an input."""
        return f"s3://{self.conn_id}@{self.name}/{key.lstrip('/')}".rstrip("/")

    def put(self, key: str, body: bytes) -> None:
        """Write an object with boto3, not through our code."""
        self.server.client().put_object(Bucket=self.name, Key=key, Body=body)

    def get(self, key: str) -> bytes:
        """Read an object with boto3, not through our code."""
        body: bytes = self.server.client().get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, read with boto3."""
        pages = (
            self.server.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        )
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def journal(self, method: str | None = None) -> list[tuple[str, str, str]]:
        """The requests the server served for this bucket."""
        return self.server.journal(self.name, method)


def isolate_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS settings of this machine reach botocore: no profile, no ~/.aws files, no metadata service."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/docjobs-aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/docjobs-aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, for the whole session (one per xdist worker)."""
    with S3Server() as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A fresh bucket, and the ``docjobs_s3`` Airflow connection to the server in the environment."""
    isolate_aws(monkeypatch)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", s3_server.connection_json())
    return S3Bucket(s3_server, s3_server.create_bucket())


@dataclass(frozen=True)
class Place:
    """
    Where a test keeps files: a prefix of its bucket, or a local folder (``file_uri`` names it ``file://``).

    ``put`` and ``get`` write and read there without the provider's code, as another process would.
    """

    folder: Path | None = None
    bucket: S3Bucket | None = None
    prefix: str = ""
    file_uri: bool = False

    def location(self, relative: str = "") -> str:
        """What a user passes for the file or folder at ``relative``."""
        if self.bucket is not None:
            return self.bucket.uri(f"{self.prefix}/{relative}")
        assert self.folder is not None
        path = str(self.folder / relative) if relative else str(self.folder)
        return f"file://{path}" if self.file_uri else path

    def relative(self, location: str) -> str:
        """The part of ``location`` under this place."""
        return location.removeprefix(self.location()).lstrip("/")

    def put(self, relative: str, body: bytes) -> None:
        if self.bucket is not None:
            self.bucket.put(f"{self.prefix}/{relative}", body)
            return
        assert self.folder is not None
        target = self.folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)

    def get(self, relative: str) -> bytes:
        if self.bucket is not None:
            return self.bucket.get(f"{self.prefix}/{relative}")
        assert self.folder is not None
        return (self.folder / relative).read_bytes()

    def files(self) -> dict[str, bytes]:
        """Every file under this place, by its key or path."""
        if self.bucket is not None:
            return {key: self.bucket.get(key) for key in self.bucket.keys(f"{self.prefix}/")}
        assert self.folder is not None
        return {str(p): p.read_bytes() for p in self.folder.rglob("*") if p.is_file()}
