"""
A resumed sensor reads what the trigger landed; when this worker cannot see it (a file:// store on
another machine), it fetches the result from the vendor once more and says which setting to fix.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_docjobs.emulator.core import Fault
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.results import SUBMITTED, ResultsStore, batch_key, write_json
from airflow_docjobs.sensors.base import POKE_CONCURRENCY
from airflow_docjobs.sensors.docimprint import DocimprintJobSensor


def context_for(task_id: str) -> dict:
    ti = SimpleNamespace(dag_id="dag", task_id=task_id, map_index=-1, try_number=1)
    return {"ti": ti, "run_id": "run"}


def test_a_missing_landed_result_is_fetched_again_with_a_warning(emulator, tmp_path, capfd):
    with DocimprintHook() as hook:
        ids = [hook.submit(f"https://example.com/{name}.pdf") for name in ("a", "b")]
    emulator.state.advance(5)
    uri = f"file://{tmp_path / 'results'}"
    single = DocimprintJobSensor(task_id="one", job_id=ids[0], results_uri=uri)
    batch = DocimprintJobSensor(task_id="all", job_id=ids, results_uri=uri)
    emulator.state.requests.clear()

    result = single.execute_complete(context_for("one"), {"status": "success"})
    outcomes = batch.execute_complete(context_for("all"), {"status": "success", "succeeded": 2, "failed": 0})

    assert result["status"] == "complete"
    assert result["job_id"] == ids[0]
    assert [o["state"] for o in outcomes] == ["succeeded", "succeeded"]
    # One fetch each for the jobs not yet landed here: the first was landed by the single sensor's fetch.
    assert len(emulator.state.requests) == 2
    store = ResultsStore(uri, "docimprint", "dag", "run")
    assert len(store.landed_keys()) == 2  # landed now, so a retry reads them
    assert "[docjobs] results_uri" in capfd.readouterr().out


def test_a_batch_defers_after_polling_its_jobs_up_to_the_first_pending(frozen, tmp_path, monkeypatch):
    """
    The first poke lands what ended, oldest first, and stops at the first job still pending; the trigger
    waits for the rest. The store is listed once (on S3, a request per thousand results).
    """
    listings = []
    landed_keys = ResultsStore.landed_keys
    monkeypatch.setattr(ResultsStore, "landed_keys", lambda store: listings.append(1) or landed_keys(store))
    state = frozen.state
    with DocimprintHook() as hook:
        ended = [hook.submit(f"https://example.com/{name}.pdf") for name in ("a", "b")]
        state.advance(5)
        pending = [hook.submit(f"https://example.com/{n}.pdf") for n in range(20)]
    uri = f"file://{tmp_path / 'results'}"
    sensor = DocimprintJobSensor(task_id="all", job_id=ended + pending, results_uri=uri, deferrable=True)
    state.requests.clear()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context_for("all"))
    assert len(listings) == 1
    assert [job["job_id"] for job in deferred.value.trigger.references()[0]] == pending
    # Up to the first pending job, in order, and the few polls sent ahead of it (POKE_CONCURRENCY in
    # flight), not one per job: the trigger polls the rest by its schedule.
    asked = [r["path"].rsplit("/", 1)[1] for r in state.requests]
    assert sorted(asked) == sorted([*ended, *pending][: len(asked)])
    assert 3 <= len(asked) <= 2 + POKE_CONCURRENCY
    assert len(ResultsStore(uri, "docimprint", "dag", "run").landed_keys()) == 2


def test_a_batch_is_polled_and_deferred_in_the_order_the_vendor_took_its_jobs(frozen, tmp_path):
    """
    The submit's record ranks the jobs as the vendor took them (concurrent uploads arrive a few places out
    of the inputs' order): the first poke polls from the first the vendor took, and the trigger gets
    them in that order, the one its plan polls in (oldest first).
    """
    with DocimprintHook() as hook:
        ids = [hook.submit(f"https://example.com/{n}.pdf") for n in range(6)]
    uri = f"file://{tmp_path / 'results'}"
    ranks = [1, 0, 3, 2, 5, 4]
    record = [{"input": f"{n}.pdf", "accepted": rank} for n, rank in enumerate(ranks)]
    write_json(
        ResultsStore(uri, "docimprint", "dag", "run").named(SUBMITTED, f"{batch_key(ids)}.json"), record
    )
    sensor = DocimprintJobSensor(task_id="all", job_id=ids, results_uri=uri, deferrable=True)
    frozen.state.requests.clear()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context_for("all"))
    taken = [ids[n] for n in sorted(range(6), key=ranks.__getitem__)]
    assert [job["job_id"] for job in deferred.value.trigger.references()[0]] == taken
    asked = [r["path"].rsplit("/", 1)[1] for r in frozen.state.requests]
    assert sorted(asked) == sorted(taken[: len(asked)])  # the first the vendor took, and those sent ahead


def test_a_batchs_first_poke_keeps_several_polls_in_flight(frozen, tmp_path):
    """Sixteen ended jobs, each poll answered after 0.5 s: found in a few rounds, not one after the other (8 s)."""
    state = frozen.state
    with DocimprintHook() as hook:
        ended = [hook.submit(f"https://example.com/{n}.pdf") for n in range(16)]
    state.advance(5)
    state.faults.append(Fault(vendor="docimprint", path="/v1/jobs/", method="GET", delay=0.5, times=16))
    sensor = DocimprintJobSensor(
        task_id="all", job_id=ended, results_uri=f"file://{tmp_path}", deferrable=True
    )
    started = time.monotonic()
    outcomes = sensor.execute(context_for("all"))
    assert [o["state"] for o in outcomes] == ["succeeded"] * 16
    assert time.monotonic() - started < 4.0  # two rounds of eight take 1 s; one at a time, 8 s
