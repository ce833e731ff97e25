"""The example DAGs import cleanly, and the mapped ones really run against the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_dags

EXAMPLES = Path(__file__).parent.parent / "example_dags"


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(EXAMPLES))


def test_every_example_dag_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {
        "docjobs_demo",
        "example_finovox",
        "example_mindee",
        "example_mindee_v2",
        "example_docimprint",
        "example_biros",
    } <= set(dagbag.dag_ids)


@pytest.mark.parametrize(
    "dag_id", ["example_finovox", "example_mindee", "example_mindee_v2", "example_docimprint"]
)
def test_example_runs_end_to_end(airflow_db, emulator, dag_id):
    # Jobs finish at once, so the examples' production poll intervals (up to 30 s) never come into play.
    emulator.state.settings.update({"processing_seconds": 0})
    dag_run = load_dags(EXAMPLES / f"{dag_id}.py")[dag_id].test()
    states = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
