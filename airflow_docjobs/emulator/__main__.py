"""``python -m airflow_docjobs.emulator``: serve the emulator with uvicorn until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys

import uvicorn

from airflow_docjobs.emulator.app import EmulatorSettings, create_app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = EmulatorSettings()
    parser = argparse.ArgumentParser(prog="python -m airflow_docjobs.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed at startup)")
    parser.add_argument("--api-key", default=defaults.api_key, help="the secret every vendor accepts")
    parser.add_argument("--processing-seconds", type=float, default=defaults.processing_seconds)
    parser.add_argument("--result-ttl", type=float, default=defaults.result_ttl_seconds, help="Finovox")
    parser.add_argument("--review-seconds", type=float, default=defaults.review_seconds, help="myBiros")
    parser.add_argument("--log-level", default="warning", help="'info' logs every request")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> int:
    settings = EmulatorSettings(
        api_key=args.api_key,
        processing_seconds=args.processing_seconds,
        result_ttl_seconds=args.result_ttl,
        review_seconds=args.review_seconds,
    )
    config = uvicorn.Config(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
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
    print(f"emulator listening on http://{host}:{sock.getsockname()[1]}", flush=True)
    await task
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
