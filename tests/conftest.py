"""
Shared fixtures: a private Airflow home on SQLite, the vendor emulator on a loopback port, and one Airflow
connection per vendor pointing at it through ``AIRFLOW_CONN_*``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Airflow reads its configuration at import: point it at a throwaway home before anything imports it.
_HOME = Path(tempfile.mkdtemp(prefix="docjobs-airflow-"))
atexit.register(shutil.rmtree, _HOME, True)
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).parent / "dags")
os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", "rO3I9n9H4eCNbgZu9VAbXdwV5bU7_KbW8Wvy1ZyJ4WM=")

import pytest  # noqa: E402

from airflow_docjobs.emulator import EmulatorSettings  # noqa: E402
from airflow_docjobs.emulator.testing import EmulatorServer  # noqa: E402

VENDORS = ("finovox", "mindee", "docimprint", "biros")
SECRET = "emulator"
# Fast retries so the suite never sleeps for long; the policy's shape is the same as in production.
FAST_RETRIES = {"retry_base_delay": 0.01, "retry_max_delay": 0.05, "max_attempts": 3, "timeout": 5}
FIXTURES = Path(__file__).parent / "fixtures"


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
    path = tmp_path / "invoice.pdf"
    path.write_bytes((FIXTURES / "sample.pdf").read_bytes())
    return path


def copy_sample(tmp_path: Path, name: str) -> Path:
    """The sample PDF under another name (names select the emulator's scenarios)."""
    path = tmp_path / name
    path.write_bytes((FIXTURES / "sample.pdf").read_bytes())
    return path
