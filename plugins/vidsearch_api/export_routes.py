"""The export routes of the search API (docs/api.md "Export", docs/export.md): COCO and MOT downloads.

`router` holds `GET /api/collections/{c}/export/coco` (JSON, or a zip with the frame images when
`images=true`) and `GET /api/collections/{c}/export/mot` (a zip); `create_app` includes it. Like every
route under `/api` they need read access (`dependencies.reader`). The export is checked (404, 422)
before the response starts, then streamed (`vidsearch.export`) as an attachment. At most
`VIDSEARCH_EXPORT_CONCURRENCY` exports (default 2) stream at once per app; one more is answered 503
with `Retry-After` (`TransientError`).

Tracks: the MOT route reads them from the `track_source` dependency and the COCO route's `track_id`
from `track_of`: the objects' stored tracks (`objects.track_id`, stitched across segments at
finalize; an object indexed before tracks is a track of its own).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from vidsearch import export
from vidsearch.errors import TransientError
from vidsearch.search import MAX_LABEL_NAME, SearchService

from vidsearch_api.dependencies import reader, search_service

CONCURRENCY_ENV = "VIDSEARCH_EXPORT_CONCURRENCY"
DEFAULT_CONCURRENCY = 2

router = APIRouter(prefix="/api", dependencies=[Depends(reader)])
Service = Annotated[SearchService, Depends(search_service)]

ZIP: dict[int | str, dict[str, Any]] = {200: {"content": {"application/zip": {}}}}
JSON_OR_ZIP: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {}, "application/zip": {}}}}


# -- tracks --------------------------------------------------------------------------------
def track_of() -> export.TrackOf | None:
    """An object row -> its track id (the COCO annotations' `track_id`)."""
    return export.stored_track


def track_source(svc: Service, key: Annotated[export.TrackOf | None, Depends(track_of)]) -> export.TrackSource:
    """Where the MOT export reads a video's tracks: the objects grouped by `track_of`."""
    return export.object_tracks(svc.browser, key or export.each_object)


TrackOfDep = Annotated[export.TrackOf | None, Depends(track_of)]
TrackSourceDep = Annotated[export.TrackSource, Depends(track_source)]


# -- how many stream at once ------------------------------------------------------------------
class ExportSlots:
    """At most `limit` exports at once; a lease is given back when its stream ends or is dropped."""

    def __init__(self, limit: int):
        self.limit = limit
        self._sem = threading.BoundedSemaphore(limit)

    def lease(self) -> Callable[[], None]:
        if not self._sem.acquire(blocking=False):
            raise TransientError(f"too many exports at once ({self.limit} streaming): retry shortly")
        done = threading.Event()

        def release() -> None:
            if not done.is_set():
                done.set()
                self._sem.release()

        return release


_slots_lock = threading.Lock()


def export_slots(request: Request) -> ExportSlots:
    """The app's export slots (made on first use: `create_app` needs no line for them)."""
    state = request.app.state
    with _slots_lock:
        slots = getattr(state, "export_slots", None)
        if slots is None:
            raw = os.environ.get(CONCURRENCY_ENV, "").strip()
            limit = int(raw) if raw.isdigit() and 1 <= int(raw) <= 64 else DEFAULT_CONCURRENCY
            slots = state.export_slots = ExportSlots(limit)
    return slots


Slots = Annotated[ExportSlots, Depends(export_slots)]


def _stream(slots: ExportSlots, make: Callable[[], export.Export]) -> StreamingResponse:
    release = slots.lease()
    try:
        out = make()  # every check: a 404 / 422 is answered before the response starts
    except BaseException:
        release()
        raise

    def body() -> Iterator[bytes]:
        try:
            yield from out.chunks
        finally:
            out.close()
            release()

    chunks = body()
    weakref.finalize(chunks, release)  # a stream dropped before its first chunk gives its slot back too
    return StreamingResponse(
        chunks,
        media_type=out.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{out.filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def export_filters(
    video_id: str | None = Query(None, max_length=200, description="only this video"),
    label: str | None = Query(None, max_length=MAX_LABEL_NAME, description="only this label name"),
    min_propagated_score: float | None = Query(
        None, ge=0, le=1, description="also count propagated labels scoring at least this (default: human only)"
    ),
) -> dict[str, Any]:
    """The filters both exports take (empty values mean no filter)."""
    return dict(video_id=video_id or None, label=label or None, min_propagated_score=min_propagated_score)


Filters = Annotated[dict[str, Any], Depends(export_filters)]


# -- routes --------------------------------------------------------------------------------
@router.get("/collections/{c}/export/coco", response_class=StreamingResponse, responses=JSON_OR_ZIP)
def export_coco(
    c: str, svc: Service, slots: Slots, filters: Filters, key: TrackOfDep, images: bool = Query(False)
) -> StreamingResponse:
    return _stream(slots, lambda: export.coco(svc.browser, c, images=images, track_of=key, **filters))


@router.get("/collections/{c}/export/mot", response_class=StreamingResponse, responses=ZIP)
def export_mot(c: str, svc: Service, slots: Slots, filters: Filters, tracks: TrackSourceDep) -> StreamingResponse:
    return _stream(slots, lambda: export.mot(svc.browser, c, tracks=tracks, **filters))
