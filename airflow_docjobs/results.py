"""
The results store: every vendor result lands here the moment it is fetched, before anything else can go wrong.

Finovox deletes a result 60 minutes after processing while a nightly batch may wait for hours, so the
trigger writes each result as soon as it has it; the sensor, its retries and the ingestion read it back
from here instead of asking the vendor again. It is also the raw landing zone of a pipeline::

    {results_uri}/{vendor}/{dag_id}/{run_id}/{key}.json            one landed job (see ``land``)
    {results_uri}/{vendor}/{dag_id}/{run_id}/{task}.outcomes.json  a list sensor's outcomes, in input order
    {results_uri}/{vendor}/{dag_id}/{run_id}/_submitted/{batch}.json  a list submit's inputs and rejections
    {results_uri}/{vendor}/{dag_id}/{run_id}/_jobs/{batch}.json     a large batch's job list (encrypted)

``results_uri`` is any ``ObjectStoragePath`` URI (``file://``, ``s3://``, ``gs://``...); the default is the
``[docjobs] results_uri`` option, else ``file://$AIRFLOW_HOME/docjobs/results``. Local files are written
atomically (a temporary file renamed into place) with mode 0600; an object store's single PUT is atomic
already. ``{key}`` is a hash of the job reference, so a Finovox retrieve token never shows in a path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_docjobs import metrics
from airflow_docjobs.exceptions import DocJobsConfigError
from airflow_docjobs.hooks.inputs import as_path, children, is_object_store

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow.sdk.crypto import FernetProtocol

    from airflow_docjobs.hooks.base import DocJobsHook

SUBMITTED = "_submitted"
# How an outcome names a job whose reference is a secret (a Finovox retrieve token): by its SHA-256.
HASHED = "sha256:"
JOB_LISTS = "_jobs"
_UNSAFE = re.compile(r"[^A-Za-z0-9._:+=-]")


# What an object store's scheme needs installed, and the URI form that names its Airflow connection.
_SETUP = {
    "s3": ("apache-airflow-providers-amazon and s3fs", "s3://{aws_conn_id}@bucket/prefix"),
    "gs": ("apache-airflow-providers-google", "gs://{google_cloud_conn_id}@bucket/prefix"),
    "abfs": ("apache-airflow-providers-microsoft-azure", "abfs://{azure_conn_id}@container/prefix"),
}
_SCHEMES = {"s3a": "s3", "s3n": "s3", "gcs": "gs", "abfss": "abfs", "adl": "abfs"}


def store_setup(uri: str) -> str:
    """What a results URI's scheme needs: the package to install and the URI form with a connection id."""
    scheme = uri.split("://", 1)[0] if "://" in uri else "file"
    if (setup := _SETUP.get(_SCHEMES.get(scheme, scheme))) is None:
        return "use a folder every worker and triggerer can write (object storage beyond one machine)"
    package, form = setup
    return f"install {package}, and name the Airflow connection in the URI: {form}"


def default_results_uri() -> str:
    """``[docjobs] results_uri``, else ``file://$AIRFLOW_HOME/docjobs/results``."""
    from airflow.providers.common.compat.sdk import conf

    configured = conf.get("docjobs", "results_uri", fallback="") or ""
    if configured.strip():
        return configured.strip()
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return f"file://{Path(home).resolve()}/docjobs/results"


def job_key(job: Mapping[str, Any]) -> str:
    """A stable name for a job reference that reveals nothing of it (Finovox tokens are secrets)."""
    return hashlib.sha256(json.dumps(dict(job), sort_keys=True).encode()).hexdigest()[:32]


def batch_key(references: Sequence[str | None]) -> str:
    """A stable name for a list of references (``None`` for rejected inputs), as a list submit returned it."""
    text = "\n".join("" if r is None else r for r in references)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def landed_record(vendor: str, job: Mapping[str, Any], status: Any) -> dict[str, Any]:
    """
    What lands for a terminal job: its state, the vendor's error (code and message) or its result JSON.

    The result JSON is unchanged. ``job`` is the reference without secret tokens (``DocJobsHook.public_job``).
    """
    failed = status.state == "failed"
    return {
        "vendor": vendor,
        "job": dict(job),
        "state": status.state,
        "error": {"code": status.code, "message": status.message} if failed else None,
        "finished_at": now_iso(),
        "result": None if failed else status.result,
    }


def public_reference(hook: DocJobsHook, field: str, reference: str | None) -> str | None:
    """
    A job's reference as outcomes name it: a secret token (Finovox's) as ``sha256:{digest}``.

    The digest is the ``{field}_sha256`` of the landed record's ``job`` (``DocJobsHook.public_job``), so an
    outcome still names its job; the token itself stays in the submit's XCom, in the same input order.
    """
    if reference is None or field not in hook.secret_job_keys:
        return reference
    (digest,) = hook.public_job({field: reference}).values()
    return f"{HASHED}{digest}"


def fernet() -> FernetProtocol:
    """Airflow's Fernet (a no-op one when no key is configured), as it encrypts connections and variables."""
    try:
        from airflow.sdk.crypto import get_fernet
    except ImportError:  # Airflow 2
        from airflow.models.crypto import get_fernet
    return get_fernet()


def secret_fernet(vendor: str | None = None, conn_id: str | None = None) -> FernetProtocol:
    """
    Airflow's Fernet where a secret (a Finovox retrieve token) must be encrypted: no no-op one.

    A missing or invalid ``[core] fernet_key`` is a :class:`DocJobsConfigError` naming the setting.
    """
    problem = "is not set"
    try:
        crypt = fernet()
    except Exception as exc:  # AirflowException: "Could not create Fernet object: <why>" (never the key)
        crypt, problem = None, f"is not a valid Fernet key ({exc})"
    if crypt is not None and crypt.is_encrypted:
        return crypt
    raise DocJobsConfigError(
        f"Airflow's [core] fernet_key (AIRFLOW__CORE__FERNET_KEY) {problem}: it encrypts the retrieve tokens "
        "that trigger kwargs and the results store hold; set one key, the same on every Airflow machine",
        vendor=vendor,
        conn_id=conn_id,
    )


def seal(value: Any, vendor: str | None = None, conn_id: str | None = None) -> str:
    """JSON ``value`` encrypted with Airflow's Fernet key (see :func:`secret_fernet`)."""
    return secret_fernet(vendor, conn_id).encrypt(json.dumps(value).encode()).decode()


def unseal(token: str) -> Any:
    """What :func:`seal` encrypted; ``DocJobsConfigError`` when this machine's Fernet key cannot read it."""
    try:
        return json.loads(fernet().decrypt(token.encode()))
    except Exception as exc:  # cryptography's InvalidToken, Airflow's invalid-key error
        raise DocJobsConfigError(
            "cannot decrypt the job references with this machine's [core] fernet_key "
            f"({type(exc).__name__}): every Airflow machine needs the same key"
        ) from exc


def now_iso() -> str:
    """The current UTC time in ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _local(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    return None if "://" in uri else Path(uri).expanduser()


def _remote(uri: str) -> Any:
    """
    The ``ObjectStoragePath`` of a store URI, without what this process's filesystem cached of it.

    s3fs keeps every listing for the life of the process and answers later reads from it: a record
    another process (the triggerer, a worker) wrote since would read as missing. Dropping it costs no
    request.
    """
    path = as_path(uri)
    path.fs.invalidate_cache(path.path)
    return path


def write_json(uri: str, payload: Any) -> None:
    """Write JSON atomically where the store allows it; local files are private to their owner (0600)."""
    data = json.dumps(payload, separators=(",", ":"), default=str).encode()
    path = _local(uri)
    if path is None:
        target = as_path(uri)
        if not is_object_store(target):  # an object store has no folders to make, and making one there
            target.parent.mkdir(parents=True, exist_ok=True)  # would create a missing bucket
        with target.open("wb") as out:
            out.write(data)
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(uri: str) -> Any:
    """Read a JSON file of the store; ``FileNotFoundError`` when it is not there."""
    path = _local(uri)
    if path is not None:
        return json.loads(path.read_bytes())
    with _remote(uri).open("rb") as source:
        return json.loads(source.read())


@dataclass(frozen=True)
class ResultsStore:
    """
    The part of the store one DAG run of one vendor writes to.

    :param base: the results URI (see the module docstring).
    :param vendor: the vendor's connection type, e.g. ``mindee``.
    :param dag_id: the DAG id.
    :param run_id: the DAG run id.
    """

    base: str
    vendor: str
    dag_id: str
    run_id: str

    @classmethod
    def for_run(cls, base: str | None, vendor: str, context: Any) -> ResultsStore:
        """The store of the running task's DAG run (``base`` defaults to ``[docjobs] results_uri``)."""
        return cls(base or default_results_uri(), vendor, context["ti"].dag_id, context["run_id"])

    @property
    def prefix(self) -> str:
        """The URI under which this run's records live: ``{base}/{vendor}/{dag_id}/{run_id}``."""
        parts = (self.vendor, self.dag_id, self.run_id)
        return "/".join([self.base.rstrip("/"), *(_UNSAFE.sub("_", p) for p in parts)])

    def spec(self) -> dict[str, str]:
        """JSON kwargs that rebuild this store (for a trigger)."""
        return {"base": self.base, "vendor": self.vendor, "dag_id": self.dag_id, "run_id": self.run_id}

    def uri(self, key: str) -> str:
        """The URI of the JSON record ``key``."""
        return f"{self.prefix}/{key}.json"

    def land(self, job: Mapping[str, Any], record: Mapping[str, Any]) -> str:
        """Write one job's terminal record (``state``, ``error``, ``result``...); return its URI."""
        uri = self.uri(job_key(job))
        write_json(uri, {**record, "landed_at": now_iso()})
        metrics.count(self.vendor, f"results.{record.get('state')}")
        return uri

    def landed(self, job: Mapping[str, Any]) -> dict[str, Any] | None:
        """The record landed for a job, or ``None``."""
        try:
            record: dict[str, Any] = read_json(self.uri(job_key(job)))
        except FileNotFoundError:
            return None
        return record

    def has_landed(self, job: Mapping[str, Any]) -> bool:
        """Whether a job's record is landed: one look at its name, where ``landed_keys`` lists the run."""
        uri = self.uri(job_key(job))
        local = _local(uri)
        return local.exists() if local is not None else bool(_remote(uri).exists())

    def landed_keys(self) -> set[str]:
        """
        Keys of every job landed in this run, in one listing (a restarted trigger skips them).

        None before the first lands: the run's folder does not exist yet, or its prefix has no objects.
        """
        names = [p.name for p in children(_local(self.prefix) or _remote(self.prefix))]
        return {n.removesuffix(".json") for n in names if n.endswith(".json") and "." not in n[:-5]}

    def check_writable(self, source: str, vendor: str | None = None) -> None:
        """
        Write and delete a small probe under this run's prefix; a ``DocJobsConfigError`` if that fails.

        Run before anything is submitted, so a store the worker cannot write costs no vendor job. ``source``
        names where the URI came from (the parameter or the option).
        """
        probe = self.named(f".probe-{uuid.uuid4().hex}.json")
        try:
            write_json(probe, {"probe": now_iso()})
            local = _local(probe)
            if local is not None:
                local.unlink()
            else:
                as_path(probe).unlink()
        except Exception as exc:  # a missing filesystem, bucket, permission or credentials: all say the same
            raise DocJobsConfigError(
                f"{source}: the results store {self.base!r} cannot be written from this worker "
                f"({type(exc).__name__}: {exc}); {store_setup(self.base)}. Nothing was submitted",
                vendor=vendor,
            ) from exc

    def named(self, *parts: str) -> str:
        """The URI of a file of this run's own (a manifest, a job list)."""
        return "/".join([self.prefix, *parts])
