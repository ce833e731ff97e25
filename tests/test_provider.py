"""Registration with Airflow: provider info, connection types and forms, discovery by the CLI."""

from __future__ import annotations

import importlib
import importlib.resources
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import airflow_docjobs
from airflow_docjobs.get_provider_info import VENDORS, get_provider_info


def test_provider_info_validates_against_airflows_schema():
    schema = json.loads((importlib.resources.files("airflow") / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)
    assert get_provider_info()["package-name"] == "airflow-docjobs"


@pytest.mark.parametrize(("conn_type", "hook_path", "hook_name", "secret_label", "url"), VENDORS)
def test_provider_info_agrees_with_the_hooks(conn_type, hook_path, hook_name, secret_label, url):
    module, name = hook_path.rsplit(".", 1)
    hook = getattr(importlib.import_module(module), name)
    assert (hook.conn_type, hook.hook_name, hook.secret_label, hook.default_base_url) == (
        conn_type,
        hook_name,
        secret_label,
        url,
    )
    assert hook.default_conn_name == f"{conn_type}_default"
    assert hook.conn_name_attr == f"{conn_type}_conn_id"


def test_every_listed_module_imports():
    info = get_provider_info()
    for kind in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[kind]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for link in info["extra-links"]:
        module, name = link.rsplit(".", 1)
        getattr(importlib.import_module(module), name)


def test_providers_manager_registers_the_connection_types_and_forms():
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()
    assert "airflow-docjobs" in manager.providers
    runtime_hooks = ProvidersManagerTaskRuntime().hooks
    for conn_type, hook_path, _, secret_label, url in VENDORS:
        assert runtime_hooks[conn_type].hook_class_name == hook_path
        behaviour = manager.field_behaviours[conn_type]
        assert behaviour["relabeling"]["password"] == secret_label
        assert url in json.dumps(behaviour["placeholders"])
        assert {"login", "schema", "port"} <= set(behaviour["hidden_fields"])
        assert f"extra__{conn_type}__timeout" in manager.connection_form_widgets
        # docimprint's own extra, on its form only: which header carries the password.
        assert (f"extra__{conn_type}__auth" in manager.connection_form_widgets) == (conn_type == "docimprint")


def test_airflow_providers_list_shows_the_package():
    airflow = Path(sys.executable).parent / "airflow"
    listed = subprocess.run(
        [str(airflow), "providers", "list", "-o", "json"], capture_output=True, text=True, check=True
    )
    packages = {p["package_name"]: p for p in json.loads(listed.stdout)}
    assert packages["airflow-docjobs"]["version"] == airflow_docjobs.__version__


def _classes_and_arguments():
    from airflow_docjobs.operators.biros import BirosSubmitOperator
    from airflow_docjobs.operators.docimprint import DocimprintSubmitOperator
    from airflow_docjobs.operators.finovox import FinovoxSubmitCaseOperator, FinovoxSubmitDocumentOperator
    from airflow_docjobs.operators.mindee import MindeeSubmitOperator
    from airflow_docjobs.sensors.biros import BirosDocumentSensor
    from airflow_docjobs.sensors.docimprint import DocimprintJobSensor
    from airflow_docjobs.sensors.finovox import FinovoxResultSensor
    from airflow_docjobs.sensors.mindee import MindeeJobSensor

    return [
        (FinovoxSubmitDocumentOperator, {"file": "a.pdf"}),
        (FinovoxSubmitCaseOperator, {"documents": "case/", "use_case": "rental"}),
        (MindeeSubmitOperator, {"document": "a.pdf", "product": "invoices", "version": "v4"}),
        (DocimprintSubmitOperator, {"source": "https://example.com/a.pdf"}),
        (BirosSubmitOperator, {"file": "a.pdf", "service_id": "payslip"}),
        (FinovoxResultSensor, {"retrieve_token": "t"}),
        (MindeeJobSensor, {"job_id": "j", "product": "invoices", "version": "v4"}),
        (DocimprintJobSensor, {"job_id": "j"}),
        (BirosDocumentSensor, {"document_id": "d", "service_id": "payslip"}),
    ]


@pytest.mark.parametrize(
    ("cls", "arguments"), _classes_and_arguments(), ids=lambda v: getattr(v, "__name__", "")
)
def test_connection_ids_are_templated(cls, arguments):
    """As in the official operators: ``<vendor>_conn_id="{{ params.conn }}"`` picks the connection per run."""
    from jinja2 import Environment

    attr = cls.hook_class.conn_name_attr
    operator = cls(task_id="t", **{attr: "{{ params.conn }}"}, **arguments)
    operator.render_template_fields({"params": {"conn": f"{attr}_nightly"}}, Environment())
    assert operator.conn_id == f"{attr}_nightly"
    assert operator.hook.conn_id == f"{attr}_nightly"
