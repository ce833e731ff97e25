"""
``make bench``: the polling cost in a triggerer and the nightly run, measured in one run.

Writes ``benchmarks/results.json`` and prints a table with each target's PASS or FAIL. See
``benchmarks/README.md`` for what is measured and how; ``--quick`` is a smoke run (N=200).

    .venv/bin/python benchmarks/run.py            # the full run, ~17 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --quick    # ~2 minutes
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run as a script: the sibling modules import as top-level ones

import nightly  # noqa: E402
import triggerer  # noqa: E402
from server import BenchServer  # noqa: E402

# The targets.
CPU_RATIO_MAX = 0.25  # of HttpSensorTrigger's CPU per poll, at the smallest N, both modes
CPU_GROWTH_MAX = 1.5  # CPU per poll from the smallest to the largest N
RSS_KB_MAX = {"list": 5.0, "single": 20.0}  # per waiting job / per single-document trigger
# Issue 19: wall within 1.1x N x L / C + 10 s, at most 1.25x the vendor's floor of requests per document,
# no job found later than one poll interval after it ended.
NIGHTLY_FACTOR, NIGHTLY_SLACK_S, TIS_PER_VENDOR_MAX, FLOOR_FACTOR = 1.1, 10.0, 10, 1.25
# Figures of each polling phase, kept for ours and for the baseline side by side in results.json.
PAIRED = (
    "cpu_us_per_poll",
    "kernel_us_per_poll",
    "rss_kb_per_wait",
    "polls_per_window",
    "server_cpu_us_per_poll",
    "connections_per_poll",
    "log_records_per_poll",
    "load_average",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="N=200 waits, 200 documents (sample 20)")
    parser.add_argument("--waits", help="comma-separated numbers of waiting jobs (1000,10000)")
    parser.add_argument("--rate", type=float, default=250.0, help="polls per second for every N (250)")
    parser.add_argument("--windows", type=int, default=4, help="measured half-interval windows (4)")
    parser.add_argument("--repeat", type=int, default=3, help="phases at the smallest N, interleaved (3)")
    parser.add_argument("--documents", type=int, help="nightly run's documents (1000)")
    parser.add_argument("--sample", type=int, help="documents of the per-document mapped run (100)")
    parser.add_argument(
        "--settings",
        default=",".join(nightly.SETTINGS),
        help=f"nightly settings, comma-separated ({','.join(nightly.SETTINGS)}; see nightly.SETTINGS)",
    )
    parser.add_argument("--skip-triggerer", action="store_true")
    parser.add_argument("--skip-nightly", action="store_true")
    parser.add_argument("--profile", action="store_true", help="then profile our phases at the smallest N")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    args = parser.parse_args(argv)
    waits = args.waits or ("200" if args.quick else "1000,10000")
    args.waits = sorted(int(n) for n in waits.split(","))
    args.documents = args.documents or (200 if args.quick else 1000)
    args.sample = args.sample or (20 if args.quick else 100)
    return args


def say(text: str = "") -> None:
    print(text, flush=True)


# -- measuring ----------------------------------------------------------------------------------------------


def measure_triggerer(args: argparse.Namespace, tmp: Path) -> tuple[list[dict[str, Any]], list[str], list]:
    """One phase per (N, implementation), each in a fresh subprocess, against one TLS server."""
    from airflow_docjobs.emulator.tls import make_certificate

    certfile, keyfile = make_certificate(tmp)
    entries, profiles, raw = [], [], []
    with BenchServer(certfile, keyfile) as ports:
        env = triggerer.phase_environment(tmp / "airflow-home", certfile, ports["tls_port"])

        def phase(impl: str, waits: int, profile: Path | None = None) -> dict[str, Any]:
            interval = waits / args.rate
            note = " (profiled)" if profile else ""
            say(f"  {impl:<11} {waits:>6} waits, poll interval {interval:g} s{note}")
            for _attempt in range(3):
                result = triggerer.run_phase(
                    impl, waits, interval, args.windows, ports["control_port"], tmp, env, profile
                )
                raw.append(result | {"stalled": triggerer.starved(result), "profiled": bool(profile)})
                if not raw[-1]["stalled"]:
                    break
                polls = sum(w["requests"] for w in result["windows"])
                say(f"    stalled ({polls} polls, load average {result['load_average']:.1f}): run again")
            summary = triggerer.summarize([result])
            say(
                f"    {summary['cpu_us_per_poll']:.0f} us CPU/poll, {summary['rss_kb_per_wait']:.2f} KB/wait,"
                f" {summary['polls_per_window']:.0f} polls per half interval"
            )
            if summary["ended_early"]:
                raise SystemExit(
                    f"{impl} triggers ended while their jobs were pending: {summary['ended_early']}"
                )
            return result

        for waits in args.waits:
            # The ratio target is judged at the smallest N, whose phases take seconds: repeated, interleaved.
            # A phase of the largest N takes minutes, and runs once.
            repeats = args.repeat if waits == args.waits[0] else 1
            runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in triggerer.IMPLS}
            for n in range(repeats):
                for impl in triggerer.IMPLS[n % 3 :] + triggerer.IMPLS[: n % 3]:
                    runs[impl].append(phase(impl, waits))
            base = triggerer.summarize(runs["http-sensor"])
            for mode in ("list", "single"):
                ours = triggerer.summarize(runs[mode])
                entry = {"waits": waits, "mode": mode, "interval_s": ours["interval_s"], "repeats": repeats}
                entry |= {"cpu_us_per_poll_each": ours["cpu_us_per_poll_each"]}
                entry |= {"baseline_cpu_us_per_poll_each": base["cpu_us_per_poll_each"]}
                for key in PAIRED:
                    entry |= {key: ours[key], f"baseline_{key}": base[key]}
                entry["cpu_ratio"] = ours["cpu_us_per_poll"] / base["cpu_us_per_poll"]
                entry["rss_ratio"] = ours["rss_kb_per_wait"] / base["rss_kb_per_wait"]
                entries.append(entry)
        if args.profile:
            for mode in ("list", "single"):
                path = tmp / f"{mode}.prof"
                phase(mode, args.waits[0], path)
                profiles.append(
                    f"== profile: {mode} mode, {args.waits[0]} waits ==\n{triggerer.profile_top(path)}"
                )
    return entries, profiles, raw


# -- judging and printing ---------------------------------------------------------------------------------


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []

    def check(target: str, measured: str, ok: bool) -> None:
        checks.append({"target": target, "measured": measured, "pass": bool(ok)})

    rows = results.get("triggerer") or []
    if rows:
        low, high = min(r["waits"] for r in rows), max(r["waits"] for r in rows)
        for mode in ("list", "single"):
            by_n = {r["waits"]: r for r in rows if r["mode"] == mode}
            first = by_n[low]
            check(
                f"{mode}: CPU/poll <= {CPU_RATIO_MAX}x HttpSensorTrigger's at {low:,} waits",
                f"{first['cpu_ratio']:.2f}x ({first['cpu_us_per_poll']:.0f} vs {first['baseline_cpu_us_per_poll']:.0f} us)",
                first["cpu_ratio"] <= CPU_RATIO_MAX,
            )
            if high != low:
                growth = by_n[high]["cpu_us_per_poll"] / first["cpu_us_per_poll"]
                check(
                    f"{mode}: CPU/poll grows < {CPU_GROWTH_MAX}x from {low:,} to {high:,} waits",
                    f"{growth:.2f}x",
                    growth < CPU_GROWTH_MAX,
                )
            worst = max(r["rss_kb_per_wait"] for r in by_n.values())
            check(
                f"{mode}: RSS <= {RSS_KB_MAX[mode]:g} KB per waiting job",
                f"{worst:.2f} KB (worst N)",
                worst <= RSS_KB_MAX[mode],
            )
    for run in results.get("nightly") or []:
        name, n = run["setting"]["name"], f"{run['documents']:,}"
        limit = NIGHTLY_FACTOR * run["lower_bound_s"] + NIGHTLY_SLACK_S
        check(
            f"nightly {name}, {n}: wall <= {NIGHTLY_FACTOR}x lower bound + {NIGHTLY_SLACK_S:g} s ({limit:.0f} s)",
            f"{run['wall_s']:.1f} s (lower bound {run['lower_bound_s']:.0f} s)",
            run["wall_s"] <= limit,
        )
        most = FLOOR_FACTOR * run["floor"]
        check(
            f"nightly {name}, {n}: requests/document <= {FLOOR_FACTOR}x the floor of {run['floor']} ({most:g})",
            f"{run['requests_per_document']:.2f}",
            run["requests_per_document"] <= most,
        )
        check(
            f"nightly {name}, {n}: no job found later than one poll interval ({run['poll_interval_s']:g} s)",
            f"worst {run['worst_lag_s']:.2f} s, median {run['median_lag_s']:.2f} s",
            run["worst_lag_s"] <= run["poll_interval_s"],
        )
        check(
            f"nightly {name}, {n}: <= {TIS_PER_VENDOR_MAX} task instances per vendor (one vendor)",
            str(run["task_instances"]),
            run["task_instances"] <= TIS_PER_VENDOR_MAX,
        )
    return checks


def table(header: list[str], rows: list[list[str]]) -> str:
    """Text columns left-aligned, numbers right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = [all(re.fullmatch(r"[\d.,]+x?", row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True)
        ).rstrip()
        for row in [header, *rows]
    )


# The polling table's columns: (header, how a triggerer entry shows in it).
POLLING_COLUMNS = [
    ("waits", lambda r: f"{r['waits']:,}"),
    ("mode", lambda r: r["mode"]),
    ("interval s", lambda r: f"{r['interval_s']:g}"),
    ("CPU us/poll", lambda r: f"{r['cpu_us_per_poll']:.0f}"),
    ("baseline", lambda r: f"{r['baseline_cpu_us_per_poll']:.0f}"),
    ("ratio", lambda r: f"{r['cpu_ratio']:.2f}x"),
    ("of it kernel", lambda r: f"{r['kernel_us_per_poll']:.0f}"),
    ("baseline", lambda r: f"{r['baseline_kernel_us_per_poll']:.0f}"),
    ("RSS KB/wait", lambda r: f"{r['rss_kb_per_wait']:.2f}"),
    ("baseline", lambda r: f"{r['baseline_rss_kb_per_wait']:.1f}"),
    ("ratio", lambda r: f"{r['rss_ratio']:.3f}x"),
    ("conns/poll", lambda r: f"{r['connections_per_poll']:.3f}"),
    ("baseline", lambda r: f"{r['baseline_connections_per_poll']:.2f}"),
    ("server us/poll", lambda r: f"{r['server_cpu_us_per_poll']:.0f}"),
    ("baseline", lambda r: f"{r['baseline_server_cpu_us_per_poll']:.0f}"),
]


NIGHTLY_HEADER = [
    "setting",
    "documents",
    "L s",
    "C",
    "poll s",
    "wall s",
    "bound s",
    "wall/bound",
    "requests/doc",
    "floor",
    "x floor",
    "worst lag s",
    "median lag s",
    "load",
]


def nightly_row(run: dict[str, Any]) -> list[str]:
    """One list-mode run, its times shown in the setting's seconds (scaled runs multiplied back)."""
    setting = run["setting"]
    scale = setting["scale"]
    span = (
        f"{setting['seconds']:g}-{setting['seconds_max']:g}"
        if setting["seconds_max"] > setting["seconds"]
        else f"{setting['seconds']:g}"
    )
    return [
        setting["name"] + (f" (run {scale:g}x faster)" if scale != 1 else ""),
        f"{run['documents']:,}",
        span,
        str(setting["concurrency"]),
        f"{setting['poke_interval']:g}",
        f"{run['wall_s'] * scale:.0f}",
        f"{run['lower_bound_s'] * scale:.0f}",
        f"{run['wall_s'] / run['lower_bound_s']:.2f}x",
        f"{run['requests_per_document']:.2f}",
        str(run["floor"]),
        f"{run['requests_per_document'] / run['floor']:.2f}x",
        f"{run['worst_lag_s'] * scale:.2f}",
        f"{run['median_lag_s'] * scale:.2f}",
        f"{max(run['load_average']):.1f}",
    ]


def report(results: dict[str, Any]) -> str:
    out = []
    if rows := results.get("triggerer"):
        out.append(
            "Polling cost over TLS (baseline: HttpSensorTrigger; CPU over each phase's polls, median of repeats):"
        )
        out.append(
            table([h for h, _ in POLLING_COLUMNS], [[show(r) for _, show in POLLING_COLUMNS] for r in rows])
        )
        for r in rows:
            if r["repeats"] > 1:
                out.append(
                    f"  {r['waits']:,} {r['mode']}: repeats {r['cpu_us_per_poll_each']} us/poll,"
                    f" baseline {r['baseline_cpu_us_per_poll_each']}"
                )
    if runs := results.get("nightly"):
        out.append("\nNightly run (airflow dags test against the emulator; times in the setting's seconds):")
        out.append(table(NIGHTLY_HEADER, [nightly_row(run) for run in runs]))
        for run in runs:
            if m := run.get("mapped_documents"):
                out.append(
                    f"  mapped, 2 task instances per document ({run['setting']['name']}): {m} documents in"
                    f" {run['mapped_wall_s']:.1f} s, {run['mapped_task_instances']} task instances,"
                    f" {run['mapped_requests_per_document']:.2f} requests/document"
                )
    if checks := results.get("targets"):
        out.append("\nTargets:")
        out.append(
            table(
                ["result", "target", "measured"],
                [["PASS" if c["pass"] else "FAIL", c["target"], c["measured"]] for c in checks],
            )
        )
    return "\n".join(out)


def source_state() -> dict[str, Any]:
    """The commit measured, and the package's files that differ from it (others edit them meanwhile)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True, check=False)
        return done.stdout

    changed = git("status", "--porcelain", "--", "airflow_docjobs").splitlines()
    return {"commit": git("rev-parse", "HEAD").strip(), "uncommitted": [line[3:] for line in changed]}


def versions() -> dict[str, str]:
    names = ("apache-airflow", "apache-airflow-providers-http", "aiohttp", "httpx", "uvicorn")
    return {"python": platform.python_version()} | {n: importlib.metadata.version(n) for n in names}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "command": shlex.join(["benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "versions": versions(),
        "source": source_state(),
        "settings": {
            "waits": args.waits,
            "polls_per_second": args.rate,
            "windows": args.windows,
            "repeat": args.repeat,
        },
    }
    profiles: list[str] = []
    phases: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="docjobs-bench-") as tmpdir:
        tmp = Path(tmpdir)
        if not args.skip_triggerer:
            say(f"Polling cost: {args.waits} waits, {args.rate:g} polls/s, TLS on loopback")
            (tmp / "triggerer").mkdir()
            results["triggerer"], profiles, phases = measure_triggerer(args, tmp / "triggerer")
        if not args.skip_nightly:
            results["nightly"] = []
            for n, name in enumerate(args.settings.split(",")):
                setting = nightly.SETTINGS[name]
                sample = args.sample if n == 0 else 0  # the mapped DAG once, in the first setting
                say(f"Nightly run, setting {name}: {args.documents} documents, mapped sample {sample}")
                (tmp / f"nightly-{name}").mkdir()
                results["nightly"].append(
                    nightly.measure(tmp / f"nightly-{name}", args.documents, sample, setting, say)
                )
    results["targets"] = targets(results)
    # Last: every polling phase as measured (windows included), stalled ones too, for a second look.
    results["triggerer_phases"] = phases
    results["seconds"] = round(time.perf_counter() - started)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    say()
    say(report(results))
    for profile in profiles:
        say()
        say(profile)
    say(f"\nWrote {args.output} in {results['seconds']} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
