"""
The demo DAG on a real Airflow: ``airflow standalone`` (scheduler, triggerer, dag processor, API server and
LocalExecutor on SQLite, everything on loopback) against the vendor emulator.

``dag.test()`` runs a trigger inline in the test process; only a real deployment has a separate triggerer
whose events go through the database and a worker that resumes the task. This module starts one
deployment (through ``deployment.py``, shared with ``test_deployment.py``), triggers ``docjobs_demo`` once
through the REST API and checks what that run left behind: the run's state, every sensor's XCom (a dict,
decoded once, as downstream tasks receive it), proof that each sensor was deferred to a DocJobTrigger and
resumed on a worker with the result, and that no secret leaked into logs, XComs, rendered fields or
trigger kwargs.

About a minute on two idle cores, half of it Airflow starting up.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from deployment import SECRET, Airflow, Component, Emulator
from deployment_checks import decode_xcom, events, leaks

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "docjobs_demo"
# sensor task id -> (its submit task, the hook its trigger polls through)
SENSORS = {
    "finovox_document_result": ("finovox_submit_document", "airflow_docjobs.hooks.finovox.FinovoxHook"),
    "finovox_case_result": ("finovox_submit_case", "airflow_docjobs.hooks.finovox.FinovoxHook"),
    "mindee_result": ("mindee_submit", "airflow_docjobs.hooks.mindee.MindeeHook"),
    "mindee_v2_result": ("mindee_v2_submit", "airflow_docjobs.hooks.mindee_v2.MindeeV2Hook"),
    "docimprint_result": ("docimprint_submit", "airflow_docjobs.hooks.docimprint.DocimprintHook"),
    "biros_result": ("biros_submit", "airflow_docjobs.hooks.biros.BirosHook"),
}
TASKS = {*SENSORS, *(submit for submit, _ in SENSORS.values()), "ingest"}
TRIGGER_CLASSPATH = "airflow_docjobs.triggers.job.DocJobTrigger"
# The emulator's clock stands still from the start until every sensor is seen deferred, so that every sensor's
# first poke finds its job pending however loaded the machine; from then on jobs take this long. Not less: the
# last sensor to defer would resume within seconds of deferring, inside the window of Airflow's stale-executor-
# event race (docs/design.md), which a full make test hit with 2 s ('state mismatch', then a second try).
PROCESSING_SECONDS = 20
STARTUP_TIMEOUT = 180  # airflow standalone up, API answering, DAG parsed (20 to 45 s on two cores)
RUN_TIMEOUT = 240  # trigger to the run's end (about 35 s)

pytestmark = pytest.mark.integration


@dataclass
class Outcome:
    """What one run of the demo DAG on a real Airflow left behind."""

    airflow: Airflow
    run_id: str = ""
    run_state: str = ""
    thawed: bool = False  # the emulator's clock runs again: every sensor was seen deferred
    elapsed: dict[str, float] = field(default_factory=dict)
    # (task_id, trigger_id) -> decrypted trigger kwargs, for every sensor seen deferred during the run
    deferred: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    # every trigger row seen during the run: id -> (classpath, kwargs as stored, kwargs decrypted)
    triggers: dict[int, tuple[str, str, str]] = field(default_factory=dict)
    task_instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    xcoms: dict[tuple[str, str], str] = field(default_factory=dict)  # (task_id, key) -> value column text
    audit: dict[str, list[str]] = field(default_factory=dict)  # task_id -> events of the `log` table
    rendered: dict[str, str] = field(default_factory=dict)  # task_id -> rendered_fields column text
    journal: list[dict[str, Any]] = field(default_factory=list)
    warehouse: list[tuple[str, str]] = field(default_factory=list)
    dump: dict[str, str] = field(default_factory=dict)  # the metadata database, table by table

    @property
    def home(self) -> Path:
        return self.airflow.home

    @property
    def emulator_port(self) -> int:
        return self.airflow.emulator.port

    @property
    def standalone_log(self) -> Path:
        return self.airflow.components["standalone"].log

    def task_log_dir(self, task_id: str) -> Path:
        return self.airflow.task_log_dir(DAG_ID, self.run_id, task_id)

    def check(self, problems: list[str]) -> None:
        self.airflow.check(problems)


def start(work: Path) -> Airflow:
    """The emulator, then ``airflow standalone`` on a SQLite home, watched for components it could not run."""
    emulator = Emulator(work, PROCESSING_SECONDS)
    emulator.set_clock(frozen=True)
    db = work / "airflow" / "airflow.db"
    env = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__PARALLELISM": "6",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # only docjobs_demo gets unpaused
        "DOCJOBS_DEMO_WAREHOUSE": str(work / "warehouse.sqlite"),
    }
    airflow = Airflow(
        work,
        db_url=f"sqlite:///{db}",
        read_url=f"sqlite:///file:{db}?mode=ro&uri=true",
        emulator=emulator,
        env=env,
    )
    standalone = airflow.start("standalone", "standalone")
    airflow.watchers.append(lambda: _threads_alive(airflow, standalone))
    return airflow


def _threads_alive(airflow: Airflow, standalone: Component) -> None:
    """standalone carries on when it could not start a component: its log says so, and the test fails."""
    if match := re.search(rb"Exception in thread ([\w-]+)", standalone.new_output()):
        time.sleep(1)  # let the traceback reach the log
        airflow.fail(f"airflow standalone could not run its {match.group(1).decode()}")


def look(outcome: Outcome) -> bool:
    """
    One look at the trigger table and the run's deferred sensors, keeping every trigger row seen (they are
    deleted once they fired); whether the run ended.
    """
    airflow = outcome.airflow
    for trigger_id, row in airflow.triggers().items():
        outcome.triggers.setdefault(trigger_id, (row["classpath"], row["stored"], json.dumps(row["kwargs"])))
    for (task_id, _), ti in airflow.task_instances(DAG_ID, outcome.run_id).items():
        if ti["state"] == "deferred" and ti["trigger_id"] in outcome.triggers:
            classpath, _, kwargs = outcome.triggers[ti["trigger_id"]]
            outcome.deferred[(task_id, ti["trigger_id"])] = {"classpath": classpath, **json.loads(kwargs)}
    if not outcome.thawed and {task_id for task_id, _ in outcome.deferred} >= set(SENSORS):
        airflow.emulator.set_clock(frozen=False)
        outcome.thawed = True
    outcome.run_state = airflow.run_state(DAG_ID, outcome.run_id) or ""
    return outcome.run_state in ("success", "failed")


def collect(outcome: Outcome) -> None:
    airflow = outcome.airflow
    outcome.journal = airflow.emulator.journal()
    record = airflow.record(DAG_ID, outcome.run_id)
    outcome.task_instances = {task_id: ti for (task_id, _), ti in record["tis"].items()}
    outcome.xcoms = {(task_id, key): value for (task_id, _, key), value in record["xcoms"].items()}
    outcome.audit = {task_id: found for (task_id, _), found in record["audit"].items()}
    outcome.rendered = {
        row["task_id"]: row["rendered"]
        for row in airflow.rows(
            "SELECT task_id, CAST(rendered_fields AS TEXT) AS rendered FROM rendered_task_instance_fields"
            " WHERE dag_id = :dag_id AND run_id = :run_id",
            dag_id=DAG_ID,
            run_id=outcome.run_id,
        )
    }
    outcome.dump = airflow.dump()
    warehouse = airflow.work / "warehouse.sqlite"
    if warehouse.exists():
        with closing(sqlite3.connect(warehouse)) as db:
            outcome.warehouse = db.execute(
                "SELECT source, result FROM document_results WHERE run_id = ?", (outcome.run_id,)
            ).fetchall()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Iterator[Outcome]:
    work = tmp_path_factory.mktemp("standalone")
    started = time.monotonic()
    outcome = Outcome(airflow := start(work))
    try:
        airflow.wait_until_ready([DAG_ID], STARTUP_TIMEOUT)
        outcome.elapsed["ready"] = round(time.monotonic() - started)
        outcome.run_id = airflow.trigger(DAG_ID)
        airflow.wait("the run to end", RUN_TIMEOUT, lambda: look(outcome))
        outcome.elapsed["run_ended"] = round(time.monotonic() - started)
        collect(outcome)
    finally:
        airflow.stop()
        airflow.emulator.stop()
        outcome.elapsed["stopped"] = round(time.monotonic() - started)
    return outcome


# ---- the checks ------------------------------------------------------------------------------------


def test_demo_run_succeeds(demo_run):
    """Every task succeeds, and ``ingest`` got each sensor's result as a dict (it stores them)."""
    problems = []
    if demo_run.run_state != "success":
        problems.append(f"the run ended {demo_run.run_state!r}")
    states = {task: ti["state"] for task, ti in demo_run.task_instances.items()}
    if states != dict.fromkeys(TASKS, "success"):
        problems.append(f"task states {states}")
    sources = sorted(source for source, _ in demo_run.warehouse)
    expected = sorted(task.removesuffix("_result") for task in SENSORS)
    if sources != expected:
        problems.append(f"ingest stored results for {sources}, expected {expected}")
    if states.get("ingest") == "failed":
        log = demo_run.task_log_dir("ingest") / "attempt=1.log"
        for event in events(log):
            for error in event.get("error_detail") or []:
                frames = error.get("frames") or [{}]
                where = ", ".join(f"{f.get('filename')}:{f.get('lineno')}" for f in frames[-2:])
                problems.append(f"ingest raised {error.get('exc_type')}: {error.get('exc_value')} at {where}")
    demo_run.check(problems)


def test_each_sensor_returns_the_vendor_result(demo_run):
    """
    Each sensor's ``return_value`` XCom is the vendor's result JSON for the job its submit task started,
    stored as JSON (the ``value`` column decodes once to the dict, as the Execution API hands it to
    downstream tasks); the Finovox case sensor also stores its extra link's URL.
    """
    problems = []
    values: dict[str, Any] = {}
    for sensor, (submit, _) in SENSORS.items():
        stored = demo_run.xcoms.get((sensor, "return_value"))
        if stored is None:
            problems.append(f"{sensor}: no return_value XCom")
            continue
        values[sensor], double = decode_xcom(stored)
        if double:
            problems.append(
                f"{sensor}: return_value is stored double-encoded, a JSON string holding the result"
                f" ({stored[:70]}...): a downstream task pulls a str, not the result dict"
            )
        values[submit], _ = decode_xcom(demo_run.xcoms.get((submit, "return_value"), "null"))

    def expect(sensor: str, what: str, check: Any) -> None:
        if sensor not in values:
            return
        try:
            ok = check(values[sensor])
        except (KeyError, TypeError, AttributeError) as exc:
            ok, what = False, f"{what} ({type(exc).__name__}: {exc})"
        if not ok:
            problems.append(f"{sensor}: expected {what}, got {json.dumps(values[sensor])[:400]}")

    expect(
        "finovox_document_result",
        "a risk analysis of the payslip",
        lambda r: r["global_risk"] and r["name"] == "payslip_2026_10.pdf",
    )
    expect("finovox_case_result", "a case decision", lambda r: r["decision"]["status"])
    share = f"http://127.0.0.1:{demo_run.emulator_port}/finovox/share/"
    expect(
        "finovox_case_result",
        f"a share link under {share}",
        lambda r: r["share_link"]["url"].startswith(share),
    )
    expect(
        "mindee_result",
        "an invoice prediction",
        lambda r: isinstance(r["document"]["inference"]["prediction"], dict),
    )
    expect("mindee_result", "the submitted job", lambda r: r["job"]["id"] == values["mindee_submit"])
    expect(
        "mindee_v2_result",
        "an extraction inference",
        lambda r: r["inference"]["result"]["fields"]["total_amount"]["value"] > 0,
    )
    expect(
        "mindee_v2_result",
        "the submitted job",
        lambda r: r["inference"]["job"]["id"] == values["mindee_v2_submit"],
    )
    expect("docimprint_result", "a complete bundle", lambda r: r["status"] == "complete" and r["bundle_id"])
    expect("docimprint_result", "the submitted job", lambda r: r["job_id"] == values["docimprint_submit"])
    expect("biros_result", "an ACTIVE document", lambda r: r["document"]["status"] == "ACTIVE")
    expect("biros_result", "the submitted document", lambda r: r["document"]["id"] == values["biros_submit"])

    stored = demo_run.xcoms.get(("finovox_case_result", "_link_FinovoxShareLink"))
    result = values.get("finovox_case_result")
    url = result.get("share_link", {}).get("url") if isinstance(result, dict) else None
    if stored is None:
        problems.append("finovox_case_result: no _link_FinovoxShareLink XCom")
    else:
        link, double = decode_xcom(stored)
        if double:
            problems.append(f"finovox_case_result: _link_FinovoxShareLink is stored double-encoded: {stored}")
        if not url or link != url:
            problems.append(
                f"finovox_case_result: _link_FinovoxShareLink is {link!r}, the share link {url!r}"
            )
    demo_run.check(problems)


def test_sensors_were_deferred_then_resumed_with_the_result(demo_run):
    """
    Each sensor ran on a worker, deferred to a DocJobTrigger, and resumed on a worker once the trigger saw
    the job succeed. Evidence: the task instance seen ``deferred`` on a DocJobTrigger row; the audit ``log``
    table reads running, deferred, running, success; the worker's log has two start-ups (run, resume), one
    deferral and the pushed result; the trigger's log shows one success event, without the result in it.
    """
    problems = []
    for sensor, (_, hook_class) in SENSORS.items():
        triggers = [kwargs for (task, _), kwargs in demo_run.deferred.items() if task == sensor]
        if len(triggers) != 1:
            problems.append(
                f"{sensor}: seen deferred on {len(triggers)} triggers, expected 1 (did it defer?)"
            )
        elif (triggers[0]["classpath"], triggers[0].get("hook_class")) != (TRIGGER_CLASSPATH, hook_class):
            problems.append(f"{sensor}: deferred on an unexpected trigger {triggers[0]}")

        ti = demo_run.task_instances.get(sensor, {})
        if (ti.get("state"), ti.get("try_number")) != ("success", 1):
            problems.append(f"{sensor}: state {ti.get('state')!r}, try {ti.get('try_number')!r}")
        audit = demo_run.audit.get(sensor, [])
        if audit != ["running", "deferred", "running", "success"]:
            problems.append(
                f"{sensor}: audit log events {audit}, expected running, deferred, running, success"
            )

        worker = [e.get("event", "") for e in events(demo_run.task_log_dir(sensor) / "attempt=1.log")]
        starts = worker.count("Worker startup parse complete")
        deferrals = [e for e in worker if e.startswith("Pausing task as DEFERRED")]
        if starts != 2 or len(deferrals) != 1 or "Pushing xcom" not in worker:
            problems.append(
                f"{sensor}: worker log has {starts} worker start-ups, {len(deferrals)} deferrals and"
                f" {'a' if 'Pushing xcom' in worker else 'no'} pushed XCom (expected 2, 1, a)"
            )

        trigger_logs = sorted(demo_run.task_log_dir(sensor).glob("attempt=1.log.trigger.*.log"))
        fired = [
            e
            for path in trigger_logs
            for e in events(path)
            if e.get("event") == "Trigger fired event"
            and e.get("result") == "TriggerEvent<{'status': 'success'}>"
        ]
        succeeded = [
            e
            for path in trigger_logs
            for e in events(path)
            if e.get("logger") == "airflow_docjobs.triggers.job.DocJobTrigger"
            and e["event"].endswith(" succeeded")
        ]
        if len(fired) != 1 or len(succeeded) != 1:
            problems.append(
                f"{sensor}: trigger logs {[p.name for p in trigger_logs]} show {len(succeeded)} job successes"
                f" and {len(fired)} success events fired (expected 1 and 1)"
            )
    if not demo_run.journal or not all(request["authorized"] for request in demo_run.journal):
        refused = [r for r in demo_run.journal if not r["authorized"]]
        problems.append(
            f"the emulator refused {len(refused)} of {len(demo_run.journal)} requests: {refused[:3]}"
        )
    demo_run.check(problems)


def test_no_secret_leaks(demo_run):
    """
    The API key (a distinctive one, ``deployment.SECRET``) appears nowhere on Airflow's side: not in any
    file of the deployment (every component's console output, the task, trigger and DAG processor logs,
    the results store, the SQLite metadata and warehouse databases), any row of the metadata database, an
    XCom, a rendered field or a trigger's decrypted kwargs, which carry no credential field either. Finovox
    retrieve tokens (they grant access to a result by themselves) stay out of every log, the rendered
    fields and the results store.
    """
    problems = []
    if not any("task_id=" in str(path) for path in (demo_run.home / "logs").rglob("*.log")):
        problems.append("no task log found: nothing was checked")
    texts = dict(demo_run.dump)
    texts |= {f"xcom {task}/{key}": value for (task, key), value in demo_run.xcoms.items()}
    texts |= {f"rendered fields of {task}": value for task, value in demo_run.rendered.items()}
    for trigger_id, (classpath, _, kwargs) in demo_run.triggers.items():
        texts[f"trigger {trigger_id} kwargs"] = kwargs
        if classpath == TRIGGER_CLASSPATH and _keys(json.loads(kwargs)) & {"password", "api_key", "headers"}:
            problems.append(f"trigger {trigger_id} kwargs carry a credential field: {kwargs[:300]}")
    if not demo_run.triggers:
        problems.append("no trigger row was seen: trigger kwargs were not checked")
    problems += leaks(demo_run.airflow.work, texts, {"the API key": SECRET})

    tokens = [
        json.loads(demo_run.xcoms[(submit, "return_value")])
        for submit in ("finovox_submit_document", "finovox_submit_case")
        if (submit, "return_value") in demo_run.xcoms
    ]
    if len(tokens) != 2:
        problems.append(f"expected the two Finovox retrieve tokens in XCom, found {len(tokens)}")
    # The random middle of a token: its start (version and timestamp) is shared by all tokens.
    probes = {f"Finovox token {n}": t[12:44] if len(t) >= 64 else t for n, t in enumerate(tokens)}
    seen = {f"rendered fields of {task}": value for task, value in demo_run.rendered.items()}
    consoles = [path for path in demo_run.airflow.work.glob("*.log") if path.name != "emulator.log"]
    seen |= {path.name: path.read_text(errors="replace") for path in consoles}
    problems += leaks(demo_run.home / "logs", seen, probes)
    problems += leaks(demo_run.home / "docjobs", {}, probes)  # the results store
    demo_run.check(problems)


def _keys(value: Any) -> set[str]:
    """Every mapping key in a JSON value, lower-cased."""
    if isinstance(value, dict):
        return {str(k).lower() for k in value} | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()
