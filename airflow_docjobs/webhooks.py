"""Checks for what vendors push to us instead of being polled."""

from __future__ import annotations

import hashlib
import hmac


def verify_mindee_signature(body: bytes, signature: str, secret: str) -> bool:
    """
    Whether a Mindee webhook is authentic.

    ``X-Mindee-Hmac-Signature`` is the hex HMAC-SHA256 of the raw request body with the account's signing
    secret. Compared in constant time; a missing, malformed or wrongly encoded signature is simply not
    authentic.

    :param body: the raw request body, exactly as received (not re-serialized JSON).
    :param signature: the ``X-Mindee-Hmac-Signature`` header value.
    :param secret: the webhook signing secret from the Mindee platform.
    """
    if not isinstance(body, bytes | bytearray) or not isinstance(signature, str) or not secret:
        return False
    expected = hmac.new(secret.encode(), bytes(body), hashlib.sha256).hexdigest()
    try:
        given = signature.strip().lower().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected.encode("ascii"), given)
