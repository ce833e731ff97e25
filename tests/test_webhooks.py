"""Mindee webhook signatures: valid, tampered, missing and wrongly encoded."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from airflow_docjobs.webhooks import verify_mindee_signature

SECRET = "whsec-6c1f0e"
BODY = b'{"document": {"id": "d-1", "inference": {"prediction": {"total_amount": {"value": 12.5}}}}}'
GOOD = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()


def test_a_valid_signature_is_accepted_in_either_case():
    assert verify_mindee_signature(BODY, GOOD, SECRET)
    assert verify_mindee_signature(BODY, GOOD.upper(), SECRET)


@pytest.mark.parametrize(
    ("body", "signature", "secret"),
    [
        (BODY.replace(b"12.5", b"99.5"), GOOD, SECRET),
        (BODY, GOOD, "another-secret"),
        (BODY, GOOD[:-1] + ("0" if GOOD[-1] != "0" else "1"), SECRET),
        (BODY, "", SECRET),
        (BODY, None, SECRET),
        (BODY, "sha256=" + GOOD, SECRET),
        (BODY, "é" * 64, SECRET),
        (BODY, GOOD, ""),
        (BODY.decode(), GOOD, SECRET),
    ],
    ids=[
        "tampered body",
        "other secret",
        "one digit off",
        "empty",
        "missing",
        "prefixed",
        "non-ascii",
        "no secret",
        "text body",
    ],
)
def test_anything_else_is_refused(body, signature, secret):
    assert verify_mindee_signature(body, signature, secret) is False
