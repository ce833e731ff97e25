"""
What must hold on every Airflow version the provider supports. ``make test`` runs it on 3.3 with the whole
suite; ``make test-compat`` (``scripts/test_compat.sh``) runs it alone on Airflow 2.11 and 3.0, each in
its own virtualenv: the version flags, the connection form both ways, the hooks and the trigger against the
emulator, and one deferrable ``dag.test()`` per vendor whose trigger really runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import KIND_IDS, KINDS, POLL_PATHS, advancing, answered, copy_sample, journal, load_dags, until

from airflow_docjobs.get_provider_info import CONN_TYPES, VENDORS, get_provider_info
from airflow_docjobs.results import ResultsStore
from airflow_docjobs.triggers.job import DocJobTrigger
from airflow_docjobs.version_compat import (
    AIRFLOW_V_3_0_PLUS,
    AIRFLOW_V_3_3_PLUS,
    get_base_airflow_version_tuple,
    resumable_job_mixin,
)

DAG_FILE = Path(__file__).parent / "dags" / "docjobs_compat_dags.py"
HOOKS = {conn_type: path for conn_type, path, *_ in VENDORS}


def hook_class(conn_type: str) -> type:
    from airflow.providers.common.compat.module_loading import import_string

    return import_string(HOOKS[conn_type])


def test_the_version_flags_agree_with_the_running_airflow():
    import airflow

    major, minor, _ = get_base_airflow_version_tuple()
    assert airflow.__version__.startswith(f"{major}.{minor}")
    assert AIRFLOW_V_3_0_PLUS == (major >= 3)
    assert AIRFLOW_V_3_3_PLUS == ((major, minor) >= (3, 3))
    mixin = resumable_job_mixin()
    # Airflow's own ResumableJobMixin from 3.3; before it, a stand-in that submits on every try.
    assert (mixin.__module__.startswith("airflow.sdk")) == AIRFLOW_V_3_3_PLUS


@pytest.mark.parametrize("conn_type", list(HOOKS))
def test_the_older_connection_form_agrees_with_the_provider_info(conn_type):
    """Airflow < 3.2 reads the form from two hook classmethods, only from the hook class's own dict."""
    hook = hook_class(conn_type)
    (entry,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type]
    behaviour = {key.replace("-", "_"): value for key, value in entry["ui-field-behaviour"].items()}
    assert "get_ui_field_behaviour" in vars(hook)
    assert "get_connection_form_widgets" in vars(hook)
    assert hook.get_ui_field_behaviour() == behaviour


@pytest.mark.parametrize("conn_type", list(HOOKS))
def test_the_older_connection_form_has_a_widget_per_extra(conn_type):
    pytest.importorskip("flask_appbuilder", reason="the WTForms form is Airflow 2's UI (FAB)")
    from airflow.providers_manager import ProvidersManager

    fields = next(
        t["conn-fields"] for t in get_provider_info()["connection-types"] if t["connection-type"] == conn_type
    )
    widgets = hook_class(conn_type).get_connection_form_widgets()
    assert set(widgets) == set(fields)
    # The providers manager of this Airflow takes them (it refuses unsupported field classes).
    manager = ProvidersManager()
    registered = {name.rsplit("__", 1)[-1] for name in manager.connection_form_widgets if conn_type in name}
    assert set(fields) <= registered or not registered  # 3.2+: from conn-fields, named without the type


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
async def test_a_hook_waits_for_a_job_sync_and_async(frozen, tmp_path, kind):
    with kind.hook() as hook:
        job = kind.submit(hook, tmp_path, "payslip.pdf")
        assert hook.get_job_status(job).state == "pending"
    async with kind.hook() as hook:
        assert (await hook.aget_job_status(job)).state == "pending"
        frozen.state.advance(5)
        assert (await hook.aget_job_status(job)).state == "succeeded"


async def test_a_trigger_lands_a_batch_and_ends(frozen, tmp_path):
    kind = next(k for k in KINDS if k.name == "mindee")
    with kind.hook() as hook:
        jobs = [kind.submit(hook, tmp_path, f"doc{n}.pdf") for n in range(3)]
    store = ResultsStore(base=f"file://{tmp_path / 'results'}", vendor="mindee", dag_id="d", run_id="r")
    trigger = DocJobTrigger(
        hook_class=HOOKS["mindee"],
        conn_id="mindee_default",
        deadline="2100-01-01T00:00:00+00:00",
        poll_interval=0.05,
        jobs=DocJobTrigger.pack(jobs, store),
        results=store.spec(),
    )

    async def first_event():
        async for event in trigger.run():
            return event.payload

    waiting = asyncio.ensure_future(first_event())
    await until(lambda: len(answered(frozen, POLL_PATHS["mindee"])) >= 3)  # every job polled, pending
    frozen.state.advance(5)
    event = await waiting
    assert event["status"] == "success"
    assert event["succeeded"] == 3
    assert all(store.landed(job)["state"] == "succeeded" for job in jobs)


@pytest.fixture(scope="module")
def dags(airflow_db):
    return load_dags(DAG_FILE)


@pytest.mark.parametrize("vendor", CONN_TYPES)
def test_a_deferrable_dag_runs_end_to_end(dags, frozen, vendor_conn, tmp_path, monkeypatch, vendor):
    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", f"file://{tmp_path / 'results'}")
    # The job ends only after the sensor's own poll and the trigger's first: the trigger really polls.
    with advancing(frozen, POLL_PATHS[vendor], [(2, 5)]):
        dag_run = dags[f"docjobs_compat_{vendor}"].test(
            run_conf={"file": str(copy_sample(tmp_path, "a.pdf"))}
        )
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    assert len(journal(frozen, POLL_PATHS[vendor])) >= 2
