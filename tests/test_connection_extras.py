"""The connection form's extras (get_provider_info.CONN_FIELDS) and what the hooks read are one table."""

from __future__ import annotations

import json

import pytest

from airflow_docjobs.get_provider_info import CONN_FIELDS
from airflow_docjobs.hooks.docimprint import DocimprintHook

# A value other than the default for every field the form offers.
CHANGED = {
    "timeout": 7,
    "connect_timeout": 3,
    "verify": False,
    "ca_bundle": "/etc/ssl/corporate.pem",
    "max_attempts": 2,
    "retry_base_delay": 0.5,
    "retry_max_delay": 4,
    "retry_deadline": 60,
    "resend_ambiguous_submits": False,
}


def settings(monkeypatch, extra: dict):
    conn = {"conn_type": "docimprint", "password": "k", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_FORM", json.dumps(conn))
    return DocimprintHook("form").settings


def read(s) -> dict:
    """Every setting a connection extra can change, by its form field name."""
    return {
        "timeout": s.timeout.read,
        "connect_timeout": s.timeout.connect,
        "verify": s.verify,
        "ca_bundle": s.ca_bundle,
        "max_attempts": s.backoff.max_attempts,
        "retry_base_delay": s.backoff.base_delay,
        "retry_max_delay": s.backoff.max_delay,
        "retry_deadline": s.backoff.deadline,
        "resend_ambiguous_submits": s.resend_ambiguous,
    }


def test_the_form_offers_exactly_what_the_hooks_read():
    assert set(CONN_FIELDS) == set(CHANGED)


@pytest.mark.parametrize("field", sorted(CONN_FIELDS))
def test_each_field_changes_its_setting_and_defaults_agree(monkeypatch, field):
    default = read(settings(monkeypatch, {}))[field]
    assert default == CONN_FIELDS[field]["schema"].get("default")
    assert read(settings(monkeypatch, {field: CHANGED[field]}))[field] == CHANGED[field]
    # The form's fields arrive with Airflow's legacy prefix too.
    assert (
        read(settings(monkeypatch, {f"extra__docimprint__{field}": CHANGED[field]}))[field] == CHANGED[field]
    )
