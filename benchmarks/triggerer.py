"""
Polling cost: N jobs waiting at once in one asyncio loop, as in a triggerer, polled over TLS.

Three implementations poll the same pending docimprint jobs at the same rate:

``list``
    one ``DocJobTrigger`` holding all N jobs (``jobs=DocJobTrigger.pack(...)``), its first window widened
    to all N (they never end), so it spreads its polls evenly over the poll interval.
``single``
    N ``DocJobTrigger`` with one job each (``job=...``); they share one pooled client.
``http-sensor``
    N ``HttpSensorTrigger`` from Airflow's HTTP provider polling ``/bench404/...``, the server's shim that
    answers 404 while the job is not complete (that trigger can only wait for "not 404").

Every phase runs in a fresh subprocess (``python benchmarks/triggerer.py --impl ...``), so its resident
memory growth is its own. The jobs are made in bulk through the emulator's control port in the ``never``
scenario: they stay pending, so every poll is a steady-state poll and every implementation makes the
same requests. Triggers are built from their ``serialize()`` output and driven as a triggerer drives
them (``async for event in trigger.run()``); single-job triggers start staggered over one interval, as
sensors defer at different moments. After two intervals of warm-up the phase measures W windows of half
an interval each: client CPU (``time.process_time()``, every thread) and the polls the server counted.
A phase's figure is its CPU over its polls, all windows pooled; repeats of a phase give the median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import gc
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

IMPLS = ("list", "single", "http-sensor")
HOOK_CLASS = "airflow_docjobs.hooks.docimprint.DocimprintHook"
SECRET = "emulator"  # the emulator's default API key
WARMUP_INTERVALS = 2


# -- parent side: one subprocess per phase ---------------------------------------------------------------


def phase_environment(home: Path, certfile: Path, tls_port: int) -> dict[str, str]:
    """What Airflow and aiohttp read from the environment in a phase subprocess."""
    from cryptography.fernet import Fernet

    return os.environ | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # A list trigger's job list past 4 KB goes to the results store, encrypted with this key.
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        # HttpAsyncHook has no CA-bundle option: aiohttp's default SSLContext reads SSL_CERT_FILE. Ours
        # trusts the certificate through the connection's ca_bundle extra. Verification is on for both.
        "SSL_CERT_FILE": str(certfile),
        "AIRFLOW_CONN_DOCIMPRINT_DEFAULT": json.dumps(
            {
                "conn_type": "docimprint",
                "host": f"https://127.0.0.1:{tls_port}/docimprint",
                "password": SECRET,
                "extra": {"ca_bundle": str(certfile)},
            }
        ),
        "AIRFLOW_CONN_HTTP_BENCH": json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "schema": "https", "port": tls_port}
        ),
    }


def run_phase(
    impl: str,
    waits: int,
    interval: float,
    windows: int,
    control_port: int,
    tmp: Path,
    env: dict[str, str],
    profile: Path | None = None,
) -> dict[str, Any]:
    """Run one phase in a fresh subprocess; return what it measured. Its stderr goes to a log in ``tmp``."""
    name = f"{impl}-{waits}-{time.monotonic_ns()}"
    store, log = tmp / f"store-{name}", tmp / f"phase-{name}.log"  # a fresh results store per phase
    options = {"impl": impl, "waits": waits, "interval": interval, "windows": windows}
    options |= {"control-port": control_port, "store": store, "profile": profile}
    command = [sys.executable, __file__]
    command += [
        arg for key, value in options.items() if value is not None for arg in (f"--{key}", str(value))
    ]
    with log.open("w") as stderr:
        done = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            check=False,
        )
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        raise SystemExit(
            f"phase {impl} x {waits} failed (exit {done.returncode}):\n{log.read_text()[-3000:]}"
        )
    return json.loads(lines[-1])


def pooled(phase: dict[str, Any], key: str, scale: float = 1.0) -> float:
    """A phase's ``key`` per poll over all its measured windows: bunched polls do not skew it."""
    windows = phase["windows"]
    return scale * sum(w[key] for w in windows) / max(1, sum(w["requests"] for w in windows))


def starved(phase: dict[str, Any]) -> bool:
    """
    Whether the phase made under 60 % of the polls it should have: its triggers stalled (seen on this
    machine while other heavy jobs ran, only in baseline phases), so its figures mean nothing.
    """
    expected = phase["waits"] * len(phase["windows"]) / 2
    return sum(w["requests"] for w in phase["windows"]) < 0.6 * expected


def summarize(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-poll figures of the repeats of one phase: each pooled over its windows, then the median."""

    def median(value: Any) -> float:
        return statistics.median(value(p) for p in phases)

    return {
        "impl": phases[0]["impl"],
        "waits": phases[0]["waits"],
        "interval_s": phases[0]["interval"],
        "repeats": len(phases),
        "cpu_us_per_poll_each": [round(pooled(p, "client_cpu", 1e6), 1) for p in phases],
        "cpu_us_per_poll": median(lambda p: pooled(p, "client_cpu", 1e6)),
        "kernel_us_per_poll": median(lambda p: pooled(p, "client_kernel", 1e6)),
        "server_cpu_us_per_poll": median(lambda p: pooled(p, "cpu_seconds", 1e6)),
        "connections_per_poll": median(lambda p: pooled(p, "connections")),
        "log_records_per_poll": median(lambda p: pooled(p, "log_records")),
        "polls_per_window": median(lambda p: statistics.mean(w["requests"] for w in p["windows"])),
        "rss_kb_per_wait": median(lambda p: (p["rss_after_kb"] - p["rss_before_kb"]) / p["waits"]),
        "load_average": median(lambda p: p["load_average"]),
        "ended_early": [e for p in phases for e in p["ended_early"]],
    }


def profile_top(path: Path, limit: int = 15) -> str:
    """The profile's top functions by own CPU time, and our package's by cumulative CPU time."""
    import sysconfig

    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats("airflow_docjobs", limit)
    text = out.getvalue().replace(sysconfig.get_paths()["purelib"] + "/", "")
    return text.replace(str(Path(__file__).resolve().parent.parent) + "/", "")


# -- child side: one phase ------------------------------------------------------------------------------


class LogCounter(io.RawIOBase):
    """The triggers' logs, rendered as JSON lines as a triggerer's runner subprocess renders them; counted."""

    def __init__(self) -> None:
        super().__init__()
        self.records = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.records += bytes(data).count(b"\n")
        return len(data)


def kernel_seconds() -> float:
    """CPU time this process spent in the kernel (loopback TCP, epoll): the part no Python change saves."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def rss_kb() -> int:
    gc.collect()
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def make_triggers(impl: str, ids: list[str], interval: float, store_dir: Path) -> Any:
    """The triggers' serialized ``(classpath, kwargs)``, as sensors defer them; lazily, one per trigger."""
    from airflow_docjobs.hooks.docimprint import DocimprintHook
    from airflow_docjobs.results import ResultsStore
    from airflow_docjobs.triggers.job import DocJobTrigger

    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=6)).isoformat()
    store = ResultsStore(base=f"file://{store_dir}", vendor="docimprint", dag_id="bench", run_id="r1")
    common = {"hook_class": HOOK_CLASS, "conn_id": "docimprint_default", "deadline": deadline}
    common |= {"poll_interval": interval, "results": store.spec()}
    if impl in ("list", "single"):
        # The triggers' HTTP client (aiohttp), loaded once per triggerer process whatever the number of
        # waits, as HttpSensorTrigger's module loads it on import: before the first RSS reading, so the
        # memory per wait is the waits', not a library's import (a trigger loads it in a thread at its first poll).
        from airflow_docjobs.hooks import transport  # noqa: F401
    if impl == "list":
        # The batch's poll schedule (triggers/schedule.py) polls 16 jobs until one ends, and these never
        # end: its first window is widened to all N here, so every job is polled once per interval (the
        # rule before the schedule, for jobs that have not ended) and the phase measures the cost of a
        # poll at the same rate as the others, not the schedule.
        from airflow_docjobs.triggers import schedule

        schedule.FIRST_WINDOW = len(ids)
        # Packing is the sensor's work in a worker, before the trigger exists: done here, before the
        # first RSS reading. Past 4 KB the job list spills to the store, as the sensor's would.
        jobs = DocJobTrigger.pack([DocimprintHook.job_reference(i) for i in ids], store)
        return [DocJobTrigger(jobs=jobs, **common).serialize()]
    if impl == "single":
        return (DocJobTrigger(job=DocimprintHook.job_reference(i), **common).serialize() for i in ids)
    from airflow.providers.http.triggers.http import HttpSensorTrigger

    return (
        HttpSensorTrigger(
            endpoint=f"bench404/docimprint/v1/jobs/{i}", http_conn_id="http_bench", poke_interval=interval
        ).serialize()
        for i in ids
    )


def where_stuck() -> str:
    """Every thread's stack, and where the triggers' ``run()`` wait: why a phase made no polls."""
    import traceback

    out = ["== threads =="]
    for ident, frame in sys._current_frames().items():
        out.append(f"-- thread {ident}")
        out.extend(traceback.format_stack(frame))
    # Where the triggers' run() generators wait: the innermost frames of each await chain, counted.
    import collections
    import types

    chains: collections.Counter[str] = collections.Counter()
    for agen in (o for o in gc.get_objects() if isinstance(o, types.AsyncGeneratorType)):
        frames, awaited = [], agen
        while awaited is not None:
            frame = getattr(awaited, "ag_frame", None) or getattr(awaited, "cr_frame", None)
            if frame is not None:
                frames.append(
                    f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}"
                )
            else:
                frames.append(type(awaited).__name__)
            awaited = getattr(awaited, "ag_await", None) or getattr(awaited, "cr_await", None)
        chains[" > ".join(frames[-6:])] += 1
    out.append("== suspended async generators, by their innermost awaits ==")
    out.extend(f"{count:6d}  {chain}" for chain, count in chains.most_common(8))
    return "\n".join(out) + "\n"


async def drain(trigger: Any) -> Any:
    """What the triggerer's run_trigger does, minus its bookkeeping: drain run(), then cleanup()."""
    try:
        async for event in trigger.run():
            return event.payload
    finally:
        with contextlib.suppress(Exception):
            await trigger.cleanup()


async def phase(args: argparse.Namespace, logs: LogCounter) -> dict[str, Any]:
    import httpx
    from airflow.providers.common.compat.module_loading import import_string

    control = httpx.AsyncClient(base_url=f"http://127.0.0.1:{args.control_port}", timeout=120)
    (await control.post("/_emulator/reset")).raise_for_status()
    # "never": pending forever; processing long enough that progress_pct still moves every poll, as on a
    # real job (single triggers log a line when it changes).
    bulk = {"vendor": "docimprint", "count": args.waits, "name": "never.pdf"}
    bulk["processing_seconds"] = 50 * args.interval
    response = await control.post("/_emulator/bulk", json=bulk)
    response.raise_for_status()
    serialized = make_triggers(args.impl, response.json()["references"], args.interval, args.store)
    rss_before = rss_kb()

    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: list[asyncio.Task[Any]] = []
    count = 1 if args.impl == "list" else args.waits

    for n, (classpath, kwargs) in enumerate(serialized):
        # Staggered over one interval: sensors defer at different moments, so polls arrive evenly.
        await asyncio.sleep(max(0.0, start + args.interval * n / count - loop.time()))
        tasks.append(asyncio.create_task(drain(import_string(classpath)(**kwargs))))

    # Measured windows of half an interval each, after the warm-up: every trigger has polled by then
    # (ours poll first one interval after they start), and the pool's connections are open.
    def window_end(n: int) -> float:
        return start + (WARMUP_INTERVALS + n / 2) * args.interval

    await asyncio.sleep(max(0.0, window_end(0) - loop.time()))
    # A CPU clock: the loop's idle time in epoll does not count. It costs a system call per event, so a
    # profiled phase spends about twice the CPU per poll; the shares between functions are what it is for.
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    windows = []
    await control.post("/_bench/reset")
    cpu, system, records = time.process_time(), kernel_seconds(), logs.records
    if profiler:
        profiler.enable()
    for n in range(1, args.windows + 1):
        await asyncio.sleep(max(0.0, window_end(n) - loop.time()))
        now, kernel = time.process_time(), kernel_seconds()
        served = (await control.post("/_bench/reset")).json()
        mine = {
            "client_cpu": now - cpu,
            "client_kernel": kernel - system,
            "log_records": logs.records - records,
        }
        windows.append(served | mine)
        cpu, system, records = time.process_time(), kernel_seconds(), logs.records
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    rss_after = rss_kb()
    # Kept with the phase's figures (results.json, triggerer_phases) when it stalled; see starved().
    stuck = where_stuck() if starved({"waits": args.waits, "windows": windows}) else None
    ended = [t for t in tasks if t.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await control.aclose()
    return {
        "impl": args.impl,
        "waits": args.waits,
        "interval": args.interval,
        "load_average": os.getloadavg()[0],  # other work on the machine, for the reader
        "windows": windows,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "stuck": stuck,
        # A trigger must not end while its job is pending: anything here is an error.
        "ended_early": [repr(t.exception() or t.result())[:200] for t in ended[:5]]
        + ([f"... {len(ended)} in all"] if len(ended) > 5 else []),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impl", choices=IMPLS, required=True)
    parser.add_argument("--waits", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True, help="poll interval, seconds")
    parser.add_argument("--windows", type=int, default=4, help="measured half-intervals after the warm-up")
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--store", type=Path, required=True, help="the results store's directory")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the measured windows here")
    args = parser.parse_args(argv)

    from airflow.sdk.log import configure_logging, reset_logging

    # Imported before the first RSS reading: a triggerer has them loaded before any trigger arrives.
    import airflow_docjobs.triggers.job  # noqa: F401

    if args.impl == "http-sensor":
        import airflow.providers.http.triggers.http  # noqa: F401

    # What the supervisor sets up in the trigger-runner subprocess (_configure_logs_over_json_channel).
    logs = LogCounter()
    reset_logging()
    configure_logging(json_output=True, output=logs, sending_to_supervisor=True)
    print(json.dumps(asyncio.run(phase(args, logs))), flush=True)


if __name__ == "__main__":
    main()
