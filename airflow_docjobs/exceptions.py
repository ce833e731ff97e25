"""
Errors raised by airflow-docjobs.

::

    DocJobsError                      every error carries vendor, conn_id, status_code, job_id, vendor_message
     ├── DocJobsInputError            bad parameter, raised before any network call (also a ValueError)
     ├── VendorTransientError         429 / 5xx / network / timeout / non-JSON body, still failing after retries
     │    └── VendorUnreachableError  the vendor's host name does not resolve: not retried within a call
     ├── VendorAPIError               a permanent HTTP answer: retrying the same request cannot help
     │    ├── VendorAuthError         401 / 402 / 403 (docimprint refuses a bad payment token with 402)
     │    ├── VendorRequestError      400 / 422 and other 4xx
     │    └── VendorNotFoundError     404: unknown job, token or document
     ├── VendorJobFailedError         the vendor says the job failed (also an AirflowFailException: no retry)
     └── DocJobsConfigError           the deployment cannot run it as set up: no Fernet key, a results store
                                      the worker cannot write (an AirflowFailException: no retry)

Messages name the connection id and never a secret: the hooks only ever pass the vendor's own
message and identifiers in, never headers or connection passwords.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException


class DocJobsError(AirflowException):
    """
    Base error of the provider.

    :param summary: what went wrong, in a few words.
    :param vendor: vendor name, e.g. ``Finovox``.
    :param conn_id: Airflow connection id in use.
    :param status_code: HTTP status of the vendor's answer, if there was one.
    :param job_id: vendor job reference (never a secret token).
    :param vendor_message: the vendor's own error message, verbatim.
    :param code: the vendor's structured error code (docimprint ``error.code``, Mindee
        ``job.error.code``...), or ours for a failure without one.
    """

    # The vendor's HTTP status, or None: not the HTTPStatus AirflowException gives its API's errors.
    status_code: int | None  # type: ignore[assignment]

    def __init__(
        self,
        summary: str,
        *,
        vendor: str | None = None,
        conn_id: str | None = None,
        status_code: int | None = None,
        job_id: str | None = None,
        vendor_message: str | None = None,
        code: str | None = None,
    ) -> None:
        self.summary = summary
        self.code = code
        self.vendor = vendor
        self.conn_id = conn_id
        self.status_code = status_code
        self.job_id = job_id
        self.vendor_message = vendor_message
        context = [
            f"{name} {value}"
            for name, value in (
                ("connection", conn_id and repr(conn_id)),
                ("HTTP", status_code),
                ("job", job_id),
            )
            if value
        ]
        message = f"{vendor}: {summary}" if vendor else summary
        if code:
            message += f" [{code}]"
        if context:
            message += f" ({', '.join(context)})"
        if vendor_message:
            message += f": {vendor_message}"
        super().__init__(message)


class DocJobsInputError(DocJobsError, ValueError):
    """A parameter is invalid; raised before any request is sent."""


class VendorTransientError(DocJobsError):
    """Trouble that may pass (rate limit, server error, network, timeout, garbled body)."""


class VendorUnreachableError(VendorTransientError):
    """The vendor's host name does not resolve (a typo in the connection's host, or no DNS)."""


class VendorAPIError(DocJobsError):
    """A permanent error answer from the vendor."""


class VendorAuthError(VendorAPIError):
    """The vendor refused the credentials (401/403; docimprint's 402 for a bad payment token)."""


class VendorRequestError(VendorAPIError):
    """The vendor refused the request itself (400/422 and other 4xx)."""


class VendorNotFoundError(VendorAPIError):
    """The vendor does not know the job, token or document (404)."""


class VendorJobFailedError(DocJobsError, AirflowFailException):
    """The vendor reports that the job failed: a terminal state, so the task fails without retrying."""


class DocJobsConfigError(DocJobsError, AirflowFailException):
    """
    The deployment cannot run the task as it is set up; a retry would meet the same setting, so no retry.

    A results store the worker cannot reach or write (checked before a submit sends anything), or a missing
    or invalid ``[core] fernet_key`` where a secret must be encrypted (checked before a sensor defers).
    """


# Answers that mean "this key is refused" (docimprint says 402 Payment Required for a bad token).
REFUSED_KEY_STATUSES = frozenset({401, 402, 403})


def error_for_status(status: int) -> tuple[type[VendorAPIError | VendorTransientError], str]:
    """The typed error of an HTTP error status, and a summary of it."""
    if status in REFUSED_KEY_STATUSES:
        return VendorAuthError, "credentials were refused"
    if status == 404:
        return VendorNotFoundError, "job or resource not found"
    if status == 429 or status >= 500:
        return VendorTransientError, "server error"
    return VendorRequestError, "request was refused"
