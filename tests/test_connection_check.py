"""
``test_connection`` (``airflow connections test``, the UI's Test button) and where errors say they tried:
a real request per vendor, against the emulator, for a good key, a refused key, a refused port and a
host name that does not resolve.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
import uvicorn
from airflow.providers.common.compat.module_loading import import_string
from conftest import FAST_RETRIES, SECRET, VENDORS
from fastapi import FastAPI

from airflow_docjobs.exceptions import VendorTransientError, VendorUnreachableError
from airflow_docjobs.get_provider_info import VENDORS as VENDOR_TABLE

# Each vendor's hook, from the provider's one vendor table.
HOOKS = {conn_type: import_string(hook) for conn_type, hook, *_ in VENDOR_TABLE}
assert list(HOOKS) == list(VENDORS)


def hook_for(vendor: str, monkeypatch, **conn) -> object:
    monkeypatch.setenv("AIRFLOW_CONN_PROBE", json.dumps({"conn_type": vendor, "extra": FAST_RETRIES} | conn))
    return HOOKS[vendor]("probe")


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_good_key_is_accepted_without_creating_a_job(emulator, monkeypatch, vendor):
    hook = hook_for(vendor, monkeypatch, host=emulator.vendor_url(vendor), password=SECRET)
    ok, message = hook.test_connection()
    assert ok, message
    assert emulator.vendor_url(vendor) in message
    assert SECRET not in message
    assert emulator.state.stats()["jobs"] == 0  # nothing was submitted, nothing billed
    assert [r["authorized"] for r in emulator.state.requests] == [True]


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_wrong_key_is_refused_naming_the_url_not_the_key(emulator, monkeypatch, vendor):
    wrong = "sk-wrong-5d1c9a"
    hook = hook_for(vendor, monkeypatch, host=emulator.vendor_url(vendor), password=wrong)
    ok, message = hook.test_connection()
    assert not ok
    assert "refused" in message
    assert emulator.vendor_url(vendor) in message
    assert wrong not in message
    assert "'probe'" in message


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_host_without_the_vendors_path_prefix_is_no_success(emulator, monkeypatch, vendor):
    # The emulator's root: a web server answers, but not the vendor's API (its prefix /<vendor> is missing).
    key = "sk-right-key-wrong-host"
    hook = hook_for(vendor, monkeypatch, host=emulator.url, password=key)
    ok, message = hook.test_connection()
    assert not ok, message
    assert "answered HTTP 404 (text/plain: 'Not Found')" in message
    assert f"which is not the {hook.vendor} API's answer" in message
    assert f"{hook.default_base_url} for {hook.vendor} itself" in message
    assert f"/{vendor} for the emulator" in message
    assert key not in message


@pytest.fixture(scope="module")
def another_api():
    """A FastAPI app that has none of the vendors' paths, as Airflow's own API server answers them."""
    server = uvicorn.Server(uvicorn.Config(FastAPI(), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.parametrize("vendor", VENDORS)
def test_another_json_api_is_no_success(another_api, monkeypatch, vendor):
    hook = hook_for(vendor, monkeypatch, host=another_api, password=SECRET)
    ok, message = hook.test_connection()
    assert not ok, message
    assert 'answered HTTP 404 (application/json: \'{"detail":"Not Found"}\')' in message


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_host_that_does_not_answer_is_named(monkeypatch, vendor):
    hook = hook_for(vendor, monkeypatch, host="http://127.0.0.1:9/x", password=SECRET)
    ok, message = hook.test_connection()
    assert not ok
    assert "cannot reach http://127.0.0.1:9/x" in message
    assert "could not connect to http://127.0.0.1:9" in message


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_host_name_that_does_not_resolve_fails_at_once(monkeypatch, vendor):
    hook = hook_for(vendor, monkeypatch, host="https://api.no-such-vendor.invalid", password=SECRET)
    ok, message = hook.test_connection()
    assert not ok
    assert "could not resolve the host of https://api.no-such-vendor.invalid" in message
    with pytest.raises(VendorUnreachableError) as err:
        hook.send(hook.probe_call())
    assert "retry" not in str(err.value)  # no second attempt was made


async def test_the_async_path_names_the_origin_and_does_not_retry_a_dns_failure(monkeypatch):
    hook = hook_for("mindee", monkeypatch, host="https://api.no-such-vendor.invalid", password=SECRET)
    async with hook:
        with pytest.raises(VendorUnreachableError, match=r"no-such-vendor\.invalid"):
            await asyncio.wait_for(hook.asend(hook.probe_call()), 10)
    refused = hook_for("mindee", monkeypatch, host="http://127.0.0.1:9", password=SECRET)
    async with refused:
        with pytest.raises(VendorTransientError, match=r"could not connect to http://127\.0\.0\.1:9"):
            await refused.asend(refused.probe_call())
