"""
Mindee v1 answers that Mindee recorded itself (github.com/mindee/client-lib-test-data, ``v1/``), replayed by
the emulator as they came, read as Mindee's own client reads them.
"""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import MINDEE_PRODUCT, journal
from test_trigger import first_event, trigger_for

from airflow_docjobs.emulator import Fault
from airflow_docjobs.exceptions import VendorRequestError, VendorTransientError
from airflow_docjobs.hooks.mindee import MindeeHook

URL = "https://api.mindee.net/v1/products/mindee/invoices/v4/predict"
# v1/async/post_fail_forbidden.json
ASYNC_FORBIDDEN = {
    "api_request": {
        "error": {
            "details": "mindee/invoices does not support async mode",
            "message": "This product does not support asynchronous mode",
            "code": "Forbidden",
        },
        "resources": [],
        "status": "failure",
        "status_code": 403,
        "url": URL,
    }
}
# v1/errors/error_400_with_object_in_detail.json
OBJECT_IN_DETAILS = {
    "api_request": {
        "error": {"details": {"document": ["error message"]}},
        "resources": ["document"],
        "status": "success",
        "status_code": 400,
        "url": URL,
    }
}
# v1/errors/error_50x.html, shortened
GATEWAY_PAGE = """<!DOCTYPE html>
<html>
<head>
    <title>Error</title>
    <style>html { color-scheme: light dark; }</style>
</head>
<body>
<h1>An error occurred.</h1>
<p>Sorry, the page you are looking for is currently unavailable.<br/>
    Please try again later.</p>
<p><em>Faithfully yours, nginx.</em></p>
</body>
</html>"""


def replay(emulator, path: str, status: int, body: object, method: str = "POST") -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    emulator.state.faults.append(Fault(vendor="mindee", path=path, method=method, status=status, body=text))


def submit(sample_pdf) -> str:
    with MindeeHook() as hook:
        return hook.submit(str(sample_pdf), **MINDEE_PRODUCT)


def test_a_product_without_async_mode_is_not_a_refused_key(emulator, sample_pdf):
    replay(emulator, "/predict_async", 403, ASYNC_FORBIDDEN)
    with pytest.raises(VendorRequestError) as err:
        submit(sample_pdf)
    assert "no asynchronous mode" in str(err.value)
    assert "credentials" not in str(err.value)
    assert err.value.vendor_message == "This product does not support asynchronous mode"


def test_details_given_per_field_keep_the_vendors_words(emulator, sample_pdf):
    replay(emulator, "/predict_async", 400, OBJECT_IN_DETAILS)
    with pytest.raises(VendorRequestError) as err:
        submit(sample_pdf)
    assert err.value.vendor_message == "document: error message"
    assert str(err.value).endswith(": document: error message")


def test_a_2xx_answer_that_says_400_is_an_error_when_submitting(emulator, sample_pdf):
    # v1/errors/success_with_object_response_in_detail.json is the same body with status_code 201.
    replay(emulator, "/predict_async", 201, OBJECT_IN_DETAILS)
    with pytest.raises(VendorRequestError) as err:
        submit(sample_pdf)
    assert err.value.status_code == 400
    assert err.value.vendor_message == "document: error message"


async def test_a_2xx_poll_that_says_400_ends_the_wait_at_once(emulator, sample_pdf):
    job = MindeeHook.job_reference(submit(sample_pdf), **MINDEE_PRODUCT)
    replay(emulator, "/documents/queue/", 200, OBJECT_IN_DETAILS, method="GET")
    trigger = trigger_for(job, hook="airflow_docjobs.hooks.mindee.MindeeHook", conn_id="mindee_default")
    event = await first_event(trigger)
    assert event["status"] == "error"  # not a pending job polled until the deadline
    assert event["error_type"] == "VendorRequestError"
    assert "document: error message" in event["message"]
    assert len(journal(emulator, "/documents/queue/")) == 1


def test_a_gateway_page_is_one_short_line(emulator, sample_pdf):
    replay(emulator, "/predict_async", 502, GATEWAY_PAGE)
    emulator.state.faults[-1].times = None
    with pytest.raises(VendorTransientError) as err:
        submit(sample_pdf)
    assert err.value.vendor_message == "an HTML page: Error - An error occurred."
    assert "<" not in str(err.value)
    assert "\n" not in str(err.value)


# -- the emulator's answers look like the recorded ones -----------------------------------------------

ADDRESS_PARTS = {"address_complement", "city", "country", "po_box", "postal_code", "state", "street_name"}


def test_the_emulators_invoice_has_what_mindees_recorded_ones_have(emulator, sample_pdf):
    """As v1/products/invoices/response_v4/default_sample.json: address parts, locale, orientation."""
    with MindeeHook() as hook:
        job = MindeeHook.job_reference(hook.submit(str(sample_pdf), **MINDEE_PRODUCT), **MINDEE_PRODUCT)
        emulator.state.advance(5)
        document = hook.get_job_status(job).result["document"]
    prediction = document["inference"]["prediction"]
    for name in ("supplier_address", "customer_address", "billing_address", "shipping_address"):
        assert ADDRESS_PARTS | {"street_number", "value", "confidence", "polygon", "page_id"} == set(
            prediction[name]
        ), name
    assert prediction["supplier_address"]["street_number"] == "123"
    assert prediction["billing_address"]["city"] == "Springfield"
    assert prediction["shipping_address"]["city"] is None  # not found: every part null, as Mindee sends it
    assert prediction["locale"]["value"] == "en-US"
    assert "code" not in prediction["taxes"][0]
    page = document["inference"]["pages"][0]
    assert page["orientation"] == {"value": 0}
    assert page["prediction"]["orientation"] == {"confidence": 0.99, "degrees": 0}
    assert isinstance(page["prediction"]["orientation"]["degrees"], int)
    assert "orientation" not in prediction  # a page's, not the document's
    assert "orientation" in document["inference"]["product"]["features"]


def test_the_emulators_500_has_mindees_code(emulator):
    """As v1/errors/error_500_inference_fail.json: a 500's error code is ``failure``."""
    emulator.state.faults.append(Fault(vendor="mindee", path="/predict_async", status=500, times=1))
    refused = httpx.post(
        emulator.vendor_url("mindee") + "/v1/products/mindee/invoices/v4/predict_async",
        headers={"Authorization": f"Token {emulator.state.settings.api_key}"},
    )
    assert refused.status_code == 500
    assert refused.json()["api_request"]["error"]["code"] == "failure"
    assert refused.json()["api_request"]["status_code"] == 500
