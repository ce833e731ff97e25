"""The sensors' defaults: each vendor's advised poke interval, and ``deferrable`` from Airflow's config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from airflow_docjobs.sensors.biros import BirosDocumentSensor
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor
from airflow_docjobs.sensors.finovox import FinovoxResultSensor
from airflow_docjobs.sensors.mindee import MindeeJobSensor
from airflow_docjobs.sensors.mindee_v2 import MindeeV2JobSensor

SENSORS = {
    "finovox": lambda **kw: FinovoxResultSensor(task_id="wait", retrieve_token="t", **kw),
    "finovox case": lambda **kw: FinovoxResultSensor(
        task_id="wait", retrieve_token="t", analysis="case", **kw
    ),
    "mindee": lambda **kw: MindeeJobSensor(
        task_id="wait", job_id="j", product="invoices", version="v4", **kw
    ),
    "mindee_v2": lambda **kw: MindeeV2JobSensor(task_id="wait", job_id="j", **kw),
    "docimprint": lambda **kw: DocimprintJobSensor(task_id="wait", job_id="j", **kw),
    "biros": lambda **kw: BirosDocumentSensor(task_id="wait", service_id="s", document_id="d", **kw),
}
ADVISED = {"finovox": 30, "finovox case": 15, "mindee": 5, "mindee_v2": 1.5, "docimprint": 3, "biros": 5}


@pytest.mark.parametrize("vendor", list(SENSORS))
def test_poke_interval_defaults_to_the_vendors_advice(vendor):
    assert SENSORS[vendor]().poke_interval == ADVISED[vendor]
    assert SENSORS[vendor](poke_interval=42).poke_interval == 42  # and is only a default
    assert SENSORS[vendor](poke_interval=timedelta(minutes=1)).poke_interval == 60


# Airflow reads the default when the sensor module is imported, so each setting needs a fresh process.
PROBE = """
import json
from airflow_docjobs.sensors.biros import BirosDocumentSensor
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor
from airflow_docjobs.sensors.finovox import FinovoxResultSensor
from airflow_docjobs.sensors.mindee import MindeeJobSensor
from airflow_docjobs.sensors.mindee_v2 import MindeeV2JobSensor

sensors = [
    FinovoxResultSensor(task_id="a", retrieve_token="t"),
    MindeeJobSensor(task_id="b", job_id="j", product="invoices", version="v4"),
    DocimprintJobSensor(task_id="c", job_id="j"),
    BirosDocumentSensor(task_id="d", service_id="s", document_id="d"),
    MindeeV2JobSensor(task_id="e", job_id="j"),
]
print(json.dumps([sensor.deferrable for sensor in sensors]))
"""


@pytest.mark.parametrize("setting", ["true", "false"])
def test_deferrable_defaults_to_the_operators_default_deferrable_option(setting):
    env = os.environ | {"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": setting}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [setting == "true"] * 5
