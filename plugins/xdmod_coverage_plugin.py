"""Airflow plugin: the XDMoD coverage page (xdmod_usage.coverage_view), linked from the UI's navigation."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from xdmod_usage.coverage_view import URL_PREFIX, create_app


class XdmodCoveragePlugin(AirflowPlugin):
    """Mounts the coverage app on the API server and adds "XDMoD coverage" to the UI's navigation."""

    name = "xdmod_coverage"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "XDMoD coverage"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "XDMoD coverage",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "xdmod-coverage",
            "category": "browse",
        }
    ]
