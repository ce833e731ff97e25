"""``python -m airflow_docjobs.emulator``: serve the emulator with uvicorn until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import tempfile
from pathlib import Path

import uvicorn

from airflow_docjobs.emulator.app import EmulatorSettings, create_app
from airflow_docjobs.emulator.serving import uvicorn_config
from airflow_docjobs.emulator.tls import make_certificate

# The options that set EmulatorSettings fields: flag, field, help. Their defaults are the settings' own.
SETTING_OPTIONS = (
    ("--api-key", "api_key", "the secret every vendor accepts"),
    ("--processing-seconds", "processing_seconds", "how long a job processes once it has a slot"),
    (
        "--processing-seconds-max",
        "processing_seconds_max",
        "when above --processing-seconds, each job takes its own time between the two",
    ),
    ("--result-ttl", "result_ttl_seconds", "Finovox result lifetime, in seconds"),
    ("--review-seconds", "review_seconds", "how long a myBiros human review takes"),
    (
        "--concurrency",
        "concurrency",
        "jobs processing at once per vendor, later ones queue; 0 means unlimited",
    ),
    ("--journal-limit", "journal_limit", "how many of the latest requests /_emulator/requests keeps"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options: address, port, ``--tls`` and the ``EmulatorSettings`` fields."""
    defaults = EmulatorSettings()
    parser = argparse.ArgumentParser(
        prog="python -m airflow_docjobs.emulator",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed at startup)")
    for flag, name, text in SETTING_OPTIONS:
        default = getattr(defaults, name)
        parser.add_argument(flag, dest=name, type=type(default), default=default, help=text)
    parser.add_argument(
        "--tls", action="store_true", help="serve HTTPS with a throwaway certificate (its path is printed)"
    )
    parser.add_argument("--log-level", default="warning", help="'info' logs every request")
    args = parser.parse_args(argv)
    for flag, name, _ in SETTING_OPTIONS:
        value = getattr(args, name)
        if isinstance(value, int | float) and value < 0:
            parser.error(f"{flag} must not be negative")
    return args


async def serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT, over HTTPS with a throwaway certificate when ``--tls``."""
    if not args.tls:
        return await _serve(args, None)
    with tempfile.TemporaryDirectory(prefix="docjobs-emulator-tls-") as tls_dir:
        return await _serve(args, make_certificate(Path(tls_dir)))


async def _serve(args: argparse.Namespace, certificate: tuple[Path, Path] | None) -> int:
    settings = EmulatorSettings(**{name: getattr(args, name) for _, name, _ in SETTING_OPTIONS})
    config = uvicorn_config(create_app(settings), args.host, args.port, certificate, log_level=args.log_level)
    server = uvicorn.Server(config)

    def stop(signum: int, frame: object) -> None:
        server.should_exit = True

    # uvicorn swaps in its own handlers while serving and, once shut down, re-raises the signal through
    # whatever handler was there before: with ours that is a no-op, so the process exits with status 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)

    # Binding here rather than in uvicorn turns a busy port into one clear line instead of a traceback.
    try:
        family, _, _, _, address = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)[0]
        # proto=IPPROTO_TCP, not create_server's 0: asyncio sets TCP_NODELAY on accepted connections only
        # then, and without it every kept-alive response waits ~40 ms on Nagle and delayed ACKs.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        print(f"emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
        return 1
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            return 1  # uvicorn could not start serving; it has logged why
        await asyncio.sleep(0.02)
    host = f"[{args.host}]" if ":" in args.host else args.host
    if certificate is not None:
        print(f"emulator CA certificate: {certificate[0]}", flush=True)
    scheme = "https" if certificate is not None else "http"
    print(f"emulator listening on {scheme}://{host}:{sock.getsockname()[1]}", flush=True)
    await task
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the emulator server from the command line; return its exit status."""
    return asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
