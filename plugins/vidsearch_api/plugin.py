"""Registers the vidsearch search API and UI with the Airflow 3 API server.

The FastAPI app is mounted at `/vidsearch` (UI at `/vidsearch/`, API at `/vidsearch/api/...`, schema at
`/vidsearch/openapi.json`), and an "Object search" entry in the Airflow navigation shows the UI inside
the Airflow UI (an external view with a `url_route` is rendered in an iframe; the browser sends the
Airflow `_token` cookie along, which is what authenticates the page and its API calls).

Nothing connects at import time: the services (catalog and Weaviate from the Airflow connections
`vidsearch_postgres` / `weaviate_default`) are built on the first request.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from vidsearch_api.app import airflow_search_service, create_app

app = create_app(airflow_search_service)


class VidsearchPlugin(AirflowPlugin):
    name = "vidsearch"
    fastapi_apps = [{"app": app, "url_prefix": "/vidsearch", "name": "vidsearch"}]
    external_views = [
        {
            "name": "Object search",
            # Relative (no leading slash): resolved against the Airflow UI's base URL, so the link also
            # works when Airflow is served under a path prefix; with the default base it is /vidsearch/.
            "href": "vidsearch/",
            "url_route": "object-search",
            "destination": "nav",
            "category": "browse",
        }
    ]
