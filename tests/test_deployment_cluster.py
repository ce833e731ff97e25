"""
The production topology, on loopback (``deployment_cluster.py``): CeleryExecutor on Redis with two workers,
two triggerers, PostgreSQL metadata, inputs and results on an S3 server, every process with a home of its
own. ``docjobs_nightly`` over an ``s3://`` inbox into a PostgreSQL warehouse and a list-mode batch with mapped
sensors; a worker SIGKILLed mid-submit, a triggerer SIGKILLed mid-wait; the night run again.

``make test-deploy`` runs it (the ``deploy`` marker keeps it out of ``make test``); it needs the ``deploy``
extra. Several minutes on two busy cores; it prints its figures (takeover, S3 reads per document, run time).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from airflow_docjobs.operators.biros import BirosSubmitOperator
from airflow_docjobs.operators.docimprint import DocimprintSubmitOperator
from airflow_docjobs.operators.finovox import FinovoxSubmitCaseOperator, FinovoxSubmitDocumentOperator
from airflow_docjobs.operators.mindee import MindeeSubmitOperator
from airflow_docjobs.version_compat import AIRFLOW_V_3_3_PLUS

if not AIRFLOW_V_3_3_PLUS:  # the DAGs are written with airflow.sdk; the retried submit needs task_state_store
    pytest.skip("the deployment test needs Airflow >= 3.3", allow_module_level=True)

pytestmark = [pytest.mark.integration, pytest.mark.deploy]

# Per route of the night: the vendor, its submit path and the documents of the sample inbox.
NIGHT_ROUTES = {
    "invoices": ("mindee", "/predict_async"),
    "payslips": ("finovox", "/analyse"),
    "rental": ("finovox", "/case"),
    "id_cards": ("biros", "/async-predict"),
    "evidence": ("docimprint", "/v1/extract"),
}
# Each route's submits in flight at once (the operators' default max_in_flight).
MAX_IN_FLIGHT = {
    ("finovox", "/analyse"): FinovoxSubmitDocumentOperator.default_max_in_flight,
    ("finovox", "/case"): FinovoxSubmitCaseOperator.default_max_in_flight,
    ("mindee", "/predict_async"): MindeeSubmitOperator.default_max_in_flight,
    ("biros", "/async-predict"): BirosSubmitOperator.default_max_in_flight,
    ("docimprint", "/v1/extract"): DocimprintSubmitOperator.default_max_in_flight,
}
BATCH_SUBMITS = {
    "finovox_submit": ("finovox", "/analyse", "finovox_wait", "list"),
    "finovox_case_submit": ("finovox", "/case", "finovox_case_wait", "list"),
    "biros_submit": ("biros", "/async-predict", "biros_wait", "list"),
    "mindee_submit": ("mindee", "/predict_async", "mindee_wait", "list"),
    "docimprint_submit": ("docimprint", "/v1/extract", "docimprint_wait", "mapped-submit"),
    "mindee_mapped_submit": ("mindee", "/predict_async", "mindee_mapped_wait", "mapped"),
    "finovox_mapped_submit": ("finovox", "/analyse", "finovox_mapped_wait", "mapped"),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from deployment_cluster import deploy

    return deploy(tmp_path_factory.mktemp("cluster"))


def references(out, name: str, task_id: str) -> list[str]:
    """What a submit returned: a list, or one reference per map index."""
    value = out.xcoms.get((name, task_id, -1))
    if value is None:
        value = [v for (n, t, _), v in sorted(out.xcoms.items()) if (n, t) == (name, task_id)]
    return [r for r in (value if isinstance(value, list) else [value]) if r]


def outcomes(out, name: str, sensor: str) -> list[dict]:
    """A sensor's return value(s): a list sensor's outcomes, or each mapped sensor's dict."""
    value = out.xcoms.get((name, sensor, -1))
    if value is None:
        value = [v for (n, t, _), v in sorted(out.xcoms.items()) if (n, t) == (name, sensor)]
    return value if isinstance(value, list) else [value]


def test_every_task_succeeds_on_both_workers(cluster):
    out, problems = cluster, []
    print(f"\ntimings (s since start): {out.timings}")
    if out.states != dict.fromkeys(out.runs, "success"):
        problems.append(f"run states {out.states}")
    bad = {k: ti["state"] for k, ti in out.tis.items() if ti["state"] not in ("success", "skipped")}
    if bad:
        problems.append(f"tasks that did not succeed: {bad}")
    if skipped := [k for k, ti in out.tis.items() if ti["state"] == "skipped" and k[0] != "rerun"]:
        problems.append(f"skipped in the first runs: {skipped}")
    # A try's log is written in the home of the worker that ran it (the killed worker's tries included).
    ran = Counter(
        worker
        for worker in ("worker-a", "worker-b", "worker-c")
        for _ in (out.airflow.home_of(worker) / "logs").rglob("attempt=*.log")
    )
    print(f"task tries per worker: {dict(ran)}")
    if not ran["worker-a"] or not ran["worker-b"]:
        problems.append(f"the work did not run on both workers: {dict(ran)}")
    out.airflow.check(problems)


def test_every_result_is_on_s3_and_holds_its_record(cluster):
    """Each sensor's outcomes, per input in order; every result_uri is s3:// and holds a succeeded record."""
    out, problems, seen = cluster, [], 0
    waits = [("nightly", f"wait_{route}") for route in NIGHT_ROUTES]
    waits += [("batch", sensor) for _, _, sensor, mode in BATCH_SUBMITS.values() if mode != "mapped"]
    for name, sensor in waits:
        found = outcomes(out, name, sensor)
        if not found:
            problems.append(f"{name} {sensor}: no outcome")
        for outcome in found:
            uri = (outcome or {}).get("result_uri", "")
            key = uri.split("@docjobs/", 1)[-1] if uri.startswith("s3://") else ""
            record = json.loads(out.store[key]) if key in out.store else {}
            if not key or record.get("state") != outcome.get("state") or "result" not in record:
                problems.append(f"{name} {sensor}: {str(outcome)[:200]} -> {str(record)[:200]}")
            seen += 1
    # Mapped single-document sensors return the result itself: the object of its job holds the same.
    from deployment_run import JOB

    from airflow_docjobs.results import job_key

    for task_id, (vendor, _, sensor, mode) in BATCH_SUBMITS.items():
        if mode != "mapped":
            continue
        kind = "mindee" if vendor == "mindee" else "finovox"
        for index, reference in enumerate(references(out, "batch", task_id)):
            key = f"results/{vendor}/docjobs_deploy_batch/{out.runs['batch']}/{job_key(JOB[kind][2](reference))}.json"
            record = json.loads(out.store.get(key, b"{}"))
            if record.get("state") != "succeeded" or record.get("result") != out.xcoms.get(
                ("batch", sensor, index)
            ):
                problems.append(f"batch {sensor}[{index}]: {key} holds {str(record)[:200]}")
            seen += 1
    print(f"\n{seen} outcomes checked against their S3 objects")
    out.airflow.check(problems)


def test_one_vendor_submission_per_document_and_none_on_the_rerun(cluster):
    """
    One submission per document, but for what a killed submit had in flight: no vendor here takes an
    idempotency key, so a document the vendor took whose answer the lost worker had not yet recorded in
    Airflow's task state store is sent again by the retry. A list submit records each answer before it
    sends another document, so that is at most its ``max_in_flight``; a single-document submit, one.
    """
    out, problems = cluster, []
    from deployment_cluster import submits

    first, rerun = out.journal[: out.rerun_from], out.journal[out.rerun_from :]
    expected: Counter[tuple[str, str]] = Counter()
    bound: Counter[tuple[str, str]] = Counter()  # what the tasks retried after the kill may send twice
    retried = []
    for name, submit, (vendor, path) in [
        *(("nightly", f"submit_{route}", key) for route, key in NIGHT_ROUTES.items()),
        *(("batch", task, (vendor, path)) for task, (vendor, path, _, _) in BATCH_SUBMITS.items()),
    ]:
        expected[vendor, path] += len(references(out, name, submit))
        for (dag, task, index), ti in out.tis.items():
            if (dag, task) == (name, submit) and ti["try_number"] > 1:
                retried.append((name, submit, index))
                # Every unmapped submit here takes a list; a mapped one, one document per map index.
                bound[vendor, path] += MAX_IN_FLIGHT[vendor, path] if index < 0 else 1
    seen = Counter({key: submits(first, *key) for key in expected})
    extra = seen - expected
    kill = out.killed_worker.get("wall", 0)
    around = [
        (round(r["at"] - kill, 1), r.get("client_gone"))
        for r in first
        if r["method"] == "POST" and r["path"].endswith("/analyse") and abs(r["at"] - kill) < 5
    ]
    print(
        f"\nsubmits per route {dict(seen)}; documents {dict(expected)}; sent twice {dict(extra)} (at most "
        f"{dict(bound)} for the submits retried after the kill: {retried}); killed worker {out.killed_worker};"
        f" Finovox submits within 5 s of the kill (seconds after it, client gone): {around}; vendor requests"
        f" {len(first)} in the runs, {len(rerun)} in the re-run"
    )
    if any(seen[key] < expected[key] for key in expected):
        problems.append(f"fewer submits than documents: {dict(seen)}, expected {dict(expected)}")
    if over := {key: n for key, n in extra.items() if n > bound[key]}:
        problems.append(
            f"sent twice beyond what the killed submits had in flight: {over}, bound {dict(bound)}"
        )
    if again := [r for r in rerun if r["method"] == "POST"]:
        problems.append(f"the re-run sent {len(again)} POSTs: {again[:3]}")
    if out.tis[("batch", "finovox_submit", -1)]["try_number"] != 2 or not out.killed_worker:
        problems.append(f"the big list submit was not killed and retried: {out.killed_worker}")
    out.airflow.check(problems)


def test_rows_in_the_postgresql_warehouse(cluster):
    out = cluster
    documents = sum(len(references(out, "nightly", f"submit_{route}")) for route in NIGHT_ROUTES)
    print(f"\n{len(out.warehouse)} rows in docjobs_results for {documents} submitted documents")
    assert len(out.warehouse) >= documents > 0


def test_triggerer_takeover(cluster):
    out = cluster
    print(f"\ntakeover: {out.takeover}")
    assert out.takeover.get("held")
    assert 0 < out.takeover["landed"]
    assert out.takeover.get("seconds") is not None
    assert out.takeover["seconds"] < 60


def test_document_waits_run_on_their_own_triggerer(cluster):
    """The mapped sensors' triggers (trigger_queue) ran only on the triggerer of that queue, the rest never."""
    from deployment_cluster import TRIGGER_QUEUE

    out, docs = cluster, cluster.triggerers["triggerer-docs"]
    print(f"\ntriggerers per trigger queue: {out.queued_on}; triggerers {out.triggerers}")
    assert out.queued_on.get(TRIGGER_QUEUE) == {docs}
    assert all(docs not in held for queue, held in out.queued_on.items() if queue != TRIGGER_QUEUE)


def test_object_storage_reads_per_document(cluster):
    """
    The S3 server's log: GETs and HEADs of each input document. The least the design needs: one GET per
    document and submit (hash, checks and upload share it), and in the night one more per run for the
    route's ``new_*`` task, which hashes each document on another worker to skip what the warehouse holds.
    """
    out = cluster
    reads, heads = Counter(), Counter()
    for method, key, query in out.s3.requests():
        if key.startswith(("inbox/", "batch/")) and not key.endswith("/") and "list-type" not in query:
            (reads if method == "GET" else heads if method == "HEAD" else Counter())[key] += 1
    groups: dict[str, Counter[int]] = {}
    for key, count in reads.items():
        parts = key.split("/")
        group = f"night {parts[2]}" if parts[0] == "inbox" else f"batch {parts[1]}"
        groups.setdefault(group, Counter())[count] += 1
    print(f"\nGETs per input object, by route: {groups}; HEADs per object: {dict(Counter(heads.values()))}")
    assert reads
    assert not heads
    # The night's documents: new_* of the first run, the submit, new_* of the re-run (a `*.url` list: the
    # route's listing and new_*). The batch: one per submit, and one more for the documents of a list
    # submit retried after the kill (the retry hashes them to find what the killed try sent).
    retried = {
        task.removesuffix("_submit").replace("finovox_case", "cases")
        for (dag, task, _), ti in out.tis.items()
        if dag == "batch" and ti["try_number"] > 1
    }
    needs = {
        g: 3 if g.startswith("night") else 2 if g.removeprefix("batch ") in retried else 1 for g in groups
    }
    over = {group: counts for group, counts in groups.items() if max(counts) > needs[group]}
    assert not over, f"more GETs than the design needs: {over}"


def test_no_secret_in_logs_metadata_or_store(cluster):
    """
    The API key nowhere (files, metadata database); Finovox tokens and result content in no log, no
    metadata row but the submit's XCom, no object of the store.
    """
    from deployment import SECRET
    from deployment_checks import leaks

    out = cluster
    tokens = [
        r
        for (name, task_id, _), v in out.xcoms.items()
        if "finovox" in task_id or task_id in ("submit_payslips", "submit_rental")
        for r in (v if isinstance(v, list) else [v])
        if isinstance(r, str)
    ]
    texts = dict(out.dump)
    xcom_rows = [line for line in texts.pop("metadata table xcom", "").splitlines() if "submit" not in line]
    texts["metadata table xcom (but the submits')"] = "\n".join(xcom_rows)
    store = {f"store {key}": body.decode("latin-1") for key, body in out.store.items()}
    problems = leaks(out.work, {**out.dump, **store}, {"the API key": SECRET})
    needles = {f"Finovox token {n}": token for n, token in enumerate(tokens)}
    logs = {
        str(p.relative_to(out.work)): p.read_text(errors="replace")
        for p in out.work.rglob("*.log")
        if p.name != "emulator.log"
    }
    for name, content in [*logs.items(), *texts.items(), *store.items()]:
        for what, needle in needles.items():
            if needle in content:
                problems.append(f"{what} in {name}")
    print(
        f"\n{len(tokens)} Finovox tokens searched in {len(logs)} logs, {len(texts)} tables, {len(store)} objects"
    )
    out.airflow.check(problems[:40])


def guide_block(marker: str) -> list[str]:
    """The lines of docs/deployment.md's ```bash block after ``<!-- deployment: {marker} -->``."""
    from deployment_cluster import ROOT

    text = (ROOT / "docs" / "deployment.md").read_text()
    block = text.split(f"<!-- deployment: {marker} -->\n```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_the_guide_is_what_ran(cluster):
    """docs/deployment.md's settings and commands are those of this deployment (``<...>``: its own values)."""
    import re
    import shlex

    out, problems = cluster, []
    for line in guide_block("environment"):
        name, _, value = line.removeprefix("export ").partition("=")
        ran = out.airflow.env.get(name)
        if ran is None or (not value.startswith("<") and ran != value):
            problems.append(f"{name}: the guide says {value!r}, the deployment ran {ran!r}")
    argvs = [c.process.args[1:] for c in out.airflow.components.values()] + out.airflow.ran
    for line in guide_block("commands"):
        words = shlex.split(line)[1:]  # after "airflow"
        pattern = [re.compile(re.escape(w) if "<" not in w else re.sub(r"<[^>]+>", ".+", w)) for w in words]
        if not any(
            len(argv) >= len(pattern) and all(p.fullmatch(a) for p, a in zip(pattern, argv, strict=False))
            for argv in argvs
        ):
            problems.append(f"`{line}` was not run: {argvs}")
    out.airflow.check(problems)
