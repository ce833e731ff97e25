"""
Single-document triggers that end and start in turn: what the connection's shared pool costs them.

    .venv/bin/python benchmarks/pool_churn.py [--triggers 1000] [--interval 30] [--output PATH]

N single-document triggers (``DocJobTrigger(job=...)``) of one docimprint connection, whose jobs have
ended, are created as Airflow's triggerer creates them (``soak.run_triggers``), each polls once after
its interval (the sensor's own poll is just before), finds its job done, lands it and ends. Their polls
fall within a tenth of an interval, so the pool has no user between some of them. Run twice in one
process against the TLS emulator: with the pool kept ``LINGER`` seconds after its last user (ours), and
with ``LINGER = 0`` (the pool closed when its last user left, as before). Prints, for each, the TLS
connections the emulator accepted, the connection lookups (an Execution API call each in a triggerer),
client CPU per trigger and the worst loop lateness, and the ratios; writes ``pool-churn.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
import pendulum
import soak


async def phase(url: str, ca: str, home: Path, triggers: int, interval: float, linger: float) -> dict:
    from airflow_docjobs.hooks import transport
    from airflow_docjobs.hooks.base import DocJobsHook
    from airflow_docjobs.hooks.docimprint import DocimprintHook
    from airflow_docjobs.results import ResultsStore
    from airflow_docjobs.triggers.job import DocJobTrigger

    transport.LINGER = linger
    lookups = 0
    load = DocJobsHook._aload

    async def counted(self: DocJobsHook) -> object:
        nonlocal lookups
        lookups += 1
        return await load(self)

    DocJobsHook._aload = counted  # type: ignore[method-assign]
    try:
        async with httpx.AsyncClient(base_url=url, verify=ca, timeout=60) as control:
            bulk = {"vendor": "docimprint", "count": triggers, "processing_seconds": 0.1}
            refs = (await control.post("/_emulator/bulk", json=bulk)).json()["references"]
            before = (await control.get("/_emulator/stats")).json()
            store = ResultsStore(f"file://{home}/results-{linger}", "docimprint", "churn", "run")
            deadline = pendulum.now("UTC").add(seconds=interval * 5).isoformat()
            rows = [
                DocJobTrigger(
                    hook_class=soak.HOOK,
                    conn_id="docimprint_default",
                    deadline=deadline,
                    poll_interval=interval,
                    job=DocimprintHook.job_reference(ref),
                    results=store.spec(),
                ).serialize()[1]
                for ref in refs
            ]
            stop, samples = asyncio.Event(), []
            monitor = asyncio.create_task(soak.monitor_loop(stop, samples))
            cpu = time.process_time()
            events = await soak.run_triggers(rows)
            cpu = time.process_time() - cpu
            stop.set()
            await monitor
            after = (await control.get("/_emulator/stats")).json()
    finally:
        DocJobsHook._aload = load  # type: ignore[method-assign]
    return {
        "linger_s": linger,
        "events": sorted({e.payload["status"] for e in events}),
        "tls_connections": after.get("connections", 0) - before.get("connections", 0),
        "requests": after["requests"] - before["requests"],
        "connection_lookups": lookups,
        "client_cpu_ms_per_trigger": round(cpu / triggers * 1e3, 2),
        "max_loop_lateness_s": round(max(late for _, late, _ in samples), 3),
        "median_loop_lateness_ms": round(statistics.median(late for _, late, _ in samples) * 1e3, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--triggers", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=30)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "pool-churn.json")
    args = parser.parse_args()
    from airflow_docjobs.hooks import transport

    with soak.emulator_home("docjobs-churn-") as (url, ca, home):
        ours = asyncio.run(phase(url, ca, home, args.triggers, args.interval, transport.LINGER))
        closed = asyncio.run(phase(url, ca, home, args.triggers, args.interval, 0.0))
    result = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": pendulum.now("UTC").isoformat(),
        "triggers": args.triggers,
        "poll_interval_s": args.interval,
        "ours": ours,
        "closed_when_last_user_left": closed,
        "ratios_ours_to_closed": {
            key: round(ours[key] / closed[key], 3) if closed[key] else None
            for key in ("tls_connections", "connection_lookups", "client_cpu_ms_per_trigger")
        },
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
