"""
Soak: 10,000 concurrent waits in one asyncio loop (one triggerer process) for ten minutes, over TLS, with
about 1% of polls answered by an injected fault. Passes when every wait ends in success, every result is
landed, and the event loop never blocked longer than Airflow's 0.2 s warning threshold.

    .venv/bin/python benchmarks/soak.py [--waits 10000] [--minutes 10] [--interval 30] [--output PATH]

or ``make soak`` (``SOAK_ARGS="--waits 100000"`` for one triggerer holding 100,000 documents: written to
``benchmarks/soak-100000.json``; ``--minutes 2`` for a short run while working). The emulator runs as a
subprocess with ``--tls``; the jobs are made in bulk in ten groups whose processing times end them spread
over the soak. A tenth of the waits (at most 1,000, a triggerer's default capacity) are single-document
triggers, the rest one list-mode trigger (``--batches N``: N of them), sharing the pool, as a triggerer
holding both kinds would; the triggers are created one at a time, yielding to the loop in between, as
Airflow's triggerer creates them (``TriggerRunner.create_triggers``), each rebuilt from its serialized
kwargs. A fault injector
adds, every second, transient faults (429 with Retry-After, 502, 503, 504, a 200 with an HTML body) for
1% of that second's expected polls. A loop monitor sleeps 50 ms at a time and records how late it wakes
and how much CPU the process used meanwhile: on an idle machine the worst lateness is the longest time
the loop was blocked. On a busy one the operating system also delays the loop while the process does
nothing; a late wake-up is charged to the process only up to the CPU it used in that time (every thread,
so the GIL held by a worker thread counts as a block), and the criterion is on that charge. Each
charge is also given less the garbage collections inside it (``max_loop_block_besides_gc_s``: a full
collection walks Airflow's import-time heap; the rest is our code, the libraries under it, the harness). Both
figures, and the machine's load, go to ``benchmarks/soak.json``, with the process's share of one core,
its memory, and how long after its job ended each result landed (from the earliest moment its group can
have ended to the landed file's time).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pendulum
from cryptography.fernet import Fernet

if TYPE_CHECKING:
    from collections.abc import Iterator

HOOK = "airflow_docjobs.hooks.docimprint.DocimprintHook"
FAULTS = (
    {"status": 429, "retry_after": "1"},
    {"status": 502},
    {"status": 503},
    {"status": 504},
    {"status": 200, "body": "<html>gateway</html>"},
)
BLOCK_THRESHOLD = 0.2  # Airflow's triggerer warns when a trigger blocks its loop longer than this


def start_emulator() -> tuple[subprocess.Popen, str, str]:
    emulator = subprocess.Popen(
        [sys.executable, "-m", "airflow_docjobs.emulator", "--tls", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    ca = ""
    for line in emulator.stdout:  # type: ignore[union-attr]
        if "CA certificate" in line:
            ca = line.split(":", 1)[1].strip()
        if "listening on" in line:
            return emulator, line.split()[-1], ca
    raise SystemExit("the emulator did not start")


@contextlib.contextmanager
def emulator_home(prefix: str) -> Iterator[tuple[str, str, Path]]:
    """
    The TLS emulator as a subprocess and a throwaway Airflow home: (its URL, its CA file, the home).

    The home has a Fernet key (a large batch's job list is stored encrypted with it, as a deployment has
    one) and ``docimprint_default`` pointing at the emulator.
    """
    emulator, url, ca = start_emulator()
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            os.environ["AIRFLOW_HOME"] = tmp
            os.environ["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()
            os.environ["AIRFLOW_CONN_DOCIMPRINT_DEFAULT"] = json.dumps(
                {
                    "conn_type": "docimprint",
                    "host": f"{url}/docimprint",
                    "password": "emulator",
                    "extra": {"ca_bundle": ca},
                }
            )
            yield url, ca, Path(tmp)
    finally:
        emulator.kill()
        emulator.wait(10)


async def first_event(trigger: object) -> object:
    """Run a trigger to its event and close it, as the triggerer does (its hook leaves the shared pool)."""
    run = trigger.run()  # type: ignore[attr-defined]
    try:
        return await anext(run)
    finally:
        await run.aclose()


async def monitor_loop(
    stop: asyncio.Event, samples: list[tuple[float, float, float]], start: float | None = None
) -> None:
    """(seconds since ``start``, how late the loop woke the monitor, the process CPU used meanwhile)."""
    loop = asyncio.get_running_loop()
    start = loop.time() if start is None else start  # the loop's clock is time.monotonic()
    while not stop.is_set():
        before, cpu = loop.time(), time.process_time()
        await asyncio.sleep(0.05)
        samples.append((before - start, loop.time() - before - 0.05, time.process_time() - cpu))


async def run_triggers(rows: list[dict]) -> list:
    """
    Run every trigger to its event, created as Airflow's triggerer creates them.

    ``TriggerRunner.create_triggers`` yields to the loop before and after rebuilding each trigger from
    its kwargs, so a thousand new triggers are started over a thousand turns of the loop, not in one.
    """
    from airflow_docjobs.triggers.job import DocJobTrigger

    tasks = []
    for kwargs in rows:
        await asyncio.sleep(0)
        trigger = DocJobTrigger(**kwargs)
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(first_event(trigger)))
    return await asyncio.gather(*tasks)


def land_lags(store: object, refs: list[str], ends: list[float], group: int) -> list[list[float]]:
    """Per group, for each landed job, seconds from the earliest its group can have ended to its record's time."""
    from airflow_docjobs.hooks.docimprint import DocimprintHook
    from airflow_docjobs.results import job_key

    ended = {job_key(DocimprintHook.job_reference(ref)): n // group for n, ref in enumerate(refs)}
    folder = Path(store.prefix.removeprefix("file://"))  # type: ignore[attr-defined]
    lags: list[list[float]] = [[] for _ in ends]
    for entry in os.scandir(folder):
        if entry.name.endswith(".json") and (number := ended.get(entry.name[:-5])) is not None:
            lags[number].append(entry.stat().st_mtime - ends[number])
    return lags


def besides_gc(
    samples: list[tuple[float, float, float]], spans: list[tuple[float, float]]
) -> list[tuple[float, float, float]]:
    """
    Each sample's charged block less the collections inside its window: (when, charged, besides them).

    A sample's window runs from its sleep's start to its late wake-up; a collection holds the loop (on
    the loop's thread, or a worker's holding the GIL), so what is left is everything else the process
    did: our code, the libraries under it, the harness.
    """
    spans = sorted(spans)
    starts = [start for start, _ in spans]
    out = []
    for at, late, used in samples:
        charged, end = min(late, used), at + 0.05 + late
        collected, i = 0.0, max(0, bisect.bisect_left(starts, at) - 1)
        while i < len(spans) and spans[i][0] < end:
            collected += max(0.0, min(end, spans[i][1]) - max(at, spans[i][0]))
            i += 1
        out.append((at, charged, max(0.0, charged - collected)))
    return out


def rss_mb() -> int:
    """This process's resident memory now, MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20)


def watch_gc(
    pauses: list[tuple[float, int, float, int | None]],
    spans: list[tuple[float, float]] | None = None,
    origin: float | None = None,
) -> None:
    """
    Record every garbage collection that takes over 20 ms: (when, generation, seconds, objects).

    ``spans`` gets every collection, however short: (start, end) in seconds since ``origin``.
    """
    started: dict[str, float] = {}
    origin = time.monotonic() if origin is None else origin

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started["at"] = time.monotonic()
            return
        at, end = started.get("at", time.monotonic()), time.monotonic()
        if spans is not None:
            spans.append((at - origin, end - origin))
        if end - at > 0.02:
            objects = len(gc.get_objects()) if info["generation"] == 2 else None
            pauses.append((round(at - origin, 1), info["generation"], round(end - at, 3), objects))

    gc.callbacks.append(callback)


async def inject_faults(
    client: httpx.AsyncClient, stop: asyncio.Event, percent: float, faults: tuple[dict, ...] = FAULTS
) -> int:
    """Every second, faults for ``percent`` of the polls the emulator saw in the second before."""
    injected, owed, kinds = 0, 0.0, itertools.cycle(faults)
    seen = (await client.get("/_emulator/stats")).json()["requests"]
    while not stop.is_set():
        await asyncio.sleep(1)
        now = (await client.get("/_emulator/stats")).json()["requests"]
        owed += (now - seen) * percent / 100
        seen = now
        while owed >= 1:
            fault = {"vendor": "docimprint", "path": "/v1/jobs/", "method": "GET", "times": 1, **next(kinds)}
            await client.post("/_emulator/faults", json=fault)
            owed -= 1
            injected += 1
    return injected


async def soak(args: argparse.Namespace, url: str, ca: str) -> dict:
    from airflow_docjobs.hooks.docimprint import DocimprintHook
    from airflow_docjobs.results import ResultsStore
    from airflow_docjobs.triggers.job import DocJobTrigger

    seconds = args.minutes * 60
    if args.gc_freeze:  # as deployment.md advises a triggerer: its import-time objects out of collections
        gc.freeze()
    async with httpx.AsyncClient(base_url=url, verify=ca, timeout=60) as control:
        refs: list[str] = []
        ends: list[float] = []  # the earliest wall time each group's jobs can have ended
        group = args.waits // 10
        for n in range(10):  # ten groups ending at 10%, 20%, ... 100% of the soak
            processing = max(1.0, seconds * (n + 1) / 10 - 5)
            created = time.time()
            answer = await control.post(
                "/_emulator/bulk",
                json={"vendor": "docimprint", "count": group, "processing_seconds": processing},
            )
            refs += answer.json()["references"]
            ends.append(created + processing)
        store = ResultsStore(f"file://{args.store}", "docimprint", "soak", "run")
        deadline = pendulum.now("UTC").add(seconds=seconds + 30 * args.interval).isoformat()
        common = {"hook_class": HOOK, "conn_id": "docimprint_default", "deadline": deadline}
        jobs = [DocimprintHook.job_reference(ref) for ref in refs]
        singles = jobs[: min(len(jobs) // 10, 1000)]
        batched = jobs[len(singles) :]
        size = -(-len(batched) // args.batches)
        triggers = [
            DocJobTrigger(
                **common,
                poll_interval=args.interval,
                jobs=DocJobTrigger.pack(batched[start : start + size], store),
                results=store.spec(),
            )
            for start in range(0, len(batched), size)
        ] + [
            DocJobTrigger(**common, poll_interval=args.interval, job=job, results=store.spec())
            for job in singles
        ]
        # What the triggerer receives: each trigger's serialized kwargs (it rebuilds the trigger from them).
        rows = [t.serialize()[1] for t in triggers]
        count, list_waits = len(triggers), len(batched)
        del triggers, jobs, batched
        rss_before = rss_mb()
        stop, samples, pauses, spans, origin = asyncio.Event(), [], [], [], time.monotonic()
        watch_gc(pauses, spans, origin)
        monitor = asyncio.create_task(monitor_loop(stop, samples, origin))
        loads = [os.getloadavg()[0]]
        faults = tuple(f for f in FAULTS if not (args.no_429 and f["status"] == 429))
        injector = asyncio.create_task(inject_faults(control, stop, args.fault_percent, faults))
        cpu, started = time.process_time(), time.monotonic()
        events = await run_triggers(rows)
        wall, cpu = time.monotonic() - started, time.process_time() - cpu
        rss_after = rss_mb()
        loads.append(os.getloadavg()[0])
        stop.set()
        injected = await injector
        await monitor
        stats = (await control.get("/_emulator/stats")).json()
    statuses = [e.payload["status"] for e in events]
    landed = len(store.landed_keys())
    by_group = land_lags(store, refs, ends, group)
    lags = [lag for lags in by_group for lag in lags]
    lateness = [late for _, late, _ in samples]
    charged = [min(late, used) for _, late, used in samples]  # what the process itself can have blocked
    besides = besides_gc(samples, spans)
    worst = max(besides, key=lambda sample: sample[2], default=(0.0, 0.0, 0.0))
    return {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": pendulum.now("UTC").isoformat(),
        "waits": len(refs),
        "list_waits": list_waits,
        "list_triggers": args.batches,
        "single_waits": len(refs) - list_waits,
        "poll_interval_s": args.interval,
        "gc_frozen_objects": gc.get_freeze_count(),
        "wall_s": round(wall, 1),
        "requests": stats["requests"],
        "faults_injected": injected,
        "fault_kinds": [f"{f['status']}{' html' if 'body' in f else ''}" for f in faults],
        "fault_share": round(injected / max(1, stats["requests"]), 4),
        "events": {s: statuses.count(s) for s in set(statuses)},
        "landed": landed,
        "client_cpu_us_per_request": round(cpu / max(1, stats["requests"]) * 1e6),
        "cpu_share_of_one_core": round(cpu / wall, 3),
        "monitor_samples": len(samples),
        "max_loop_lateness_s": round(max(lateness, default=0), 3),
        "loop_lateness_over_threshold": sum(late > BLOCK_THRESHOLD for late in lateness),
        # The late wake-ups over the threshold: (when, lateness, process CPU meanwhile), seconds.
        "late_samples": [
            (round(at, 1), round(late, 3), round(used, 3))
            for at, late, used in samples
            if late > BLOCK_THRESHOLD
        ],
        # Garbage collections over 20 ms: (when, generation, seconds, objects the collector tracks after a
        # full one); the loop waits for them too.
        "gc_pauses": pauses,
        "max_loop_block_s": round(max(charged, default=0), 3),
        "loop_blocks_over_threshold": sum(block > BLOCK_THRESHOLD for block in charged),
        # The longest charged block less the garbage collections inside it (the collector walks Airflow's
        # import-time heap; the rest is our code, the libraries under it and the harness), and where it
        # was: (when, charged, besides the collections), seconds.
        "max_loop_block_besides_gc_s": round(worst[2], 3),
        "max_besides_gc_sample": [round(value, 3) for value in worst],
        "collections_s": round(sum(end - start for start, end in spans), 2),
        "load_average_start_end": [round(load, 2) for load in loads],
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        # Resident memory once the harness had made the jobs, and at the end (the waits' own share is
        # the difference, with the harness's references and the emulator's client in both).
        "rss_before_and_after_mb": [rss_before, rss_after],
        # Seconds from a job's end (the earliest its group can have ended) to its landed record.
        "land_lag_s": {
            "median": round(statistics.median(lags), 1) if lags else None,
            "max": round(max(lags), 1) if lags else None,
            "over_one_interval": sum(lag > args.interval for lag in lags),
            # Each group's (the first single-document waits included in the first): median, max.
            "by_group": [[round(statistics.median(g), 1), round(max(g), 1)] for g in by_group if g],
        },
        "passed": statuses.count("success") == count
        and landed == len(refs)
        and max(charged, default=0) <= BLOCK_THRESHOLD,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--waits", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=float, default=30, help="poll interval of every wait, seconds")
    parser.add_argument(
        "--batches", type=int, default=1, help="list-mode triggers the list waits are split into"
    )
    parser.add_argument("--fault-percent", type=float, default=1.0, help="share of polls given a fault")
    parser.add_argument(
        "--no-429",
        action="store_true",
        help="inject no 429 (each pauses every poll of the connection for its Retry-After, as it must)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() once started, as a deployment may (not the default)",
    )
    parser.add_argument("--output", type=Path, help="default: soak.json, or soak-<waits>.json past 10,000")
    args = parser.parse_args()
    if args.output is None:
        name = "soak.json" if args.waits == 10_000 else f"soak-{args.waits}.json"
        args.output = Path(__file__).parent / name
    with emulator_home("docjobs-soak-") as (url, ca, home):
        args.store = home / "results"
        result = asyncio.run(soak(args, url, ca))
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(args.output)  # the last line: where make soak reads the figures
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
