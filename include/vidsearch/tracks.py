"""Tracks of a video in the stores: their ids at index time and their stitching across segment
boundaries at finalize (the association itself is `vidsearch.tracking`'s).

A segment's worker numbers its tracks (`DetectedObject.track`). At index time each segment-local
track gets the id `track_id_of(video, its earliest member)` in both stores; an object the worker did
not track is a track of its own. At finalize, a track that reaches the end of segment k and one that
starts at the beginning of segment k+1 are joined when `tracking.stitch` matches them (box overlap
and appearance); the joined parts take the id of the earliest part, which is again
`track_id_of(video, earliest member)`. Stitching starts from the parts each segment indexed (a part
is one segment's members of one track), so it gives the same ids however often it runs, and after a
segment is reprocessed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidsearch import tracking
from vidsearch.records import DetectedObject, track_id_of
from vidsearch.stores.catalog import USABLE_SEGMENT_STATES, Catalog
from vidsearch.stores.index import ObjectIndex

log = logging.getLogger(__name__)


def with_track_ids(objects: Sequence[DetectedObject]) -> list[DetectedObject]:
    """The segment's objects with their track ids (see the module docstring)."""
    first: dict[int, str] = {}
    for o in sorted(objects, key=lambda o: (o.pts_s, o.object_id)):
        if o.track is not None:
            first.setdefault(o.track, o.object_id)
    return [
        o.model_copy(
            update={"track_id": track_id_of(o.video_id, first[o.track] if o.track is not None else o.object_id)}
        )
        for o in objects
    ]


@dataclass(frozen=True)
class StitchSummary:
    tracks: int  # tracks of the video after stitching
    joins: int  # boundaries crossed: parts joined to the part before them
    moved: int  # objects whose track id changed


def _parts(members: Sequence[dict[str, Any]], video_id: str) -> dict[str, list[dict[str, Any]]]:
    """{part id: its members in time order}: a part is one segment's members of one stored track, and
    its id is the track id of its earliest member (what index time gave it)."""
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for m in members:  # time order
        key = (m["segment_index"], m["track_id"] or m["object_id"])
        grouped.setdefault(key, []).append(m)
    return {track_id_of(video_id, rows[0]["object_id"]): rows for rows in grouped.values()}


def stitch_video(
    catalog: Catalog,
    index: ObjectIndex,
    collection: str,
    video_id: str,
    cfg: tracking.TrackerConfig | None = None,
) -> StitchSummary:
    """Join the video's tracks across segment boundaries in both stores and rebuild its `tracks`
    rows. Only segments whose objects are searchable (done, accepted) take part."""
    cfg = cfg or tracking.TrackerConfig()
    states = catalog.segment_states(collection, video_id)
    usable = {i for i, s in states.items() if s["state"] in USABLE_SEGMENT_STATES}
    members = [m for m in catalog.track_members(collection, video_id) if m["segment_index"] in usable]
    parts = _parts(members, video_id)
    last_frame = {i: max(0, (states[i]["frame_count"] or 1) - 1) for i in usable}

    def end_of(part: list[dict[str, Any]]) -> dict[str, Any]:
        return part[-1]

    ending: dict[int, list[str]] = {}
    starting: dict[int, list[str]] = {}
    for pid, rows in parts.items():
        seg = rows[0]["segment_index"]
        if rows[-1]["frame_index"] >= last_frame[seg] - cfg.max_gap:
            ending.setdefault(seg, []).append(pid)
        if rows[0]["frame_index"] <= cfg.max_gap:
            starting.setdefault(seg, []).append(pid)

    boundary_ids = sorted(
        {end_of(parts[p])["object_id"] for ps in ending.values() for p in ps}
        | {parts[p][0]["object_id"] for ps in starting.values() for p in ps}
    )
    vectors = index.vectors(collection, boundary_ids) if boundary_ids else {}

    def track_end(pid: str, member: dict[str, Any]) -> tracking.TrackEnd | None:
        vector = vectors.get(member["object_id"])
        if vector is None:
            return None
        return tracking.TrackEnd(
            key=pid,
            pts_s=member["pts_s"],
            box=np.asarray(member["box"], dtype=np.float64),
            embedding=np.asarray(vector, dtype=np.float32),
            label=member["label"],
        )

    following: dict[str, str] = {}  # part -> the part that continues it in the next segment
    for seg in sorted(usable):
        if seg + 1 not in usable or seg not in ending or seg + 1 not in starting:
            continue
        ends = [e for p in ending[seg] if (e := track_end(p, end_of(parts[p]))) is not None]
        starts = [e for p in starting[seg + 1] if (e := track_end(p, parts[p][0])) is not None]
        for a, b in tracking.stitch(ends, starts, cfg):
            following[a] = b

    head_of: dict[str, str] = {}
    continued = set(following.values())
    for pid in sorted(parts, key=lambda p: (parts[p][0]["pts_s"], p)):
        if pid in continued:
            continue
        node: str | None = pid
        while node is not None:
            head_of[node] = pid
            node = following.get(node)

    moved: dict[str, str] = {}
    for pid, rows in parts.items():
        final = head_of.get(pid, pid)
        for m in rows:
            if m["track_id"] != final:
                moved[m["object_id"]] = final
    if moved:
        index.set_track_ids(collection, moved)
        catalog.set_track_ids(collection, moved)
    count = catalog.rebuild_tracks(collection, video_id)
    summary = StitchSummary(tracks=count, joins=len(following), moved=len(moved))
    log.info(
        "tracks of %s: %d (%d joined across segment boundaries, %d objects moved)",
        video_id,
        summary.tracks,
        summary.joins,
        summary.moved,
    )
    return summary
