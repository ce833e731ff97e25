"""
The provider's metrics (``airflow_docjobs/metrics.py``) reach a StatsD server through Airflow's own Stats, as
a deployment with ``[metrics] statsd_on`` gets them: a real ``dag.test()`` run (a list submit, a deferred
wait in the trigger) against the emulator, a UDP listener on loopback in place of StatsD.
"""

from __future__ import annotations

import socket
from collections import Counter

import pytest
from test_list_mode import dags, inputs_for, results_uri, run  # noqa: F401 - the module's fixtures

from airflow_docjobs.emulator import Fault


@pytest.fixture
def statsd(monkeypatch):
    """A UDP socket on a free loopback port, and Airflow's Stats sending there as the task runner sets it."""
    from airflow.sdk.observability.metrics.stats_utils import get_stats_factory
    from airflow.sdk.observability.stats import Stats

    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.2)
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.getsockname()[1]))
    Stats.initialize(factory=get_stats_factory(), export_legacy_names=False)
    yield listener
    monkeypatch.delenv("AIRFLOW__METRICS__STATSD_ON")
    Stats.initialize(factory=get_stats_factory(), export_legacy_names=False)
    listener.close()


def received(listener: socket.socket) -> Counter[str]:
    """``name|type`` -> the sum of the values received (``name|type|n``: how many), for the provider's metrics."""
    found: Counter[str] = Counter()
    while True:
        try:
            datagram = listener.recv(65535).decode()
        except TimeoutError:
            return found
        for line in datagram.splitlines():
            name, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            if ".docjobs." in name:
                found[f"{name}|{kind.split('|')[0]}"] += int(float(value))
                found[f"{name}|{kind.split('|')[0]}|n"] += 1


def test_a_run_counts_submits_polls_throttling_and_results(dags, emulator, results_uri, tmp_path, statsd):  # noqa: F811
    files, expected = inputs_for("mindee", tmp_path / "inbox")
    emulator.state.settings.update({"processing_seconds": 2.0})
    # Two polls answered 429: the hook pauses and retries them.
    emulator.state.faults.append(Fault(vendor="mindee", path="/documents/queue/", status=429, times=2))

    dag_run, tis = run(dags, "docjobs_list_mindee_deferrable", files)

    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    metrics = received(statsd)
    accepted = sum(state != "rejected" for state in expected)
    assert metrics["airflow.docjobs.mindee.submits|c"] == accepted
    assert metrics["airflow.docjobs.mindee.throttled|c"] == 2
    assert metrics["airflow.docjobs.mindee.polls|c"] >= accepted
    assert metrics["airflow.docjobs.mindee.results.succeeded|c"] == expected.count("succeeded")
    assert metrics["airflow.docjobs.mindee.results.failed|c"] == expected.count("failed")
    # Submit to result, per document that ended: at least the vendor's 2 s (the times are to the second).
    ended = expected.count("succeeded") + expected.count("failed")
    assert metrics["airflow.docjobs.mindee.latency|ms|n"] == ended
    assert metrics["airflow.docjobs.mindee.latency|ms"] >= 1000 * ended
