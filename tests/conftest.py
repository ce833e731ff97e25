"""
Shared fixtures: a private Airflow home on SQLite, the vendor emulator on a loopback port, one Airflow
connection per vendor pointing at it through ``AIRFLOW_CONN_*`` (``vendor_conn`` sets more), and the
emulator's frozen clock (``frozen``) for tests that wait for a job without racing wall time.

``make test`` runs the suite in parallel (pytest-xdist): each worker is a process of its own that imports
this file first, so each gets its own Airflow home, metadata database, emulator and PostgreSQL server. The
rules a test must follow to run there are in tests/README.md.
"""

from __future__ import annotations

import atexit
import fcntl
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

# Airflow reads its configuration at import: point it at a throwaway home before anything imports it. Each
# xdist worker is a process that imports this file before Airflow, so each has a home (and database) of its own.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_HOME = Path(tempfile.mkdtemp(prefix=f"docjobs-airflow-{_WORKER}-"))
atexit.register(shutil.rmtree, _HOME, True)
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# dag.test() only runs DAGs found in a bundle: the suite's own DAGs and the shipped examples.
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": name,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(path)},
        }
        for name, path in (
            ("tests", Path(__file__).parent / "dags"),
            ("examples", Path(__file__).parent.parent / "example_dags"),
        )
    ]
)
os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", "rO3I9n9H4eCNbgZu9VAbXdwV5bU7_KbW8Wvy1ZyJ4WM=")

import asyncio  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

import pytest  # noqa: E402
from s3 import s3, s3_server  # noqa: E402, F401 - the S3 server fixtures (tests/s3.py)

from airflow_docjobs.emulator import EmulatorSettings  # noqa: E402
from airflow_docjobs.emulator.testing import EmulatorServer  # noqa: E402
from airflow_docjobs.get_provider_info import CONN_TYPES  # noqa: E402
from airflow_docjobs.hooks.biros import BirosHook  # noqa: E402
from airflow_docjobs.hooks.docimprint import DocimprintHook  # noqa: E402
from airflow_docjobs.hooks.finovox import FinovoxHook  # noqa: E402
from airflow_docjobs.hooks.mindee import MindeeHook  # noqa: E402
from airflow_docjobs.hooks.mindee_v2 import MindeeV2Hook  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_docjobs.hooks.base import DocJobsHook

VENDORS = CONN_TYPES
SECRET = "emulator"
# Fast retries so the suite never sleeps for long; the policy's shape is the same as in production.
FAST_RETRIES = {"retry_base_delay": 0.01, "retry_max_delay": 0.05, "max_attempts": 3, "timeout": 5}
FIXTURES = Path(__file__).parent / "fixtures"
# What polls a job, per vendor, as a substring of the emulator journal's paths.
POLL_PATHS = {
    "finovox": "/retrieve",
    "mindee": "/documents/queue/",
    "mindee_v2": "/v2/jobs/",
    "docimprint": "/v1/jobs/",
    "biros": "/predicted-documents/",
}


@dataclass(frozen=True)
class Kind:
    """
    One kind of vendor job: its input for a document named ``name`` (the name picks the emulator's
    scenario), the parameters of the hook's ``submit`` and of its ``job_reference``.
    """

    name: str
    vendor: str
    hook: type[DocJobsHook]
    submit_path: str
    takes: str = "file"  # "file", "files" (a case: a list of files) or "url"
    params: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)

    def document(self, folder: Path, name: str) -> Any:
        """The input of a document named ``name``: a copy of the sample PDF in ``folder``, or a URL."""
        if self.takes == "url":
            return f"https://example.com/{name}"
        return self.input_of(str(copy_sample(folder, name)))

    def input_of(self, path: str) -> Any:
        """What the hook's submit takes for the document at ``path``."""
        return [path] if self.takes == "files" else path

    def submit(self, hook: DocJobsHook, folder: Path, name: str) -> dict[str, Any]:
        reference = hook.submit(self.document(folder, name), **self.params)
        return hook.job_reference(reference, **self.reference)

    async def asubmit(self, hook: DocJobsHook, folder: Path, name: str) -> dict[str, Any]:
        reference = await hook.asubmit(self.document(folder, name), **self.params)
        return hook.job_reference(reference, **self.reference)

    def submits(self, emulator) -> list[dict]:
        """The submits of this kind the emulator received."""
        return [r for r in journal(emulator, method="POST") if r["path"].endswith(self.submit_path)]


MINDEE_PRODUCT = {"product": "invoices", "version": "v4"}
# A Mindee v2 model (the emulator takes any id; real ones are UUIDs from the platform).
MINDEE_V2_MODEL = {"model_id": "8c7a3bd0-0c6e-4b8f-9f3a-0d7b7e1c2a11"}
# Every kind of job the provider submits, each through its vendor's own submit call.
KINDS = [
    Kind("finovox", "finovox", FinovoxHook, "/analyse"),
    Kind(
        "finovox-case",
        "finovox",
        FinovoxHook,
        "/case",
        "files",
        {"analysis": "case", "use_case": "rental"},
        {"analysis": "case"},
    ),
    Kind("mindee", "mindee", MindeeHook, "/predict_async", "file", MINDEE_PRODUCT, MINDEE_PRODUCT),
    Kind("mindee_v2", "mindee_v2", MindeeV2Hook, "/enqueue", "file", MINDEE_V2_MODEL, MINDEE_V2_MODEL),
    Kind("docimprint", "docimprint", DocimprintHook, "/v1/extract", "url"),
    Kind(
        "biros",
        "biros",
        BirosHook,
        "/async-predict",
        "file",
        {"service_id": "svc-1"},
        {"service_id": "svc-1"},
    ),
]
KIND_IDS = [kind.name for kind in KINDS]
# How long a test waits for something that normally takes milliseconds, on a loaded machine.
PATIENCE = 60.0


@pytest.fixture(scope="session")
def airflow_db(tmp_path_factory):
    """
    The SQLite metadata database of the private Airflow home, migrated once per session. Under xdist the
    first worker to need it migrates a template (some 15 s of CPU) that the others copy, under a lock.
    """
    migrate = [str(Path(sys.executable).parent / "airflow"), "db", "migrate"]
    if _WORKER == "main":
        subprocess.run(migrate, check=True, capture_output=True)
        return
    template = tmp_path_factory.getbasetemp().parent / "airflow-db-template"  # one for all the workers
    with open(f"{template}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (template / "migrated").exists():
            template.mkdir(exist_ok=True)
            env = os.environ | {"AIRFLOW_HOME": str(template)}
            subprocess.run(migrate, check=True, capture_output=True, env=env)
            (template / "migrated").touch()
    shutil.copyfile(template / "airflow.db", _HOME / "airflow.db")


@pytest.fixture(scope="session")
def emulator_server():
    with EmulatorServer(EmulatorSettings(processing_seconds=0.5, review_seconds=0.5)) as server:
        yield server


def connection_json(vendor: str, host: str, password: str = SECRET, **extra: Any) -> str:
    """An Airflow connection (for ``AIRFLOW_CONN_<ID>``) with the suite's fast retries unless overridden."""
    return json.dumps(
        {"conn_type": vendor, "host": host, "password": password, "extra": FAST_RETRIES | extra}
    )


@pytest.fixture
def emulator(emulator_server, monkeypatch):
    """The running emulator, reset for each test, with every vendor's default connection set."""
    emulator_server.state.reset()
    emulator_server.state.settings.update(
        {"processing_seconds": 0.5, "review_seconds": 0.5, "result_ttl_seconds": 3600, "api_key": SECRET}
    )
    for vendor in VENDORS:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{vendor.upper()}_DEFAULT",
            connection_json(vendor, emulator_server.vendor_url(vendor)),
        )
    return emulator_server


@pytest.fixture
def vendor_conn(emulator, monkeypatch) -> Callable[..., str]:
    """
    Set one vendor's connection and return its id: ``vendor_conn("docimprint", timeout=0.5)`` replaces
    ``docimprint_default``, ``conn_id="slow"`` adds another. It points at the emulator with its current
    key unless ``fields`` say otherwise (``host``, ``password``, ``port``, ``schema``; ``None`` leaves a
    field out); the extra keeps the suite's fast retries for every key not given.
    """

    def set_connection(
        vendor: str, conn_id: str | None = None, fields: dict[str, Any] | None = None, **extra: Any
    ) -> str:
        conn_id = conn_id or f"{vendor}_default"
        conn = {
            "conn_type": vendor,
            "host": emulator.vendor_url(vendor),
            "password": emulator.state.settings.api_key,
            **(fields or {}),
            "extra": FAST_RETRIES | extra,
        }
        conn = {key: value for key, value in conn.items() if value is not None}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return set_connection


@pytest.fixture
def frozen(emulator):
    """The emulator with its clock stopped: jobs move only when the test calls ``state.advance()``."""
    emulator.state.freeze()
    yield emulator
    # Thawed where it stopped (the clock never jumps back), so the next test starts on wall time again.
    emulator.state.settings.frozen_clock = False
    emulator.state.now()


@pytest.fixture
def refused_url() -> str:
    """A loopback URL whose port nothing listens on: every connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def journal(emulator, path: str = "", method: str | None = None) -> list[dict]:
    """The requests the emulator received whose path contains ``path`` (and of ``method``, if given)."""
    return [r for r in list(emulator.state.requests) if path in r["path"] and method in (None, r["method"])]


def answered(emulator, path: str = "") -> list[dict]:
    """The requests to ``path`` the emulator has answered (journalled on arrival, given a status once answered)."""
    return [r for r in journal(emulator, path) if "status" in r]


async def until(condition: Callable[[], bool]) -> None:
    """Wait, without blocking the event loop, until ``condition()`` holds (fail after ``PATIENCE``)."""
    async with asyncio.timeout(PATIENCE):
        while not condition():  # noqa: ASYNC110 - the condition is the emulator's state, in another thread
            await asyncio.sleep(0.01)


@contextmanager
def advancing(emulator, path: str, steps: list[tuple[int, float]]) -> Iterator[None]:
    """
    In a background thread, for a blocking run such as ``dag.test()``: once ``count`` requests to ``path``
    have been answered by the frozen emulator, advance its clock by ``seconds``, for each ``(count, seconds)``
    step (answered, not only received: the last of them must not see the advanced clock).
    A step whose count never comes is taken after ``PATIENCE`` seconds, so a broken run ends, and fails.
    """
    stop = threading.Event()

    def run() -> None:
        for count, seconds in steps:
            deadline = time.monotonic() + PATIENCE
            while len(answered(emulator, path)) < count and time.monotonic() < deadline:
                if stop.wait(0.01):
                    return
            emulator.state.advance(seconds)

    thread = threading.Thread(target=run, name="advance-clock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@pytest.fixture
def sample_pdf(tmp_path) -> Path:
    return copy_sample(tmp_path, "invoice.pdf")


def load_dags(path: Path) -> dict:
    """Import a DAG file the way a test runner does and return its DAGs by id."""
    from airflow.providers.common.compat.sdk import DAG

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {dag.dag_id: dag for dag in vars(module).values() if isinstance(dag, DAG)}


def distinct_pdf(folder: Path, name: str) -> Path:
    """The sample PDF under ``name``, with content of its own (the same content is submitted once)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((FIXTURES / "invoice.pdf").read_bytes() + f"\n% {name}\n".encode())
    return path


def copy_sample(tmp_path: Path, name: str) -> Path:
    """The sample PDF under another name (names select the emulator's scenarios)."""
    path = tmp_path / name
    path.write_bytes((FIXTURES / "invoice.pdf").read_bytes())
    return path
