"""
The demo DAG on a real Airflow: ``airflow standalone`` (scheduler, triggerer, dag processor, API server and
LocalExecutor on SQLite, everything on loopback) against the vendor emulator.

``dag.test()`` runs a trigger inline in the test process; only a real deployment has a separate triggerer
whose events go through the database and a worker that resumes the task. This module starts one
deployment, triggers ``docjobs_demo`` once through the REST API and checks what that run left behind: the
run's state, every sensor's XCom (a dict, decoded once, as downstream tasks receive it), proof that each
sensor was deferred to a DocJobTrigger and resumed on a worker with the result, and that no secret leaked
into logs, XComs, rendered fields or trigger kwargs.

About a minute on two idle cores, half of it Airflow starting up.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW = Path(sys.executable).parent / "airflow"
DAG_ID = "docjobs_demo"
VENDORS = ("finovox", "mindee", "docimprint", "biros")
SECRET = "emulator"  # the emulator's API key, the password of every connection
# sensor task id -> (its submit task, the hook its trigger polls through)
SENSORS = {
    "finovox_document_result": ("finovox_submit_document", "airflow_docjobs.hooks.finovox.FinovoxHook"),
    "finovox_case_result": ("finovox_submit_case", "airflow_docjobs.hooks.finovox.FinovoxHook"),
    "mindee_result": ("mindee_submit", "airflow_docjobs.hooks.mindee.MindeeHook"),
    "docimprint_result": ("docimprint_submit", "airflow_docjobs.hooks.docimprint.DocimprintHook"),
    "biros_result": ("biros_submit", "airflow_docjobs.hooks.biros.BirosHook"),
}
TASKS = {*SENSORS, *(submit for submit, _ in SENSORS.values()), "ingest"}
TRIGGER_CLASSPATH = "airflow_docjobs.triggers.job.DocJobTrigger"
# Long enough that every sensor's first poke (on a busy two-core worker, seconds after its submit) still finds
# the job pending, so that every sensor defers; the demo's ``make demo`` uses 2 s.
PROCESSING_SECONDS = 20
STARTUP_TIMEOUT = 180  # airflow standalone up, API answering, DAG parsed (20 to 45 s on two cores)
RUN_TIMEOUT = 240  # trigger to the run's end (about 35 s)
STOP_TIMEOUT = 30

# The API key in the shapes a leak takes: an HTTP header line, a header dict (JSON or repr), a connection
# field or URI. The bare word "emulator" is everywhere legitimately (module paths, command lines).
SECRET_FORMS = re.compile(
    r"(?i)(?:\btoken\s+emulator\b"
    r"|(?:api-key|x-payment|authorization|password)['\"]?\s*[:=]\s*['\"]?(?:token\s+)?emulator\b"
    r"|://[^/\s:@]*:emulator@)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 60, chars: int = 8000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])[-chars:]


def connect_ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


@dataclass
class Outcome:
    """What one run of the demo DAG on a real Airflow left behind."""

    home: Path
    work: Path
    fernet_key: str
    emulator_port: int = 0
    run_id: str = ""
    run_state: str = ""
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

    @property
    def fernet(self) -> Fernet:
        return Fernet(self.fernet_key)

    @property
    def db(self) -> Path:
        return self.home / "airflow.db"

    @property
    def standalone_log(self) -> Path:
        return self.work / "standalone.log"

    @property
    def emulator_log(self) -> Path:
        return self.work / "emulator.log"

    def task_log_dir(self, task_id: str) -> Path:
        return self.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={self.run_id}" / f"task_id={task_id}"

    def context(self) -> str:
        """The end of both logs, for a failure message."""
        return (
            f"\n\n--- Airflow home {self.home}; run {self.run_id or '(not triggered)'} {self.run_state}; "
            f"timings {self.elapsed}\n--- tail of {self.standalone_log}:\n{tail(self.standalone_log)}"
            f"\n--- tail of {self.emulator_log}:\n{tail(self.emulator_log, 20, 3000)}"
        )

    def check(self, problems: list[str]) -> None:
        if problems:
            pytest.fail("\n".join(f"- {p}" for p in problems) + self.context(), pytrace=False)


class Deployment:
    """The emulator and ``airflow standalone`` as subprocesses, each in its own process group."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.emulator: subprocess.Popen | None = None
        self.standalone: subprocess.Popen | None = None
        self.api_port = free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.http = httpx.Client(base_url=self.api, timeout=10)
        self._log_offset = 0

    def fail(self, message: str) -> None:
        pytest.fail(message + self.outcome.context(), pytrace=False)

    def env(self) -> dict[str, str]:
        """Built from scratch: nothing of the suite's own Airflow setup (conftest) leaks in, nor out."""
        home, work = self.outcome.home, self.outcome.work
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.upper().startswith(("AIRFLOW", "_AIRFLOW", "DOCJOBS"))
        }
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api}/execution/",
                "AIRFLOW__CORE__FERNET_KEY": self.outcome.fernet_key,
                "AIRFLOW__CORE__PARALLELISM": "6",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # only docjobs_demo gets unpaused
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__WORKERS": "1",
                # Served by the scheduler and the triggerer (on every interface: Airflow has no host option).
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "DOCJOBS_DEMO_WAREHOUSE": str(work / "warehouse.sqlite"),
                "NO_COLOR": "1",
                # standalone starts each component as a bare `airflow`: this virtualenv's must come first
                "PATH": os.pathsep.join([str(AIRFLOW.parent), os.environ.get("PATH", os.defpath)]),
            }
        )
        for vendor in VENDORS:
            env[f"AIRFLOW_CONN_{vendor.upper()}_DEFAULT"] = json.dumps(
                {
                    "conn_type": vendor,
                    "host": f"http://127.0.0.1:{self.outcome.emulator_port}/{vendor}",
                    "password": SECRET,
                }
            )
        return env

    # ---- processes ------------------------------------------------------------------------------

    def start_emulator(self) -> None:
        out = self.outcome.work / "emulator.out"
        with out.open("w") as stdout, self.outcome.emulator_log.open("w") as stderr:
            self.emulator = subprocess.Popen(
                [
                    *(sys.executable, "-m", "airflow_docjobs.emulator", "--port", "0"),
                    *("--processing-seconds", str(PROCESSING_SECONDS)),
                ],
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if match := re.search(r"listening on http://127\.0\.0\.1:(\d+)", out.read_text()):
                self.outcome.emulator_port = int(match.group(1))
                return
            if self.emulator.poll() is not None:
                break
            time.sleep(0.1)
        self.fail(f"the emulator did not start: {out.read_text()!r}")

    def start_airflow(self) -> None:
        with self.outcome.standalone_log.open("w") as log:
            self.standalone = subprocess.Popen(
                [str(AIRFLOW), "standalone"],
                env=self.env(),
                cwd=self.outcome.work,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: the scheduler, workers, triggerer... too
            )

    def stop(self) -> None:
        self.http.close()
        for proc in (self.standalone, self.emulator):
            if proc is None:
                continue
            _stop_group(proc)

    # ---- the API ----------------------------------------------------------------------------------

    def alive(self) -> None:
        """Fail fast if standalone exited, or could not start a component (it carries on without it)."""
        if self.standalone is not None and self.standalone.poll() is not None:
            self.fail(f"airflow standalone exited with status {self.standalone.returncode}")
        with self.outcome.standalone_log.open("rb") as log:
            log.seek(self._log_offset)
            new = log.read()
        self._log_offset += new.rfind(b"\n") + 1
        if match := re.search(rb"Exception in thread ([\w-]+)", new[: new.rfind(b"\n") + 1]):
            time.sleep(1)  # let the traceback reach the log
            self.fail(f"airflow standalone could not run its {match.group(1).decode()}")

    def wait_until_ready(self) -> None:
        """API server up, admin token issued, docjobs_demo parsed."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        stage = "the API server to answer"
        while time.monotonic() < deadline:
            self.alive()
            try:
                if "authorization" not in self.http.headers:
                    self.http.get("/api/v2/monitor/health").raise_for_status()
                    stage = "the admin password and a token"
                    passwords = self.outcome.home / "simple_auth_manager_passwords.json.generated"
                    password = json.loads(passwords.read_text())["admin"]
                    answer = self.http.post("/auth/token", json={"username": "admin", "password": password})
                    answer.raise_for_status()
                    self.http.headers["authorization"] = f"Bearer {answer.json()['access_token']}"
                    stage = f"the DAG {DAG_ID} to be parsed"
                if self.http.get(f"/api/v2/dags/{DAG_ID}").status_code == 200:
                    return
            except (httpx.HTTPError, OSError, ValueError, KeyError):
                pass
            time.sleep(1)
        self.fail(f"gave up after {STARTUP_TIMEOUT}s waiting for {stage}")

    def trigger(self) -> str:
        """Unpause the DAG and start a run through the REST API."""
        for method, path, body in (
            ("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False}),
            ("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None}),
        ):
            answer = self.http.request(method, path, json=body)
            if answer.status_code != 200:
                self.fail(f"{method} {path} answered {answer.status_code}: {answer.text}")
        return answer.json()["dag_run_id"]

    def wait_for_run(self) -> str:
        """
        Wait for the run to end, reading the database (the API's access log would drown standalone's
        log) and keeping every trigger row seen: they are deleted once they fired.
        """
        deadline = time.monotonic() + RUN_TIMEOUT
        state = "queued"
        while time.monotonic() < deadline:
            self.alive()
            state = self.look() or state
            if state in ("success", "failed"):
                return state
            time.sleep(0.5)
        self.fail(f"the run did not end within {RUN_TIMEOUT}s (state {state!r})")
        raise AssertionError  # unreachable, for type checkers

    def look(self) -> str | None:
        """One look at the run's state, its deferred sensors and the trigger table."""
        outcome = self.outcome
        key = (DAG_ID, outcome.run_id)
        try:
            with closing(connect_ro(outcome.db)) as db:
                state = db.execute(
                    "SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", key
                ).fetchone()
                rows = db.execute("SELECT id, classpath, kwargs FROM trigger").fetchall()
                deferred = db.execute(
                    "SELECT task_id, trigger_id FROM task_instance"
                    " WHERE dag_id = ? AND run_id = ? AND state = 'deferred' AND trigger_id IS NOT NULL",
                    key,
                ).fetchall()
        except sqlite3.Error:
            return None  # busy: the next look will do
        for trigger_id, classpath, stored in rows:
            if trigger_id not in outcome.triggers:
                outcome.triggers[trigger_id] = (classpath, stored, _decrypt(outcome.fernet, stored))
        for task_id, trigger_id in deferred:
            if trigger_id in outcome.triggers:
                classpath, _, kwargs = outcome.triggers[trigger_id]
                outcome.deferred[(task_id, trigger_id)] = {"classpath": classpath, **json.loads(kwargs)}
        return state[0] if state else None

    # ---- what the run left behind -------------------------------------------------------------------

    def collect(self) -> None:
        outcome = self.outcome
        try:
            outcome.journal = httpx.get(
                f"http://127.0.0.1:{outcome.emulator_port}/_emulator/requests", timeout=10
            ).json()
        except (httpx.HTTPError, ValueError) as exc:
            self.fail(f"could not read the emulator's request journal: {exc!r}")
        key = (DAG_ID, outcome.run_id)
        with closing(connect_ro(outcome.db)) as db:
            db.row_factory = sqlite3.Row
            outcome.task_instances = {
                row["task_id"]: dict(row)
                for row in db.execute("SELECT * FROM task_instance WHERE dag_id = ? AND run_id = ?", key)
            }
            outcome.xcoms = {
                # The column is declared JSON: SQLite hands back a bare number as an int.
                (row["task_id"], row["key"]): row["value"]
                if isinstance(row["value"], str)
                else json.dumps(row["value"])
                for row in db.execute(
                    "SELECT task_id, key, value FROM xcom WHERE dag_id = ? AND run_id = ?", key
                )
            }
            for row in db.execute(
                "SELECT task_id, event FROM log WHERE dag_id = ? AND run_id = ? ORDER BY dttm, id", key
            ):
                outcome.audit.setdefault(row["task_id"], []).append(row["event"])
            outcome.rendered = {
                row["task_id"]: str(row["rendered_fields"])
                for row in db.execute(
                    "SELECT task_id, rendered_fields FROM rendered_task_instance_fields"
                    " WHERE dag_id = ? AND run_id = ?",
                    key,
                )
            }
        warehouse = outcome.work / "warehouse.sqlite"
        if warehouse.exists():
            with closing(sqlite3.connect(warehouse)) as db:
                outcome.warehouse = db.execute(
                    "SELECT source, result FROM document_results WHERE run_id = ?", (outcome.run_id,)
                ).fetchall()


def _decrypt(fernet: Fernet, stored: str) -> str:
    """Trigger kwargs as Airflow stores them: Fernet-encrypted JSON (plain JSON on some migration paths)."""
    return stored if stored.startswith("{") else fernet.decrypt(stored.encode()).decode()


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL what is left after STOP_TIMEOUT; reap the leader."""
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 10)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while _group_alive(pgid) and time.monotonic() < deadline:
            proc.poll()  # reap the leader as soon as it exits
            time.sleep(0.2)
        if not _group_alive(pgid):
            break
    with suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def _group_alive(pgid: int) -> bool:
    """Any process of the group that is not a zombie (zombies wait for init to reap them)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Iterator[Outcome]:
    work = tmp_path_factory.mktemp("standalone")
    outcome = Outcome(home=work / "airflow", work=work, fernet_key=Fernet.generate_key().decode())
    outcome.home.mkdir()
    deployment = Deployment(outcome)
    started = time.monotonic()
    try:
        deployment.start_emulator()
        deployment.start_airflow()
        deployment.wait_until_ready()
        outcome.elapsed["ready"] = round(time.monotonic() - started)
        outcome.run_id = deployment.trigger()
        outcome.run_state = deployment.wait_for_run()
        outcome.elapsed["run_ended"] = round(time.monotonic() - started)
        deployment.collect()
    finally:
        deployment.stop()
        outcome.elapsed["stopped"] = round(time.monotonic() - started)
    yield outcome


# ---- the checks ------------------------------------------------------------------------------------


def test_secret_forms_catch_a_leaked_api_key():
    """The leak pattern below is only worth something if it can match."""
    leaks = [
        "Authorization: Token emulator",
        "{'api-key': 'emulator'}",
        '"x-api-key": "emulator"',
        "X-Payment: emulator",
        '{"conn_type": "mindee", "password": "emulator"}',
        "finovox://:emulator@127.0.0.1:8080/finovox",
    ]
    innocent = [
        "python -m airflow_docjobs.emulator --port 0",
        "airflow_docjobs.emulator.app",
        '"authorization": "***"',
        '"password": "***"',
        "emulator listening on http://127.0.0.1:8080",
    ]
    assert [s for s in leaks if not SECRET_FORMS.search(s)] == []
    assert [s for s in innocent if SECRET_FORMS.search(s)] == []


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
        for event in _events(log):
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
        values[sensor], double = _decode(stored)
        if double:
            problems.append(
                f"{sensor}: return_value is stored double-encoded, a JSON string holding the result"
                f" ({stored[:70]}...): a downstream task pulls a str, not the result dict"
            )
        values[submit], _ = _decode(demo_run.xcoms.get((submit, "return_value"), "null"))

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
        link, double = _decode(stored)
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
        events = demo_run.audit.get(sensor, [])
        if events != ["running", "deferred", "running", "success"]:
            problems.append(
                f"{sensor}: audit log events {events}, expected running, deferred, running, success"
            )

        worker = [e.get("event", "") for e in _events(demo_run.task_log_dir(sensor) / "attempt=1.log")]
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
            for e in _events(path)
            if e.get("event") == "Trigger fired event"
            and e.get("result") == "TriggerEvent<{'status': 'success'}>"
        ]
        succeeded = [
            e
            for path in trigger_logs
            for e in _events(path)
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
    The API key never appears as a header or password value in the task, trigger and DAG processor logs, the
    console output of every component, the XComs, the rendered fields or the trigger kwargs (decrypted), and
    the kwargs carry no password field; Finovox retrieve tokens (they grant access to a result by
    themselves) stay out of every log.
    """
    problems = []
    texts: dict[str, str] = {
        str(path.relative_to(demo_run.home)): path.read_text(errors="replace")
        for path in sorted((demo_run.home / "logs").rglob("*"))
        if path.is_file()
    }
    texts["standalone console output"] = demo_run.standalone_log.read_text(errors="replace")
    logs = dict(texts)
    if not any("task_id=" in name for name in logs):
        problems.append("no task log found: nothing was checked")
    for (task, key), value in demo_run.xcoms.items():
        texts[f"xcom {task}/{key}"] = value
    for task, value in demo_run.rendered.items():
        texts[f"rendered fields of {task}"] = value
    for trigger_id, (classpath, _, kwargs) in demo_run.triggers.items():
        texts[f"trigger {trigger_id} kwargs"] = kwargs
        if classpath == TRIGGER_CLASSPATH and _keys(json.loads(kwargs)) & {"password", "api_key", "headers"}:
            problems.append(f"trigger {trigger_id} kwargs carry a credential field: {kwargs[:300]}")
    if not demo_run.triggers:
        problems.append("no trigger row was seen: trigger kwargs were not checked")
    for name, text in texts.items():
        if match := SECRET_FORMS.search(text):
            start = max(0, match.start() - 120)
            problems.append(f"the API key leaks in {name}: ...{text[start : match.end() + 40]!r}")

    tokens = [
        json.loads(demo_run.xcoms[(submit, "return_value")])
        for submit in ("finovox_submit_document", "finovox_submit_case")
        if (submit, "return_value") in demo_run.xcoms
    ]
    if len(tokens) != 2:
        problems.append(f"expected the two Finovox retrieve tokens in XCom, found {len(tokens)}")
    rendered = {f"rendered fields of {task}": value for task, value in demo_run.rendered.items()}
    for token in tokens:
        # The random middle of the token: its start (version and timestamp) is shared by all tokens.
        probe = token[12:44] if len(token) >= 64 else token
        for name, text in {**logs, **rendered}.items():
            if probe in text:
                start = text.index(probe)
                problems.append(
                    f"a Finovox retrieve token leaks in {name}: ...{text[max(0, start - 120) : start + 40]!r}"
                )
    demo_run.check(problems)


def _events(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines task or trigger log; missing file, no events."""
    events = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            event.setdefault("event", "")
            events.append(event)
    return events


def _decode(stored: str) -> tuple[Any, bool]:
    """
    An XCom ``value`` column, decoded once (as the Execution API serves it to a task) and, if that gives a
    string that is itself JSON, decoded again: (the value, whether it was stored double-encoded).
    """
    value = json.loads(stored)
    if isinstance(value, str):
        try:
            return json.loads(value), True
        except ValueError:
            pass
    return value, False


def _keys(value: Any) -> set[str]:
    """Every mapping key in a JSON value, lower-cased."""
    if isinstance(value, dict):
        return {str(k).lower() for k in value} | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()
