"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

Kept free of imports from the package so that Airflow's provider discovery stays cheap; a test checks
that it agrees with the hook classes.
"""

from __future__ import annotations

from typing import Any

# connection type, hook class, display name, label of the secret, public base URL
VENDORS = (
    (
        "finovox",
        "airflow_docjobs.hooks.finovox.FinovoxHook",
        "Finovox",
        "API key",
        "https://api-v2.finovox.com",
    ),
    ("mindee", "airflow_docjobs.hooks.mindee.MindeeHook", "Mindee", "API key", "https://api.mindee.net"),
    (
        "mindee_v2",
        "airflow_docjobs.hooks.mindee_v2.MindeeV2Hook",
        "Mindee v2",
        "API key",
        "https://api-v2.mindee.net",
    ),
    (
        "docimprint",
        "airflow_docjobs.hooks.docimprint.DocimprintHook",
        "docimprint",
        "Payment token or API key",
        "https://api.docimprint.com",
    ),
    (
        "biros",
        "airflow_docjobs.hooks.biros.BirosHook",
        "myBiros",
        "API key",
        "https://platform.mybiros.com/api/v1",
    ),
)

# Connection extra fields shared by every vendor (read by airflow_docjobs.hooks.base).
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "timeout": {
        "label": "Timeout (s)",
        "description": "Read/write timeout of one HTTP request, in seconds.",
        "schema": {"type": ["number", "null"], "default": 60},
    },
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "description": "Timeout to open a connection, in seconds.",
        "schema": {"type": ["number", "null"], "default": 10},
    },
    "verify": {
        "label": "Verify TLS",
        "description": "Verify the vendor's TLS certificate.",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "ca_bundle": {
        "label": "CA bundle",
        "description": "Path to a PEM file of trusted certificates (e.g. a corporate proxy's).",
        "schema": {"type": ["string", "null"]},
    },
    "max_attempts": {
        "label": "Max attempts",
        "description": "Attempts per request on transient errors (429, 502-504, network, timeout).",
        "schema": {"type": ["integer", "null"], "default": 5},
    },
    "retry_base_delay": {
        "label": "Retry base delay (s)",
        "description": "First backoff delay; it doubles per attempt, with jitter, up to the max delay.",
        "schema": {"type": ["number", "null"], "default": 1},
    },
    "retry_max_delay": {
        "label": "Retry max delay (s)",
        "description": "Longest backoff delay between two attempts, in seconds.",
        "schema": {"type": ["number", "null"], "default": 30},
    },
    "resend_ambiguous_submits": {
        "label": "Resend ambiguous submits",
        "description": "Resend a submit after a 502, a 504 or a lost answer, which may have created a job "
        "(logged as a warning). Off: fail the task instead of risking a second charge.",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "retry_deadline": {
        "label": "Retry deadline (s)",
        "description": "Wall-clock limit of one request with its retries, in seconds.",
        "schema": {"type": ["number", "null"], "default": 300},
    },
}

# Connection extra fields of one vendor only, beside the shared ones.
VENDOR_CONN_FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    "docimprint": {
        "auth": {
            "label": "Authentication",
            "description": "How the password is sent: 'x402' as the X-Payment token (default), 'api_key' "
            "as 'Authorization: Bearer <key>' (an account's API key, as docimprint's own client sends it).",
            "schema": {"type": ["string", "null"], "default": "x402"},
        }
    }
}


def conn_fields(conn_type: str) -> dict[str, dict[str, Any]]:
    """The connection extra fields of one connection type: the shared ones and its own."""
    return CONN_FIELDS | VENDOR_CONN_FIELDS.get(conn_type, {})


# The one list of vendors: each connection type is also its hook module's and the emulator's prefix's name.
CONN_TYPES = tuple(vendor[0] for vendor in VENDORS)


def field_behaviour(secret_label: str, base_url: str) -> dict[str, Any]:
    """A vendor's connection form: hidden fields, labels, placeholders (keys as the provider info has them)."""
    return {
        "hidden-fields": ["schema", "port", "login"],
        "relabeling": {"host": "Base URL", "password": secret_label},
        "placeholders": {"host": base_url},
    }


def get_provider_info() -> dict[str, Any]:
    """The provider's metadata, which Airflow reads through the ``apache_airflow_provider`` entry point."""
    integrations = [name for _, _, name, _, _ in VENDORS]

    def modules(kind: str) -> list[dict[str, Any]]:
        return [
            {"integration-name": name, "python-modules": [f"airflow_docjobs.{kind}.{module}"]}
            for name, module in zip(integrations, CONN_TYPES, strict=True)
        ]

    return {
        "package-name": "airflow-docjobs",
        "name": "Document AI jobs (Finovox, Mindee, Mindee v2, docimprint, myBiros)",
        "description": "Submit documents to document-AI vendors' asynchronous APIs and wait for the results "
        "with deferrable sensors.",
        "versions": ["0.2.0", "0.1.0"],
        "integrations": [{"integration-name": name, "tags": ["service"]} for name in integrations],
        "hooks": modules("hooks"),
        "operators": modules("operators"),
        "sensors": modules("sensors"),
        # One trigger serves every vendor: list it under each, so each integration's page shows it.
        "triggers": [
            {"integration-name": name, "python-modules": ["airflow_docjobs.triggers.job"]}
            for name in integrations
        ],
        "extra-links": ["airflow_docjobs.links.FinovoxShareLink"],
        "config": {
            "docjobs": {
                "description": "Settings of the airflow-docjobs provider.",
                "options": {
                    "results_uri": {
                        "description": "Where the triggers land every vendor result the moment they fetch "
                        "it, and where sensors and ingestion read it: any ObjectStoragePath URI. Name the "
                        "Airflow connection in it: s3://{aws_conn_id}@bucket/prefix (with "
                        "apache-airflow-providers-amazon and s3fs), gs://{google_cloud_conn_id}@bucket/prefix "
                        "(apache-airflow-providers-google), abfs://{azure_conn_id}@container/prefix "
                        "(apache-airflow-providers-microsoft-azure); without one, s3:// uses boto's default "
                        "credential chain, not aws_default. Empty means file://$AIRFLOW_HOME/docjobs/results, "
                        "which only works when the triggerer and the workers share that disk. A submit checks "
                        "that it can write the store before it sends anything.",
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "s3://aws_default@my-bucket/docjobs/results",
                        "default": "",
                    }
                },
            }
        },
        "connection-types": [
            {
                "connection-type": conn_type,
                "hook-class-name": hook,
                "hook-name": name,
                "ui-field-behaviour": field_behaviour(secret, url),
                "conn-fields": conn_fields(conn_type),
            }
            for conn_type, hook, name, secret, url in VENDORS
        ],
    }
