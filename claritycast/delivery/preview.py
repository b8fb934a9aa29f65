"""A connection's report drawn now, exactly as it would be sent, and sent nowhere.

For ``claritycast preview``, the API's preview and the page that shows one
before a connection is saved: the same builder as the render stage, the same
data check (a period whose data is missing is marked, as it would be).
"""

from __future__ import annotations

from datetime import date

from claritycast.reports.builder import build_report, missing_data
from claritycast.reports.summariser import Summariser
from claritycast.settings import Settings
from claritycast.store.core import Store
from models import catalogue
from models.delivery import Connection
from models.report import Report


async def preview_report(
    store: Store, connection: Connection, period: date, settings: Settings
) -> tuple[Report, str]:
    """The report for ``period`` and where its summary came from (``ai`` or ``plain``)."""
    metric = catalogue.get(connection.metric_id)
    missing = await missing_data(store, connection.project_id, metric, period)
    summariser = Summariser.from_settings(settings) if connection.ai_summary else None
    try:
        return await build_report(store, connection, period, missing=missing, summariser=summariser)
    finally:
        if summariser is not None:
            await summariser.aclose()
