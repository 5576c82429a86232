"""The search and labeling API (docs/api.md) as a FastAPI app.

`create_app(services_factory)` builds the app; the Airflow plugin (`plugin.py`) mounts it in the Airflow
API server under `/vidsearch`, and `python -m vidsearch_api` serves it on its own for development. The
factory returns a `vidsearch.pipeline.Services` (or a ready `SearchService`) and is called once, on
the first request, so importing this module connects to nothing.

Authentication is Airflow's own: every route depends on `airflow.api_fastapi.core_api.security.get_user`
(a JWT as `Authorization: Bearer ...`, or the `_token` cookie the Airflow UI sets), validated by the
configured auth manager, so tokens from the Airflow API server work here too. Only the OpenAPI schema
and its docs pages are public.
"""

from __future__ import annotations

import html
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from vidsearch.errors import InputError, ModelUnavailableError, TransientError
from vidsearch.search import MAX_K, MAX_LABEL_IDS, MAX_PROPAGATION_LIMIT, NotFoundError, SearchService

STATIC_DIR = Path(__file__).resolve().with_name("static")
COOKIE_NAME = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN

# ----------------------------------------------------------------------------------------- auth

_bearer = HTTPBearer(auto_error=False, description="A JWT from the Airflow API server's POST /auth/token")
_cookie = APIKeyCookie(name=COOKIE_NAME, auto_error=False, description="The JWT cookie the Airflow UI sets")
_auth_lock = threading.Lock()


def _ensure_auth_manager() -> None:
    """Inside the Airflow API server the auth manager exists; standalone (and in tests) create it once."""
    from airflow.api_fastapi.app import get_auth_manager, init_auth_manager

    try:
        get_auth_manager()
    except RuntimeError:
        with _auth_lock:
            try:
                get_auth_manager()
            except RuntimeError:
                init_auth_manager()


async def current_user(
    request: Request,
    bearer: Optional[HTTPAuthorizationCredentials] = Depends(_bearer),
    _cookie_token: Optional[str] = Depends(_cookie),  # documents the cookie in the OpenAPI schema
) -> Any:
    """The authenticated Airflow user (401 without credentials, 403 for an invalid token), exactly as
    Airflow's core API decides it."""
    from airflow.api_fastapi.core_api.security import get_user

    _ensure_auth_manager()
    return await get_user(request, None, bearer)


def _actor(user: Any) -> str:
    try:
        return str(user.get_name())
    except Exception:  # noqa: BLE001 - an auth manager's user without a name still acts
        return str(getattr(user, "username", None) or "unknown")


# ---------------------------------------------------------------------------------------- models


class Label(BaseModel):
    name: str
    polarity: Literal["positive", "negative"]
    source: Literal["human", "propagated"]
    score: Optional[float] = None
    propagation_id: Optional[str] = None


class Object(BaseModel):
    object_id: str
    video_id: str
    segment_index: int
    frame_index: int
    pts_s: float
    box: list[float] = Field(description="[x0, y0, x1, y1] in display pixels")
    detector_label: str
    score: float
    crop_url: str
    labels: list[Label]


class ScoredObject(Object):
    similarity: float = Field(description="cosine similarity to the query, -1..1")


class Collection(BaseModel):
    name: str
    embedder_model: str
    embedding_dim: int
    videos: int
    objects: int


class Video(BaseModel):
    video_id: str
    source: str
    state: str
    duration_s: Optional[float]
    width: Optional[int]
    height: Optional[int]
    frame_rate: Optional[float]
    segments: int
    segments_done: int
    segments_quarantined: int
    frames: int
    objects: int
    last_run_id: Optional[str]


class Frame(BaseModel):
    segment_index: int
    frame_index: int
    pts_s: float
    width: int
    height: int
    image_url: str
    objects: list[Object]


class FramePage(BaseModel):
    total: int
    frames: list[Frame]


class SimilarResults(BaseModel):
    query: Object
    results: list[ScoredObject]


class TextResults(BaseModel):
    query: str
    results: list[ScoredObject]


class LabelCount(BaseModel):
    name: str
    positive: int = Field(description="human positive labels")
    negative: int = Field(description="human negative labels")
    propagated: int = Field(description="propagated (positive) labels not overridden by a human")


class LabelBody(BaseModel):
    object_ids: list[str] = Field(min_length=1, max_length=MAX_LABEL_IDS)
    name: str = Field(min_length=1, max_length=200)
    polarity: Literal["positive", "negative"]


class UnlabelBody(BaseModel):
    object_ids: list[str] = Field(min_length=1, max_length=MAX_LABEL_IDS)
    name: str = Field(min_length=1, max_length=200)


class PropagationBody(BaseModel):
    threshold: float = Field(ge=0, le=1)
    limit: int = Field(1000, ge=1, le=MAX_PROPAGATION_LIMIT)


class Candidate(BaseModel):
    object_id: str
    score: float


class Preview(BaseModel):
    count: int
    candidates: list[Candidate]


class Propagated(BaseModel):
    propagation_id: str
    count: int


class Propagation(BaseModel):
    propagation_id: str
    sources: list[str]
    negatives: list[str]
    model: str
    threshold: float
    count: int
    created_at: Any
    created_by: str
    undone_at: Any = None


class Event(BaseModel):
    id: int
    object_id: Optional[str]
    name: str
    action: Literal["add", "remove", "propagate", "undo"]
    polarity: Optional[str]
    source: Optional[str]
    propagation_id: Optional[str]
    actor: str
    at: Any


class Updated(BaseModel):
    updated: int


class Removed(BaseModel):
    removed: int


# ------------------------------------------------------------------------------------------- app


class _Lazy:
    """The search service, built by the factory on first use (a failed build is retried next time)."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._value: Optional[SearchService] = None
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


def _quote(value: Any) -> str:
    return urllib.parse.quote(str(value), safe="")


def create_app(services_factory: Callable[[], Any]) -> FastAPI:
    """The API of docs/api.md over the services the factory returns (called once, lazily)."""
    lazy = _Lazy(services_factory)
    app = FastAPI(
        title="vidsearch",
        version="1",
        description=(
            "Search and labeling of detected video objects. Every route requires Airflow authentication: "
            "a JWT from the Airflow API server (`POST /auth/token`) as `Authorization: Bearer ...`, or the "
            "`_token` cookie of the Airflow UI."
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.search = lazy

    def svc() -> SearchService:
        return lazy.get()

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

    def root_of(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def with_urls(request: Request, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
        crop = f"{root_of(request)}/api/collections/{_quote(collection)}/objects/{_quote(obj['object_id'])}/crop"
        return {**obj, "crop_url": crop}

    auth = [Depends(current_user)]
    api = APIRouter(prefix="/api", dependencies=auth)
    User = Depends(current_user)

    # -- browse --------------------------------------------------------------------------
    @api.get("/collections", response_model=list[Collection])
    def list_collections() -> Any:
        return svc().collections()

    @api.get("/collections/{c}/videos", response_model=list[Video])
    def list_videos(c: str) -> Any:
        return svc().videos(c)

    @api.get("/collections/{c}/videos/{video_id}/frames", response_model=FramePage)
    def list_frames(
        request: Request,
        c: str,
        video_id: str,
        offset: int = Query(0, ge=0),
        limit: int = Query(200, ge=1, le=1000),
    ) -> Any:
        page = svc().frames(c, video_id, offset, limit)
        base = f"{root_of(request)}/api/collections/{_quote(c)}/videos/{_quote(video_id)}/frames"
        for frame in page["frames"]:
            frame["image_url"] = f"{base}/{frame['segment_index']}/{frame['frame_index']}/image"
            frame["objects"] = [with_urls(request, c, o) for o in frame["objects"]]
        return page

    @api.get(
        "/collections/{c}/videos/{video_id}/frames/{segment_index}/{frame_index}/image",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def frame_image(c: str, video_id: str, segment_index: int, frame_index: int) -> Response:
        data = svc().frame_image(c, video_id, segment_index, frame_index)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    @api.get("/collections/{c}/objects/{object_id}", response_model=Object)
    def get_object(request: Request, c: str, object_id: str) -> Any:
        return with_urls(request, c, svc().get_object(c, object_id))

    @api.get(
        "/collections/{c}/objects/{object_id}/crop",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def object_crop(c: str, object_id: str) -> Response:
        data = svc().crop(c, object_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    # -- search --------------------------------------------------------------------------
    def search_options(
        k: int = Query(20, ge=1, le=MAX_K),
        min_similarity: float = Query(0.0, ge=-1, le=1),
        video_id: Optional[str] = Query(None, max_length=200),
        detector_label: Optional[str] = Query(None, max_length=200),
        label: Optional[str] = Query(None, min_length=1, max_length=200),
    ) -> dict[str, Any]:
        """The query parameters every search takes, as keyword arguments of the search service
        (empty video and detector-label filters mean no filter)."""
        return dict(
            k=k, min_similarity=min_similarity, video_id=video_id or None,
            detector_label=detector_label or None, label=label,
        )

    @api.get("/collections/{c}/objects/{object_id}/similar", response_model=SimilarResults)
    def similar(
        request: Request, c: str, object_id: str, options: dict[str, Any] = Depends(search_options)
    ) -> Any:
        out = svc().similar(c, object_id, **options)
        return {
            "query": with_urls(request, c, out["query"]),
            "results": [with_urls(request, c, o) for o in out["results"]],
        }

    @api.get("/collections/{c}/search/text", response_model=TextResults)
    def text_search(
        request: Request,
        c: str,
        q: str = Query(..., min_length=1, max_length=500),
        options: dict[str, Any] = Depends(search_options),
    ) -> Any:
        out = svc().text_search(c, q, **options)
        return {"query": out["query"], "results": [with_urls(request, c, o) for o in out["results"]]}

    # -- labels --------------------------------------------------------------------------
    @api.get("/collections/{c}/labels", response_model=list[LabelCount])
    def label_counts(c: str) -> Any:
        return svc().label_counts(c)

    @api.post("/collections/{c}/labels", response_model=Updated)
    def add_labels(c: str, body: LabelBody, user: Any = User) -> Any:
        return {"updated": svc().add_labels(c, body.object_ids, body.name, body.polarity, _actor(user))}

    @api.delete("/collections/{c}/labels", response_model=Removed)
    def remove_labels(c: str, body: UnlabelBody = Body(...), user: Any = User) -> Any:
        return {"removed": svc().remove_labels(c, body.object_ids, body.name, _actor(user))}

    # Label names may hold any character, '/' included: the name segment is a `path` parameter.
    @api.post("/collections/{c}/labels/{name:path}/propagation/preview", response_model=Preview)
    def propagation_preview(c: str, name: str, body: PropagationBody) -> Any:
        return svc().propagation_preview(c, name, body.threshold, body.limit)

    @api.post("/collections/{c}/labels/{name:path}/propagation", response_model=Propagated)
    def propagate(c: str, name: str, body: PropagationBody, user: Any = User) -> Any:
        return svc().propagate(c, name, body.threshold, body.limit, _actor(user))

    @api.get("/collections/{c}/labels/{name:path}/propagations", response_model=list[Propagation])
    def propagations(c: str, name: str) -> Any:
        return svc().propagations(c, name)

    @api.delete("/collections/{c}/propagations/{propagation_id}", response_model=Removed)
    def undo_propagation(c: str, propagation_id: str, user: Any = User) -> Any:
        return {"removed": svc().undo_propagation(c, propagation_id, _actor(user))}

    @api.get("/collections/{c}/labels/{name:path}/events", response_model=list[Event])
    def label_events(c: str, name: str, limit: int = Query(100, ge=1, le=1000)) -> Any:
        return svc().events(c, name, limit)

    app.include_router(api)

    # -- the UI page -----------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index(
        request: Request, bearer: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)
    ) -> Any:
        try:
            await current_user(request, bearer, None)
        except HTTPException as exc:
            if exc.status_code not in (401, 403):
                raise
            # Still 401/403, but a page a person can act on: sign in to Airflow and come back here.
            return HTMLResponse(_login_page(root_of(request) + "/", str(exc.detail)), status_code=exc.status_code)
        page = STATIC_DIR / "index.html"
        if not page.is_file():
            raise NotFoundError("the UI page is not installed (plugins/vidsearch_api/static/index.html)")
        return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/static/{path:path}", dependencies=auth, include_in_schema=False)
    def static(path: str) -> Any:
        root = STATIC_DIR.resolve()
        target = (root / path).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise NotFoundError(f"no static file {path[:80]!r}")
        return FileResponse(target, headers={"Cache-Control": "no-cache"})

    return app


def _login_url(next_url: str) -> str:
    """The auth manager's login page, coming back to `next_url` (SimpleAuthManager: /auth/login?next=...)."""
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # noqa: BLE001 - an auth manager without a login page: the Airflow default
        return "/auth/login?" + urllib.parse.urlencode({"next": next_url})


def _login_page(next_url: str, reason: str) -> str:
    """The answer to an unauthenticated browser at `/`: no data, a reason and a sign-in link."""
    link = html.escape(_login_url(next_url), quote=True)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Object search - sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; margin: 3rem auto; max-width: 36rem">
<h1>Object search</h1>
<div id="auth-message" role="alert"><p>You are not signed in to Airflow ({html.escape(reason)}).</p>
<p><a id="login-link" href="{link}">Log in to Airflow</a>, then come back to this page.</p></div>
</body></html>
"""


def _jsonable(value: Any) -> Any:
    """Validation errors may carry exceptions or bytes in `ctx`/`input`: keep them JSON-safe."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)

