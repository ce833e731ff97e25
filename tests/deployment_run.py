"""
The run behind ``test_deployment.py``: its settings, the deployment it starts (``deploy``), the two phases it
drives (``watch_batch``: the batch and resubmit runs, and the triggerer it kills; ``drive_race``: the race
run on the emulator's clock), what they leave behind (``Outcome``) and the documents the sensors waited
for (``documents``). The Airflow components themselves are ``deployment.py``'s.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from dags.docjobs_deploy_dags import BATCH_SIZES, RESUBMIT_LIST, SERVICE, make_conf
from deployment import Airflow, Emulator
from deployment_checks import decode_xcom, postgres

from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.hooks.mindee import MindeeHook
from airflow_docjobs.results import job_key

DAGS = Path(__file__).parent / "dags"
# The deployment's DAG folder holds only these: the DAG file, the module it imports, the ignore file that
# keeps Airflow from parsing that module as a DAG file.
DAG_FILES = ("docjobs_deploy_dags.py", "_dies_after_submit.py", ".airflowignore")
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
# Per kind of job: the store's vendor folder, the vendor's submit route, and the job reference a sensor
# builds from a vendor reference (its hash names the landed file).
JOB = {
    "finovox": ("finovox", "/analyse", lambda ref: FinovoxHook.job_reference(ref, analysis="document")),
    "case": ("finovox", "/case", lambda ref: FinovoxHook.job_reference(ref, analysis="case")),
    "biros": ("biros", "/async-predict", lambda ref: BirosHook.job_reference(ref, service_id=SERVICE)),
    "mindee": (
        "mindee",
        "/predict_async",
        lambda ref: MindeeHook.job_reference(ref, product="invoices", version="v4"),
    ),
    "docimprint": ("docimprint", "/v1/extract", DocimprintHook.job_reference),
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


def deploy(work: Path) -> Outcome:
    """
    Start the deployment in ``work``, run both phases, read back what they left and stop everything (also
    when a phase fails).
    """
    batch_conf, resubmit_conf = make_conf(work / "docs")
    (work / "dags").mkdir()
    for name in DAG_FILES:  # only these DAGs: the processor parses nothing else
        shutil.copy(DAGS / name, work / "dags")
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
