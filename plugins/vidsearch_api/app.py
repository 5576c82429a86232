"""The search and labeling API (docs/api.md) as a FastAPI app.

`create_app(services_factory)` builds the app; the Airflow plugin (`plugin.py`) mounts it in the Airflow
API server under `/vidsearch`, and `python -m vidsearch_api` serves it on its own for development. The
factory returns a `vidsearch.pipeline.Services` (or a ready `SearchService`) and is called once, on
the first request, so importing this module connects to nothing.

The routes are in `routes.py`, their bodies in `schemas.py` and what they depend on (the user, the read
and write authorisation, the search service) in `dependencies.py`. Authentication is Airflow's own: every
route depends on `airflow.api_fastapi.core_api.security.get_user` (a JWT as `Authorization: Bearer ...`,
or the `_token` cookie the Airflow UI sets), validated by the configured auth manager, so tokens from the
Airflow API server work here too; authorisation is the auth manager's as well (`dependencies.reader`,
`dependencies.write_actor`: DAG access on `video_ingest`). Only the OpenAPI schema is public.

No interactive docs page (`/docs`, `/redoc`): FastAPI's loads swagger-ui from a CDN, which would run a
third-party script on the Airflow origin, and no swagger-ui assets are installed to serve locally. The
schema (`/openapi.json`) is enough for any OpenAPI viewer or client generator (docs/security.md §1).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from vidsearch.errors import InputError, ModelUnavailableError, NotFoundError, TransientError
from vidsearch.search import SearchService

from vidsearch_api.export_routes import router as export_router
from vidsearch_api.routes import router, ui_router
from vidsearch_api.work import BoundedWork


class _Lazy:
    """The search service, built by the factory on first use (a failed build is retried next time)."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._value: SearchService | None = None
        self._lock = threading.Lock()

    def get(self) -> SearchService:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    made = self._factory()
                    self._value = made if isinstance(made, SearchService) else SearchService.from_services(made)
        return self._value


def airflow_search_service() -> SearchService:
    """The search service over the Airflow connections (`vidsearch_postgres`, `weaviate_default`, or the
    ids in VIDSEARCH_POSTGRES_CONN_ID / VIDSEARCH_WEAVIATE_CONN_ID) and the model settings of the
    environment. The catalog schema is migrated on first use, as in the ingest tasks."""
    import os

    from vidsearch.models import modelstore
    from vidsearch_airflow import services as airflow_services

    return SearchService(
        airflow_services.catalog(),
        airflow_services.object_index,  # connects to Weaviate on first use
        tiny_models=modelstore.is_tiny_mode(),
        model_cache=os.environ.get("VIDSEARCH_MODEL_CACHE"),
    )


def create_app(services_factory: Callable[[], Any]) -> FastAPI:
    """The API of docs/api.md over the services the factory returns (called once, lazily)."""
    app = FastAPI(
        title="vidsearch",
        version="1",
        description=(
            "Search and labeling of detected video objects. Every route requires Airflow authentication: "
            "a JWT from the Airflow API server (`POST /auth/token`) as `Authorization: Bearer ...`, or the "
            "`_token` cookie of the Airflow UI. Reads need read access to the DAG `video_ingest` (VIEWER), "
            "writes (labels, propagation) edit access to it (USER, OP, ADMIN)."
        ),
        openapi_url="/openapi.json",
        docs_url=None,  # swagger-ui would come from a CDN: no third-party script on the Airflow origin
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.search = _Lazy(services_factory)  # what `dependencies.search_service` hands the routes
    app.state.propagation_work = BoundedWork()  # propagation runs here, off the request threads

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(InputError)
    async def _invalid(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(ModelUnavailableError)
    async def _no_model(request: Request, exc: ModelUnavailableError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(TransientError)
    async def _transient(request: Request, exc: TransientError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable reason as `detail` (what a UI shows), the structured errors beside it.
        errors = exc.errors()
        reasons = []
        for err in errors:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            reasons.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
        return JSONResponse(
            {"detail": "; ".join(reasons) or "invalid request", "errors": _jsonable(errors)}, status_code=422
        )

    app.include_router(router)
    app.include_router(export_router)
    app.include_router(ui_router)
    return app


def _jsonable(value: Any) -> Any:
    """Validation errors may carry exceptions or bytes in `ctx`/`input`: keep them JSON-safe."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
