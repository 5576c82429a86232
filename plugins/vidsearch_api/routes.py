"""The routes of the search API (docs/api.md) and of its UI page, as module-level routers.

`router` holds the JSON API under `/api`; every route there requires an Airflow user with read access
(`dependencies.reader`), and every route that is not a GET also write access (`dependencies.write_actor`,
the acting user's name for the audit trail), both decided by Airflow's auth manager. `ui_router` holds
the page (`/`, a sign-in page instead for a browser without a session) and its static files, which need
read access too. Handlers get the search service through the dependencies of `vidsearch_api.dependencies`;
the propagation preview and apply run in the app's `BoundedWork` (`work.py`), off the request threads.
`create_app` includes both routers.
"""

from __future__ import annotations

import html
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool
from vidsearch.errors import InputError, NotFoundError
from vidsearch.search import MAX_K, MAX_LABEL_NAME, MAX_QUERY_IMAGE_BYTES, MAX_TEXT, MAX_TOLERANCE_S, SearchService
from vidsearch.stores import storage

from vidsearch_api.dependencies import (
    bearer_scheme,
    current_user,
    is_authorized,
    reader,
    search_service,
    write_actor,
)
from vidsearch_api.ranges import Unsatisfiable, parse_range
from vidsearch_api.schemas import (
    Collection,
    Event,
    FramePage,
    ImageResults,
    LabelBody,
    LabelCount,
    MomentResults,
    Object,
    Preview,
    Propagated,
    Propagation,
    PropagationBody,
    Removed,
    SimilarResults,
    TextResults,
    Track,
    TranscriptResults,
    UnlabelBody,
    Updated,
    Video,
    VideoTranscript,
)
from vidsearch_api.work import BoundedWork

STATIC_DIR = Path(__file__).resolve().with_name("static")
JPEG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/jpeg": {}}}}
VIDEO: dict[int | str, dict[str, Any]] = {
    200: {"description": "the whole stored source video", "content": {"video/*": {}}},
    206: {"description": "one byte range of it (`Range: bytes=a-b`, `a-` or `-n`)", "content": {"video/*": {}}},
    416: {"description": "no requested range overlaps the video (`Content-Range: bytes */size`)"},
}
VIDEO_CHUNK = 256 * 1024  # bytes per read from storage (and per write to the client)

Service = Annotated[SearchService, Depends(search_service)]
Actor = Annotated[str, Depends(write_actor)]


def propagation_work(request: Request) -> BoundedWork:
    """The app's bounded executor for propagation (`app.state.propagation_work`, made by `create_app`)."""
    work: BoundedWork = request.app.state.propagation_work
    return work


Work = Annotated[BoundedWork, Depends(propagation_work)]

router = APIRouter(prefix="/api", dependencies=[Depends(reader)])
ui_router = APIRouter()


def _quote(value: Any) -> str:
    return urllib.parse.quote(str(value), safe="")


def _root_of(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _with_urls(request: Request, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
    crop = f"{_root_of(request)}/api/collections/{_quote(collection)}/objects/{_quote(obj['object_id'])}/crop"
    return {**obj, "crop_url": crop}


def _frame_url(request: Request, collection: str, video_id: str, frame: dict[str, Any]) -> str:
    """The image route of a frame ({segment_index, frame_index, ...}) of a video."""
    base = f"{_root_of(request)}/api/collections/{_quote(collection)}/videos/{_quote(video_id)}/frames"
    return f"{base}/{frame['segment_index']}/{frame['frame_index']}/image"


def _jpeg(data: bytes) -> Response:
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


# -- browse ------------------------------------------------------------------------------
@router.get("/collections", response_model=list[Collection])
def list_collections(svc: Service) -> Any:
    return svc.collections()


@router.get("/collections/{c}/videos", response_model=list[Video])
def list_videos(request: Request, c: str, svc: Service) -> Any:
    base = f"{_root_of(request)}/api/collections/{_quote(c)}/videos"
    return [{**v, "video_url": f"{base}/{_quote(v['video_id'])}/video"} for v in svc.videos(c)]


@router.get("/collections/{c}/videos/{video_id}/video", response_class=Response, responses=VIDEO)
def video_file(request: Request, c: str, video_id: str, svc: Service) -> Response:
    """The stored source video, streamed from object storage, with byte ranges (`ranges.py`): what an
    HTML5 `<video>` element plays and seeks in. The body is read in chunks, never held in memory."""
    video = svc.video_source(c, video_id)
    size = video.size
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": video.etag,
        "Cache-Control": "private, max-age=3600",
        "Content-Disposition": f'inline; filename="{video.filename}"',
        "X-Content-Type-Options": "nosniff",  # never sniffed into something the origin would run
        "Content-Security-Policy": "default-src 'none'; sandbox",  # opened on its own: inert
    }
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if wanted is not None and if_range is not None and if_range.strip() != video.etag:
        wanted = None  # the client's copy is another version: send it all (RFC 9110 §13.1.5)
    try:
        span = parse_range(wanted, size)
    except Unsatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    if span is None:
        start, end, status = 0, size - 1, 200
    else:
        (start, end), status = span, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = end - start + 1
    headers["Content-Length"] = str(length)
    body = storage.iter_range(video.uri, start, length, VIDEO_CHUNK)
    return StreamingResponse(body, status_code=status, media_type=video.media_type, headers=headers)


@router.get("/collections/{c}/videos/{video_id}/tracks", response_model=list[Track])
def list_tracks(c: str, video_id: str, svc: Service) -> Any:
    """The video's tracks in time order with their labels: the UI's timeline strip."""
    return svc.video_tracks(c, video_id)


@router.get("/collections/{c}/videos/{video_id}/frames", response_model=FramePage)
def list_frames(
    request: Request,
    c: str,
    video_id: str,
    svc: Service,
    offset: int = Query(0, ge=0),
    limit: int = Query(200, ge=1, le=1000),
) -> Any:
    page = svc.frames(c, video_id, offset, limit)
    for frame in page["frames"]:
        frame["image_url"] = _frame_url(request, c, video_id, frame)
        frame["objects"] = [_with_urls(request, c, o) for o in frame["objects"]]
    return page


@router.get(
    "/collections/{c}/videos/{video_id}/frames/{segment_index}/{frame_index}/image",
    response_class=Response,
    responses=JPEG,
)
def frame_image(c: str, video_id: str, segment_index: int, frame_index: int, svc: Service) -> Response:
    return _jpeg(svc.frame_image(c, video_id, segment_index, frame_index))


@router.get("/collections/{c}/objects/{object_id}", response_model=Object)
def get_object(request: Request, c: str, object_id: str, svc: Service) -> Any:
    return _with_urls(request, c, svc.get_object(c, object_id))


@router.get("/collections/{c}/objects/{object_id}/crop", response_class=Response, responses=JPEG)
def object_crop(c: str, object_id: str, svc: Service) -> Response:
    return _jpeg(svc.crop(c, object_id))


# -- search ------------------------------------------------------------------------------
def search_options(
    k: int = Query(20, ge=1, le=MAX_K),
    min_similarity: float = Query(0.0, ge=-1, le=1),
    video_id: str | None = Query(None, max_length=200),
    detector_label: str | None = Query(None, max_length=200),
    label: str | None = Query(None, min_length=1, max_length=MAX_LABEL_NAME),
    group: Literal["object", "track"] = Query(
        "object", description="object: one result per object; track: one per track (a moment), by its best member"
    ),
    from_s: float | None = Query(None, ge=0, description="only objects seen at or after this time (s)"),
    to_s: float | None = Query(None, ge=0, description="only objects seen at or before this time (s)"),
) -> dict[str, Any]:
    """The query parameters every search takes, as keyword arguments of the search service
    (empty video and detector-label filters mean no filter)."""
    return dict(
        k=k,
        min_similarity=min_similarity,
        video_id=video_id or None,
        detector_label=detector_label or None,
        label=label,
        group=group,
        from_s=from_s,
        to_s=to_s,
    )


SearchOptions = Annotated[dict[str, Any], Depends(search_options)]


@router.get("/collections/{c}/objects/{object_id}/similar", response_model=SimilarResults)
def similar(request: Request, c: str, object_id: str, svc: Service, options: SearchOptions) -> Any:
    out = svc.similar(c, object_id, **options)
    return _search_response(request, c, _with_urls(request, c, out["query"]), out["results"], options["group"])


@router.get("/collections/{c}/search/text", response_model=TextResults)
def text_search(
    request: Request,
    c: str,
    q: Annotated[str, Query(min_length=1, max_length=MAX_TEXT)],
    svc: Service,
    options: SearchOptions,
) -> Any:
    out = svc.text_search(c, q, **options)
    return _search_response(request, c, out["query"], out["results"], options["group"])


# A search, not a write: POST only because the query is an uploaded file (read access, like GETs).
@router.post("/collections/{c}/search/image", response_model=ImageResults)
def image_search(
    request: Request,
    c: str,
    svc: Service,
    options: SearchOptions,
    image: Annotated[UploadFile, File(description="the query image: JPEG, PNG or WebP, at most 10 MiB")],
    box: Annotated[str | None, Form(description="x0,y0,x1,y1: search with this part of the image")] = None,
) -> Any:
    data = image.file.read(MAX_QUERY_IMAGE_BYTES + 1)
    coords = None
    if box:
        try:
            coords = [float(v) for v in box.split(",")]
        except ValueError as exc:
            raise InputError("box must be four numbers: x0,y0,x1,y1") from exc
    out = svc.image_search(c, data, box=coords, **options)
    return _search_response(request, c, out["query"], out["results"], options["group"])


def _search_response(request: Request, c: str, query: Any, results: list[dict[str, Any]], group: str) -> dict:
    """A search's answer: its query, how results are grouped, and the results with their URLs."""
    return {"query": query, "group": group, "results": _results_with_urls(request, c, results, group)}


def _results_with_urls(request: Request, c: str, results: list[dict[str, Any]], group: str) -> list[dict[str, Any]]:
    if group == "track":
        return [{**t, "best": _with_urls(request, c, t["best"])} for t in results]
    return [_with_urls(request, c, o) for o in results]


# -- transcripts -------------------------------------------------------------------------
def _with_frame_url(request: Request, c: str, video_id: str, item: dict[str, Any]) -> dict[str, Any]:
    frame = item.get("frame")
    if frame is None:
        return item
    return {**item, "frame": {**frame, "image_url": _frame_url(request, c, video_id, frame)}}


@router.get("/collections/{c}/search/transcript", response_model=TranscriptResults)
def transcript_search(
    request: Request,
    c: str,
    q: Annotated[str, Query(min_length=1, max_length=MAX_TEXT)],
    svc: Service,
    mode: Literal["keyword", "hybrid"] = Query("keyword", description="keyword: BM25; hybrid: BM25 + text embedding"),
    k: int = Query(20, ge=1, le=MAX_K),
    alpha: float = Query(0.5, ge=0, le=1, description="hybrid: weight of the vector side (0 keyword .. 1 vector)"),
    video_id: str | None = Query(None, max_length=200),
) -> Any:
    """Transcript moments best matching `q`, each with its text highlighted and its nearest frame."""
    found = svc.transcript_search(c, q, mode=mode, k=k, alpha=alpha, video_id=video_id or None)
    return {"query": q, "mode": mode, "results": [_with_frame_url(request, c, m["video_id"], m) for m in found]}


@router.get("/collections/{c}/search/moments", response_model=MomentResults)
def said_while_visible(
    request: Request,
    c: str,
    said: Annotated[str, Query(min_length=1, max_length=MAX_TEXT, description="words said (web-search syntax)")],
    svc: Service,
    visible_label: str | None = Query(None, min_length=1, max_length=MAX_LABEL_NAME, description="a detector label"),
    label: str | None = Query(None, min_length=1, max_length=MAX_LABEL_NAME, description="a label name (positive)"),
    video_id: str | None = Query(None, max_length=200),
    tolerance_s: float | None = Query(
        None,
        ge=0,
        le=MAX_TOLERANCE_S,
        description="padding of the visible ranges (default: half the sampling interval)",
    ),
) -> Any:
    """ "Said X while Y is visible": the times a chunk matching `said` overlaps what is named visible."""
    out = svc.moments(
        c, said, visible_label=visible_label, label=label, video_id=video_id or None, tolerance_s=tolerance_s
    )
    for video in out["videos"]:
        video["moments"] = [_with_frame_url(request, c, video["video_id"], m) for m in video["moments"]]
    return {"said": said, "visible_label": visible_label, "label": label, **out}


@router.get("/collections/{c}/videos/{video_id}/transcript", response_model=VideoTranscript)
def video_transcript(
    request: Request,
    c: str,
    video_id: str,
    svc: Service,
    from_s: float | None = Query(None, ge=0, description="only chunks overlapping this time (s) or later"),
    to_s: float | None = Query(None, ge=0, description="only chunks overlapping this time (s) or earlier"),
) -> Any:
    """The video's transcript in time order, and each segment's audio state."""
    out = svc.video_transcript(c, video_id, from_s, to_s)
    out["chunks"] = [_with_frame_url(request, c, video_id, ch) for ch in out["chunks"]]
    return out


# -- labels ------------------------------------------------------------------------------
@router.get("/collections/{c}/labels", response_model=list[LabelCount])
def label_counts(c: str, svc: Service) -> Any:
    return svc.label_counts(c)


@router.post("/collections/{c}/labels", response_model=Updated)
def add_labels(c: str, body: LabelBody, svc: Service, actor: Actor) -> Any:
    return {"updated": svc.add_labels(c, body.object_ids, body.name, body.polarity, actor, track_ids=body.track_ids)}


@router.delete("/collections/{c}/labels", response_model=Removed)
def remove_labels(c: str, svc: Service, actor: Actor, body: UnlabelBody = Body(...)) -> Any:
    return {"removed": svc.remove_labels(c, body.object_ids, body.name, actor, track_ids=body.track_ids)}


# Label names may hold any character, '/' included: the name segment is a `path` parameter.
# The preview writes nothing, but it is as costly as applying and only labellers need it: write access.
@router.post(
    "/collections/{c}/labels/{name:path}/propagation/preview",
    response_model=Preview,
    dependencies=[Depends(write_actor)],
)
async def propagation_preview(c: str, name: str, body: PropagationBody, svc: Service, work: Work) -> Any:
    return await work.run(svc.propagation_preview, c, name, body.threshold, body.limit, body.unit)


@router.post("/collections/{c}/labels/{name:path}/propagation", response_model=Propagated)
async def propagate(c: str, name: str, body: PropagationBody, svc: Service, actor: Actor, work: Work) -> Any:
    return await work.run(svc.propagate, c, name, body.threshold, body.limit, actor, body.unit)


@router.get("/collections/{c}/labels/{name:path}/propagations", response_model=list[Propagation])
def propagations(c: str, name: str, svc: Service) -> Any:
    return svc.propagations(c, name)


@router.delete("/collections/{c}/propagations/{propagation_id}", response_model=Removed)
def undo_propagation(c: str, propagation_id: str, svc: Service, actor: Actor) -> Any:
    return {"removed": svc.undo_propagation(c, propagation_id, actor)}


@router.get("/collections/{c}/labels/{name:path}/events", response_model=list[Event])
def label_events(c: str, name: str, svc: Service, limit: int = Query(100, ge=1, le=1000)) -> Any:
    return svc.events(c, name, limit)


# -- the UI page ---------------------------------------------------------------------------
@ui_router.get("/", include_in_schema=False)
async def index(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> Any:
    try:
        user = await current_user(request, bearer, None)
    except HTTPException as exc:
        if exc.status_code not in (401, 403):
            raise
        # Still 401/403, but a page a person can act on: sign in to Airflow and come back here.
        return HTMLResponse(_login_page(_root_of(request) + "/", str(exc.detail)), status_code=exc.status_code)
    if not await run_in_threadpool(is_authorized, user, "read"):
        reason = "your Airflow account has no read access to the DAG 'video_ingest'; ask an Airflow admin for a role"
        return HTMLResponse(_login_page(_root_of(request) + "/", reason, signed_in=True), status_code=403)
    page = STATIC_DIR / "index.html"
    if not page.is_file():
        raise NotFoundError("the UI page is not installed (plugins/vidsearch_api/static/index.html)")
    return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})


@ui_router.get("/static/{path:path}", dependencies=[Depends(reader)], include_in_schema=False)
def static(path: str) -> Any:
    root = STATIC_DIR.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise NotFoundError(f"no static file {path[:80]!r}")
    return FileResponse(target, headers={"Cache-Control": "no-cache"})


def _login_url(next_url: str) -> str:
    """The auth manager's login page, coming back to `next_url` (SimpleAuthManager: /auth/login?next=...)."""
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # noqa: BLE001 - an auth manager without a login page: the Airflow default
        return "/auth/login?" + urllib.parse.urlencode({"next": next_url})


def _login_page(next_url: str, reason: str, signed_in: bool = False) -> str:
    """The answer to an unauthenticated (or unauthorised) browser at `/`: no data, a reason and a sign-in
    link. Nothing is loaded from another origin."""
    link = html.escape(_login_url(next_url), quote=True)
    state = "Your Airflow account may not use object search" if signed_in else "You are not signed in to Airflow"
    action = "Log in to Airflow as another user" if signed_in else "Log in to Airflow"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Object search - sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; margin: 3rem auto; max-width: 36rem">
<h1>Object search</h1>
<div id="auth-message" role="alert"><p>{state} ({html.escape(reason)}).</p>
<p><a id="login-link" href="{link}">{action}</a>, then come back to this page.</p></div>
</body></html>
"""
