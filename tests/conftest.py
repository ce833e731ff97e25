"""
Shared fixtures: a private Airflow home on SQLite, the vendor emulator on a loopback port, and one Airflow
connection per vendor pointing at it through ``AIRFLOW_CONN_*``.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

# Airflow reads its configuration at import: point it at a throwaway home before anything imports it.
_HOME = Path(tempfile.mkdtemp(prefix="docjobs-airflow-"))
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

import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from airflow_docjobs.emulator import EmulatorSettings  # noqa: E402
from airflow_docjobs.emulator.testing import EmulatorServer  # noqa: E402

VENDORS = ("finovox", "mindee", "docimprint", "biros")
SECRET = "emulator"
# Fast retries so the suite never sleeps for long; the policy's shape is the same as in production.
FAST_RETRIES = {"retry_base_delay": 0.01, "retry_max_delay": 0.05, "max_attempts": 3, "timeout": 5}
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def airflow_db():
    """The SQLite metadata database of the private Airflow home, migrated once per session."""
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)


@pytest.fixture(scope="session")
def emulator_server():
    with EmulatorServer(EmulatorSettings(processing_seconds=0.5, review_seconds=0.5)) as server:
        yield server


@pytest.fixture
def emulator(emulator_server, monkeypatch):
    """The running emulator, reset for each test, with every vendor's default connection set."""
    emulator_server.state.reset()
    emulator_server.state.settings.update(
        {"processing_seconds": 0.5, "review_seconds": 0.5, "result_ttl_seconds": 3600, "api_key": SECRET}
    )
    for vendor in VENDORS:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{vendor.upper()}_DEFAULT", emulator_server.connection_json(vendor, **FAST_RETRIES)
        )
    return emulator_server


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


def copy_sample(tmp_path: Path, name: str) -> Path:
    """The sample PDF under another name (names select the emulator's scenarios)."""
    path = tmp_path / name
    path.write_bytes((FIXTURES / "invoice.pdf").read_bytes())
    return path
