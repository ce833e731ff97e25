"""Finovox result sensor, for document and case analyses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.links import FinovoxShareLink, share_link_url
from airflow_docjobs.sensors.base import DocJobSensor

if TYPE_CHECKING:
    from collections.abc import Sequence

# Finovox recommends 30 s for a document and 10 to 30 s for a case.
POKE_INTERVALS = {"document": 30.0, "case": 15.0}


class FinovoxResultSensor(DocJobSensor):
    """
    Wait for a Finovox analysis and return its result JSON.

    Finovox deletes results 60 minutes after processing; in deferrable mode the result is stored the moment it
    is fetched.

    :param retrieve_token: token returned by the submit operator (masked in logs), or a list of them.
    :param analysis: ``"document"`` or ``"case"``.
    :param finovox_conn_id: Finovox connection id.
    """

    hook_class = FinovoxHook
    reference_field = "retrieve_token"
    reference_params = ("analysis",)
    template_fields: Sequence[str] = ("conn_id", "retrieve_token", "analysis")
    operator_extra_links = (FinovoxShareLink(),)

    def __init__(
        self,
        *,
        retrieve_token: str | Sequence[str | None],
        analysis: str = "document",
        finovox_conn_id: str = FinovoxHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", POKE_INTERVALS.get(analysis, POKE_INTERVALS["document"]))
        super().__init__(conn_id=finovox_conn_id, **kwargs)
        self.retrieve_token = retrieve_token
        self.analysis = analysis

    # The share link of the result this task returned; None until then. Airflow evaluates extra links at the
    # end of every try, also one that deferred: read from here, the link never asks for an XCom that does
    # not exist yet (which Airflow would log as an "XCom not found" error).
    share_link: str | None = None

    def execute(self, context: Any) -> Any:
        """Wait as every sensor does, and keep the result's share link for the extra link."""
        self.share_link = None
        return self._keep_link(super().execute(context))

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        """Resume as every sensor does, and keep the result's share link for the extra link."""
        self.share_link = None
        return self._keep_link(super().execute_complete(context, event))

    def _keep_link(self, result: Any) -> Any:
        self.share_link = share_link_url(result)  # a batch's outcomes have none: one link per case
        return result
