"""Tracks of a video in the stores: their ids at index time and their stitching across segment
boundaries at finalize (the association itself is `vidsearch.tracking`'s).

A segment's worker numbers its tracks (`DetectedObject.track`). At index time each segment-local
track (a *part*) gets the id `track_id_of(video, its earliest member)` in both stores; an object the
worker did not track is a part of its own. At finalize, a part that reaches the end of segment k and
one that starts at the beginning of segment k+1 are joined when `tracking.stitch` matches them (box
overlap and appearance); the joined parts take the id of the earliest part, which is again
`track_id_of(video, earliest member)`, in Postgres (`objects.track_id`, `tracks`). Weaviate keeps the
part ids (rewriting its objects cost ~0.8 ms each: 10 s at finalize for a 30-minute video) and
`track_parts` maps a part to its track, which search applies. Stitching starts from the parts each segment indexed (a part
is one segment's members of one track), so it gives the same ids however often it runs, and after a
segment is reprocessed.

Each track also has a vector in Weaviate's track collection (`index.TrackVector`: the mean of its
members' L2-normalised embeddings, re-normalised), which track-to-track propagation searches. Index
time writes one per part (`part_tracks`, from the vectors in hand); finalize rewrites only the tracks
whose parts differ from what is stored (those stitching joined, or split again after a reprocess) and
deletes the rest (`sync_track_vectors`), so a finalize that changes nothing writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidsearch import tracking
from vidsearch.records import DetectedObject, track_id_of
from vidsearch.stores.catalog import USABLE_SEGMENT_STATES, Catalog, winning_label
from vidsearch.stores.index import ObjectIndex, TrackVector

log = logging.getLogger(__name__)


def with_track_ids(objects: Sequence[DetectedObject]) -> list[DetectedObject]:
    """One segment's objects with their track ids (see the module docstring)."""
    ids = tracking.track_ids(objects[0].video_id, objects, []) if objects else []
    return [
        o.model_copy(update={"track_id": tid or track_id_of(o.video_id, o.object_id)}) for o, tid in zip(objects, ids)
    ]


def mean_direction(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of the L2-normalised `vectors`, re-normalised (a zero vector stays zero)."""
    matrix = np.asarray(np.stack(vectors), dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    mean = (matrix / np.where(norms > 0, norms, 1.0)).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm > 0 else mean).astype(np.float32)


def _track_vector(
    video_id: str, track_id: str, members: Sequence[tuple[int, float, str, str]], vectors: Sequence[np.ndarray]
) -> TrackVector:
    """A track from its members: (segment, pts, detector label, part id) each, and their vectors."""
    votes: dict[str, int] = {}
    for _, _, label, _ in members:
        votes[label] = votes.get(label, 0) + 1
    return TrackVector(
        track_id=track_id,
        video_id=video_id,
        segment_index=min(m[0] for m in members),
        start_pts_s=min(m[1] for m in members),
        end_pts_s=max(m[1] for m in members),
        label=winning_label(votes),
        object_count=len(members),
        parts=tuple(sorted({m[3] for m in members})),
        vector=mean_direction(vectors),
    )


def part_tracks(objects: Sequence[DetectedObject], vectors: np.ndarray) -> list[TrackVector]:
    """The track vectors of one segment's parts (`objects` with their track ids, row for row with
    `vectors`): each part is its own track until finalize stitches it."""
    rows: dict[str, list[int]] = {}
    for i, o in enumerate(objects):
        rows.setdefault(o.track_id or track_id_of(o.video_id, o.object_id), []).append(i)
    return [
        _track_vector(
            objects[idx[0]].video_id,
            part,
            [(objects[i].segment_index, objects[i].pts_s, objects[i].label, part) for i in idx],
            [vectors[i] for i in idx],
        )
        for part, idx in rows.items()
    ]


@dataclass(frozen=True)
class StitchSummary:
    tracks: int  # tracks of the video after stitching
    joins: int  # boundaries crossed: parts joined to the part before them
    moved: int  # objects whose track id changed
    vectors_written: int = 0  # track vectors (re)written in Weaviate
    vectors_deleted: int = 0  # track vectors of parts now joined, or of segments no longer searchable


@dataclass(frozen=True)
class _Member:
    """A stored object as `tracking.track_ids` reads it: `track` numbers its part within the segment."""

    object_id: str
    segment_index: int
    pts_s: float
    track: int


def _parts(members: Sequence[dict[str, Any]]) -> dict[int, list[list[dict[str, Any]]]]:
    """{segment: its parts, numbered in time order}: a part is one segment's members of one stored
    track (or an object without one), its members in time order."""
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for m in members:  # time order
        grouped.setdefault((m["segment_index"], m["track_id"] or m["object_id"]), []).append(m)
    parts: dict[int, list[list[dict[str, Any]]]] = {}
    for (segment, _), rows in grouped.items():  # insertion order: by first member
        parts.setdefault(segment, []).append(rows)
    return parts


def _all(parts: dict[int, list[list[dict[str, Any]]]]) -> Iterator[list[dict[str, Any]]]:
    for seg_parts in parts.values():
        yield from seg_parts


def stitch_video(
    catalog: Catalog,
    index: ObjectIndex,
    collection: str,
    video_id: str,
    cfg: tracking.TrackerConfig | None = None,
    states: dict[int, dict[str, Any]] | None = None,
) -> StitchSummary:
    """Join the video's tracks across segment boundaries in both stores and rebuild its `tracks`
    rows. Only segments whose objects are searchable (done, accepted) take part (`states`: the
    video's segment states, when the caller has read them already). The boundary
    candidates and the match are `tracking.track_ends` and `tracking.stitch` (what the tracking
    benchmark measures), the ids `tracking.track_ids`."""
    cfg = cfg or tracking.TrackerConfig()
    states = states if states is not None else catalog.segment_states(collection, video_id)
    usable = {i for i, s in states.items() if s["state"] in USABLE_SEGMENT_STATES}
    stored = [m for m in catalog.track_members(collection, video_id) if m["segment_index"] in usable]
    parts = _parts(stored)
    # Positions among the frames detection ran on, as the worker's tracker counted them (a repeat or
    # a blank frame is no gap: a static camera's track reaches the end of its segment).
    detected = catalog.detected_frames(collection, video_id)
    position = {seg: {fi: p for p, fi in enumerate(detected.get(seg, []))} for seg in usable}
    last = {seg: max(0, len(detected.get(seg, [])) - 1) for seg in usable}

    def at(m: dict[str, Any]) -> int:
        return position[m["segment_index"]].get(m["frame_index"], m["frame_index"])

    def near_a_boundary(segment: int, rows: list[dict[str, Any]]) -> bool:
        return at(rows[0]) <= cfg.max_gap or last[segment] - at(rows[-1]) <= cfg.max_gap

    # Only parts near a boundary can be joined: only their members' embeddings are fetched.
    candidates = {
        seg: {n: rows for n, rows in enumerate(seg_parts) if near_a_boundary(seg, rows)}
        for seg, seg_parts in parts.items()
    }
    wanted = sorted({m["object_id"] for seg in candidates.values() for rows in seg.values() for m in rows})
    vectors = index.vectors(collection, wanted) if wanted else {}
    ends: dict[int, tuple[list[tracking.TrackEnd], list[tracking.TrackEnd]]] = {}
    for seg, seg_parts in candidates.items():
        with_vectors = {
            n: [
                tracking.PartMember(
                    at(m),
                    m["pts_s"],
                    np.asarray(m["box"], dtype=np.float64),
                    vectors[m["object_id"]],
                    m["label"],
                )
                for m in rows
            ]
            for n, rows in seg_parts.items()
            if all(m["object_id"] in vectors for m in rows)
        }
        ends[seg] = tracking.track_ends(seg, with_vectors, last[seg], cfg)
    pairs = [
        pair
        for seg in sorted(usable)
        if seg + 1 in ends and seg in ends
        for pair in tracking.stitch(ends[seg][0], ends[seg + 1][1], cfg)
    ]

    flat = [(m, n) for seg, seg_parts in parts.items() for n, rows in enumerate(seg_parts) for m in rows]
    finals = tracking.track_ids(
        video_id, [_Member(m["object_id"], m["segment_index"], m["pts_s"], n) for m, n in flat], pairs
    )
    moved = {m["object_id"]: final for (m, _), final in zip(flat, finals) if final and m["track_id"] != final}
    if moved:
        catalog.set_track_ids(collection, moved)
    # Weaviate keeps each part's index-time id; search maps it to the stitched track through these.
    part_of = {m["object_id"]: track_id_of(video_id, rows[0]["object_id"]) for rows in _all(parts) for m in rows}
    final_of = {m["object_id"]: final or part_of[m["object_id"]] for (m, _), final in zip(flat, finals)}
    catalog.replace_track_parts(collection, video_id, {part_of[o]: t for o, t in final_of.items() if t != part_of[o]})
    count = catalog.rebuild_tracks(collection, video_id)
    written, deleted = sync_track_vectors(index, collection, video_id, stored, part_of, final_of, vectors, states)
    summary = StitchSummary(
        tracks=count, joins=len(pairs), moved=len(moved), vectors_written=written, vectors_deleted=deleted
    )
    log.info(
        "tracks of %s: %d (%d joined across segment boundaries, %d objects moved; %d track vectors written, %d deleted)",
        video_id,
        summary.tracks,
        summary.joins,
        summary.moved,
        summary.vectors_written,
        summary.vectors_deleted,
    )
    return summary


def sync_track_vectors(
    index: ObjectIndex,
    collection: str,
    video_id: str,
    members: Sequence[dict[str, Any]],
    part_of: dict[str, str],
    final_of: dict[str, str],
    vectors: dict[str, np.ndarray],
    segments: Iterable[int],
) -> tuple[int, int]:
    """Make the track collection hold exactly the video's tracks (`members`: its searchable objects,
    `part_of`/`final_of`: each one's part and track): a track whose parts differ from the stored
    object's is rewritten, from its members' vectors (`vectors` holds those stitching fetched; the
    rest are fetched); stored tracks that are no track any more (joined parts, unsearchable
    segments) are deleted. Returns (written, deleted)."""
    by_track: dict[str, list[dict[str, Any]]] = {}
    for m in members:
        by_track.setdefault(final_of[m["object_id"]], []).append(m)
    want = {t: tuple(sorted({part_of[m["object_id"]] for m in rows})) for t, rows in by_track.items()}
    stored: dict[str, tuple[str, ...]] = {}
    for segment in segments:
        stored.update(index.stored_tracks(collection, video_id, segment))
    changed = [t for t, parts in want.items() if stored.get(t) != parts]
    needed = [m["object_id"] for t in changed for m in by_track[t] if m["object_id"] not in vectors]
    fetched = {**vectors, **(index.vectors(collection, needed) if needed else {})}
    rewrite = [
        _track_vector(
            video_id,
            t,
            [(m["segment_index"], m["pts_s"], m["label"], part_of[m["object_id"]]) for m in by_track[t]],
            [fetched[m["object_id"]] for m in by_track[t]],
        )
        for t in changed
        if all(m["object_id"] in fetched for m in by_track[t])
    ]
    if len(rewrite) < len(changed):  # finalize checked the stores agree: only a concurrent delete does this
        log.warning("%s: %d tracks lost member vectors meanwhile; not rewritten", video_id, len(changed) - len(rewrite))
    index.upsert_tracks(collection, rewrite)
    gone = sorted(set(stored) - set(want))
    index.delete_tracks(collection, gone)
    return len(rewrite), len(gone)
