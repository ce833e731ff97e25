"""Extra links: the viewer URL a vendor returns with a result."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom


def share_link_url(result: Any) -> str | None:
    """The viewer URL of a Finovox case result analysed with ``share_link``."""
    link = result.get("share_link") if isinstance(result, dict) else None
    url = link.get("url") if isinstance(link, dict) else link
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


class FinovoxShareLink(BaseOperatorLink):
    """The Finovox case viewer, on the sensor that fetched a case result with ``share_link``."""

    name = "Finovox case"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """
        The share link of the task's result, or ``""`` when it has none (in list mode, or not ended yet).

        Airflow 3 evaluates it on the worker at the end of each try, with the sensor that ran, which keeps the
        link; Airflow 2 in the webserver, which reads the returned result.
        """
        if "share_link" in vars(operator):
            return str(operator.share_link or "")
        return share_link_url(XCom.get_value(ti_key=ti_key, key="return_value")) or ""
