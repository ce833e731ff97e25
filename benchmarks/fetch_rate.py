"""
Fetch rate: how fast one list-mode trigger lands the results of jobs that have all ended, with and
without transient faults, over TLS against the emulator (a subprocess on the same machine).

    .venv/bin/python benchmarks/fetch_rate.py [--jobs 20000] [--fault-percent 1] [--output PATH]

After a warm-up of 2,000, each case makes ``--jobs`` jobs that end within a second, runs one ``DocJobTrigger`` over them (poll
interval 3 s, so the first poll comes 3 s after the start) and times the landing of 99 % of them (the
last few are the faulted polls' retries). Faults are injected as ``make soak`` does
(``benchmarks/soak.py``): every second, for ``--fault-percent`` of the polls the emulator saw in the
second before, cycling through their kinds. The cases, in one run:

* no faults;
* 502, 503, 504 and a gateway's HTML page, each poll's slot lent while it backs off (the trigger);
* the same with the slot held during the backoff, as before commit ``acebe39`` (the baseline);
* the same plus 429 with ``Retry-After: 1``: each pauses every poll of the connection for a second,
  which caps the rate at ``1 / (p * r)`` for a share ``p`` of 429s that say ``r`` seconds.

Writes the figures to ``benchmarks/fetch-rate.json``; ``docs/design.md`` ("Retries") quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import pendulum

sys.path.insert(0, str(Path(__file__).parent))
from soak import FAULTS, HOOK, emulator_home, first_event, inject_faults

NO_429 = tuple(f for f in FAULTS if f["status"] != 429)
CASES = (
    ("no faults", (), True),
    ("502/503/504/HTML, slot lent", NO_429, True),
    ("502/503/504/HTML, slot held (before)", NO_429, False),
    ("429 too (Retry-After: 1)", FAULTS, True),
)


async def one_case(url: str, ca: str, store_root: Path, args: argparse.Namespace, case: tuple) -> dict:
    from airflow_docjobs.hooks.docimprint import DocimprintHook
    from airflow_docjobs.results import ResultsStore
    from airflow_docjobs.triggers import job as job_module
    from airflow_docjobs.triggers.job import DocJobTrigger

    name, faults, lent = case
    lend = job_module._Batch._backoff
    if not lent:  # the baseline: a poll sleeps out its backoff in its slot

        async def hold(self: object, seconds: float) -> None:
            await asyncio.sleep(seconds)

        job_module._Batch._backoff = hold  # type: ignore[method-assign]
    async with httpx.AsyncClient(base_url=url, verify=ca, timeout=60) as control:
        await control.post("/_emulator/reset")
        answer = await control.post(
            "/_emulator/bulk", json={"vendor": "docimprint", "count": args.jobs, "processing_seconds": 1}
        )
        jobs = [DocimprintHook.job_reference(ref) for ref in answer.json()["references"]]
        store = ResultsStore(f"file://{store_root / name.replace('/', '-')}", "docimprint", "bench", "run")
        trigger = DocJobTrigger(
            hook_class=HOOK,
            conn_id="docimprint_default",
            deadline=pendulum.now("UTC").add(hours=1).isoformat(),
            poll_interval=3,
            jobs=DocJobTrigger.pack(jobs, store),
            results=store.spec(),
        )
        seen = (await control.get("/_emulator/stats")).json()["requests"]
        stop = asyncio.Event()
        injector = (
            asyncio.create_task(inject_faults(control, stop, args.fault_percent, faults)) if faults else None
        )
        cpu = time.process_time()
        try:
            event = await first_event(trigger)
        finally:
            job_module._Batch._backoff = lend  # type: ignore[method-assign]
            stop.set()
        injected = await injector if injector else 0
        cpu = time.process_time() - cpu
        requests = (await control.get("/_emulator/stats")).json()["requests"] - seen
    folder = Path(store.prefix.removeprefix("file://"))
    landed = sorted(entry.stat().st_mtime for entry in os.scandir(folder) if entry.name.endswith(".json"))
    most = landed[int(0.99 * len(landed)) - 1]
    return {
        "case": name,
        "event": event.payload["status"],  # type: ignore[attr-defined]
        "landed": len(landed),
        "jobs_per_s_99": round(0.99 * len(landed) / (most - landed[0]), 1),
        "seconds_99": round(most - landed[0], 2),
        "seconds_all": round(landed[-1] - landed[0], 2),
        "requests": requests,
        "faults_injected": injected,
        "client_cpu_s": round(cpu, 2),
    }


async def run(url: str, ca: str, store_root: Path, args: argparse.Namespace) -> list[dict]:
    # A warm-up not reported (the pool's first connections, the emulator's first requests): the first case
    # measured ran at three quarters of its rate without it.
    await one_case(
        url, ca, store_root, argparse.Namespace(**{**vars(args), "jobs": 2000}), ("warm-up", (), True)
    )
    return [await one_case(url, ca, store_root, args, case) for case in CASES]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--fault-percent", type=float, default=1.0)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "fetch-rate.json")
    args = parser.parse_args()
    with emulator_home("docjobs-fetch-") as (url, ca, home):
        cases = asyncio.run(run(url, ca, home / "results", args))
    base = {c["case"]: c["jobs_per_s_99"] for c in cases}
    result = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": pendulum.now("UTC").isoformat(),
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
        "jobs": args.jobs,
        "fault_percent": args.fault_percent,
        "cases": cases,
        "lent_over_held": round(base[CASES[1][0]] / base[CASES[2][0]], 2),
        "median_jobs_per_s": statistics.median(c["jobs_per_s_99"] for c in cases),
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    for case in cases:
        print(f"{case['case']:<40} {case['jobs_per_s_99']:>8} jobs/s  ({case['faults_injected']} faults)")
    print(f"slot lent / held: {result['lent_over_held']}x")
    print(args.output)
    return 0 if all(c["landed"] == args.jobs for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
