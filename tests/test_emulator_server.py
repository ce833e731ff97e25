"""The emulator served for real: EmulatorServer in-process (HTTP and TLS, connection counting) and the CLI."""

from __future__ import annotations

import ipaddress
import json
import re
import ssl

import httpx
import pytest
from cryptography import x509
from test_emulator import KEY, STARTUP_SECONDS, emulator_process

from airflow_docjobs.emulator import EmulatorSettings
from airflow_docjobs.emulator.__main__ import parse_args
from airflow_docjobs.emulator.testing import EmulatorServer
from airflow_docjobs.emulator.tls import make_certificate


def trusting(ca_file) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def test_emulator_server_in_process():
    with EmulatorServer(EmulatorSettings(processing_seconds=0)) as server:
        conn = json.loads(server.connection_json("biros", timeout=5))
        assert conn == {
            "conn_type": "biros",
            "host": f"{server.url}/biros",
            "password": KEY,
            "extra": {"timeout": 5},
        }
        assert server.url.startswith("http://127.0.0.1:")
        assert server.ca_file is None
        response = httpx.get(f"{server.url}/_emulator/health")
        assert response.status_code == 200
        httpx.get(f"{server.url}/biros/inference/service/s/predicted-documents/d")
        assert server.state.requests[-1]["authorized"] is False  # the test sees the server's state


def test_connections_are_counted_and_reset():
    with EmulatorServer() as server, httpx.Client(base_url=server.url) as client:
        assert server.connections == 0
        for _ in range(3):
            client.get("/docimprint/v1/jobs/job_x")  # one kept-alive connection
        assert server.connections == 1
        for _ in range(2):
            httpx.get(f"{server.url}/docimprint/v1/jobs/job_x")  # a new connection each
        assert server.connections == 3
        server.reset_counters()
        assert client.get("/_emulator/stats").json() == {"connections": 0, "requests": 0, "jobs": 0}
        httpx.get(f"{server.url}/_emulator/health")
        assert server.connections == 1
        server.state.reset()
        assert server.connections == 0


def test_tls_server_is_trusted_through_its_ca_file_and_counts_handshakes():
    with EmulatorServer(tls=True) as server:
        assert server.url.startswith("https://127.0.0.1:")
        assert server.ca_file.is_file()
        conn = json.loads(server.connection_json("docimprint", timeout=5))
        assert conn["host"] == f"{server.url}/docimprint"
        assert conn["extra"] == {"ca_bundle": str(server.ca_file), "timeout": 5}

        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{server.url}/_emulator/health")  # the system's CAs do not know it
        with httpx.Client(base_url=server.url, verify=trusting(server.ca_file)) as client:
            statuses = [client.get("/docimprint/v1/jobs/job_x").status_code for _ in range(3)]
            assert statuses == [404] * 3
            # The failed handshake is not a connection; the client's one is, once for three requests.
            assert client.get("/_emulator/stats").json() == {"connections": 1, "requests": 3, "jobs": 0}
        ca_file = server.ca_file
    assert not ca_file.exists()  # the throwaway certificate goes with the server


def test_a_hook_polls_the_tls_server_on_one_connection(monkeypatch):
    from airflow_docjobs.hooks.docimprint import DocimprintHook

    with EmulatorServer(EmulatorSettings(processing_seconds=1.0), tls=True) as server:
        monkeypatch.setenv("AIRFLOW_CONN_DOCIMPRINT_DEFAULT", server.connection_json("docimprint"))
        with DocimprintHook() as hook:
            job = hook.job_reference(hook.submit("https://example.com/a.pdf"))
            assert hook.get_job_status(job).state == "pending"
            server.state.advance(1.0)
            assert hook.get_job_status(job).state == "succeeded"
        assert server.connections == 1


@pytest.mark.parametrize("key_type", ["ec", "rsa"], ids=["ec", "rsa"])
def test_make_certificate_is_its_own_trust_anchor_for_loopback(tmp_path, key_type):
    certfile, keyfile = make_certificate(tmp_path, key_type)
    cert = x509.load_pem_x509_certificate(certfile.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    context = trusting(certfile)  # loads as a CA bundle
    context.load_cert_chain(certfile, keyfile)  # and the key matches
    assert keyfile.stat().st_mode & 0o077 == 0


def test_make_certificate_rejects_unknown_key_types(tmp_path):
    with pytest.raises(ValueError, match="key_type"):
        make_certificate(tmp_path, "dsa")


# -- the command line ---------------------------------------------------------------------------------


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as done:
        parse_args(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    options = text[text.index("options:") :]
    # Each option's entry, from its flag to the next one, ends with its default.
    entries = [" ".join(entry.split()) for entry in re.split(r"\n\s+(?=--)", options)[1:]]
    assert len(entries) == text.count("[--") > 0  # one per option in the usage line
    assert [e for e in entries if not re.search(r"\(default: [^)]*\)$", e)] == []
    defaults = {e.split()[0]: e.rsplit("(default: ", 1)[1][:-1] for e in entries}
    assert defaults["--processing-seconds"] == "2.0"
    assert defaults["--concurrency"] == "0"
    assert defaults["--port"] == "8080"
    assert defaults["--tls"] == "False"


@pytest.mark.parametrize("option", ["--concurrency", "--processing-seconds"], ids=["concurrency", "seconds"])
def test_negative_values_are_refused(capsys, option):
    with pytest.raises(SystemExit) as refused:
        parse_args([option, "-1"])
    assert refused.value.code == 2
    assert f"{option} must not be negative" in capsys.readouterr().err


def test_cli_serves_tls_with_a_concurrency_limit():
    with emulator_process("--tls", "--concurrency", "1", "--processing-seconds", "5") as (_, lines):
        ca_line, listening = lines.get(timeout=STARTUP_SECONDS), lines.get(timeout=20)
        ca_file = re.fullmatch(r"emulator CA certificate: (\S+)\n", ca_line)[1]
        url = re.fullmatch(r"emulator listening on (https://127\.0\.0\.1:\d+)\n", listening)[1]
        with httpx.Client(base_url=url, verify=trusting(ca_file)) as client:
            assert client.get("/_emulator/config").json()["concurrency"] == 1
            references = client.post("/_emulator/bulk", json={"vendor": "docimprint", "count": 2}).json()
            jobs = [client.get(f"/docimprint/v1/jobs/{ref}").json() for ref in references["references"]]
            assert jobs[1]["progress_message"] == "Queued"
            assert client.get("/_emulator/stats").json() == {"connections": 1, "requests": 2, "jobs": 2}
