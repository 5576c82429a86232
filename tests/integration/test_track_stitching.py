"""Tracks in the stores (issue 14): segment-local tracks get their ids at index time and are
stitched across segment boundaries at finalize, in Postgres and Weaviate, deterministically.

The detections are crafted (boxes and embeddings chosen), the stores are real: a generated video is
probed and split by the pipeline, then each segment's frames and objects are written as index_segment
writes them.
"""

from __future__ import annotations

import numpy as np
import pytest
from vidsearch import pipeline, tracks
from vidsearch.media import synth
from vidsearch.records import Box, DetectedObject, DetectEmbedResult, FrameBundle, FrameRef, object_id, track_id_of
from vidsearch.stores.index import ObjectIndex

pytestmark = pytest.mark.integration

COLLECTION = "stitch_tests"
DIM = 16


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture(scope="module")
def video(tmp_path_factory, catalog, weaviate_client, storage_root):
    """A 6 s video in 3 segments of 2 s, sampled at 1 fps (2 frames per segment) in the catalog."""
    path = synth.make_video(
        tmp_path_factory.mktemp("stitch") / "walk.mp4", duration_s=6.0, width=320, height=180, fps=25, gop_frames=25
    )
    svc = pipeline.Services(catalog=catalog, index=lambda: ObjectIndex(weaviate_client), storage_root=storage_root)
    params = pipeline.IngestParams(source=str(path), collection=COLLECTION, segment_seconds=2, review=False)
    probed = pipeline.probe_video(svc, "stitch-run", "video_ingest", params)
    segments = pipeline.split_video(svc, "stitch-run", params, probed)
    assert len(segments) == 3
    return svc, probed.manifest.video_id, segments


def _write(
    svc, video_id: str, segments, walker_box_at, stranger_in: set[int], vectors_of: dict[str, np.ndarray] | None = None
) -> dict[str, list[str]]:
    """Index every segment: a walker seen in every frame (its box from `walker_box_at(t)`, one
    appearance), and a stranger (another appearance) in the segments of `stranger_in`. The worker's
    tracker would give each segment one local track per person: so do these objects. They are stored
    as index_segment stores them (`pipeline.store_segment`); `vectors_of` collects their embeddings."""
    vectors_of = {} if vectors_of is None else vectors_of
    walker, stranger = _unit(1), _unit(2)
    ids: dict[str, list[str]] = {"walker": [], "stranger": []}
    for seg in segments:
        refs = [FrameRef(index=i, pts_s=seg.start_s + i, member=f"{i:05d}.jpg") for i in range(2)]
        bundle = FrameBundle(
            video_id=video_id, segment_index=seg.index, uri="file:///unused.zip", width=320, height=180,
            sample_fps=1.0, frames=refs,
        )  # fmt: skip
        objs, vectors = [], []
        for ref in refs:
            people = [("walker", walker, walker_box_at(ref.pts_s), 0)]
            if seg.index in stranger_in:
                people.append(("stranger", stranger, Box(x0=250, y0=10, x1=300, y1=80), 1))
            for name, vec, box, track in people:
                oid = object_id(video_id, seg.index, ref.pts_s, box)
                ids[name].append(oid)
                objs.append(
                    DetectedObject(
                        object_id=oid, video_id=video_id, segment_index=seg.index, frame_index=ref.index,
                        pts_s=ref.pts_s, box=box, label="person", label_id=1, score=0.9, track=track,
                    )
                )  # fmt: skip
                vectors.append(vec + np.float32(0.01) * _unit(len(vectors) + 10 * seg.index))
        result = DetectEmbedResult(
            video_id=video_id, segment_index=seg.index, detector_model="det", embedder_model="emb",
            embedding_dim=DIM, detector_labels=["person"], device="cpu", frame_count=len(refs), objects=objs,
        )  # fmt: skip
        svc.index().ensure_collection(COLLECTION)
        pipeline.store_segment(svc, COLLECTION, bundle, result, np.stack(vectors))
        vectors_of.update(zip((o.object_id for o in objs), vectors))
    return ids


def _stored_tracks(svc, video_id: str) -> dict[str, str]:
    return {m["object_id"]: m["track_id"] for m in svc.catalog.track_members(COLLECTION, video_id)}


def test_a_walker_across_three_segments_is_one_track_in_both_stores(video):
    svc, video_id, segments = video

    def walking(t: float) -> Box:  # 20 px per second: boxes overlap from frame to frame
        return Box(x0=10 + 20 * t, y0=50, x1=70 + 20 * t, y1=150)

    vectors: dict[str, np.ndarray] = {}
    ids = _write(svc, video_id, segments, walking, stranger_in={1}, vectors_of=vectors)
    before = _stored_tracks(svc, video_id)
    # Index time: one track per person per segment, in Postgres and as a track vector in Weaviate.
    assert len({before[o] for o in ids["walker"]}) == 3
    assert set(_track_vectors(svc, video_id, segments)) == set(before.values())

    summary = tracks.stitch_video(svc.catalog, svc.index(), COLLECTION, video_id)

    after = _stored_tracks(svc, video_id)
    walker_tracks = {after[o] for o in ids["walker"]}
    assert walker_tracks == {track_id_of(video_id, ids["walker"][0])}  # one id: its earliest member's
    assert len({after[o] for o in ids["stranger"]}) == 1 and not walker_tracks & {after[ids["stranger"][0]]}
    assert summary.joins == 2 and summary.tracks == 2
    # Weaviate keeps each object's part (its index-time id); the recorded parts map it to the track,
    # object for object what Postgres says.
    index = svc.index()
    wv = {oid: t for oid, _, t in index.near_with_tracks(COLLECTION, _unit(1), 100, -1.0, video_id=video_id)}
    assert {oid: wv[oid] for oid in after} == before  # untouched by stitching
    mapped = svc.catalog.tracks_of_parts(COLLECTION, sorted(set(wv.values())))
    assert {oid: mapped.get(wv[oid], wv[oid]) for oid in after} == after
    rows = {r["track_id"]: r for r in svc.catalog.video_tracks(COLLECTION, video_id)}
    walker_row = rows[next(iter(walker_tracks))]
    assert (walker_row["start_pts_s"], walker_row["end_pts_s"], walker_row["object_count"]) == (0.0, 5.0, 6)
    assert walker_row["segments"] == [0, 1, 2] and walker_row["label_votes"] == {"person": 6}

    # Weaviate's track collection: one vector per track, the mean direction of its members' vectors,
    # linked to them through their parts; the joined parts' own vectors are gone.
    stored = _track_vectors(svc, video_id, segments)
    assert set(stored) == set(rows) and summary.vectors_written == 1 and summary.vectors_deleted == 2
    walker_id = next(iter(walker_tracks))
    expected = tracks.mean_direction([vectors[o] for o in ids["walker"]])
    assert np.allclose(stored[walker_id][1], expected, atol=1e-5)
    assert stored[walker_id][0] == tuple(sorted({before[o] for o in ids["walker"]}))
    nearest = index.near_tracks(COLLECTION, _unit(1), 5, -1.0)
    assert nearest[0][0] == walker_id and nearest[0][1] > 0.99
    assert [t for t, _ in index.near_tracks(COLLECTION, _unit(1), 5, -1.0, exclude_ids=[walker_id])] == [
        after[ids["stranger"][0]]
    ]

    # Deterministic: stitching again (a re-run of finalize) changes nothing, in either store.
    again = tracks.stitch_video(svc.catalog, svc.index(), COLLECTION, video_id)
    assert _stored_tracks(svc, video_id) == after and again.moved == 0 and again.tracks == 2
    assert (again.vectors_written, again.vectors_deleted) == (0, 0)

    # Re-indexing a segment (a reprocess) resets its objects to index-time ids; stitching restores.
    _write(svc, video_id, segments, walking, stranger_in={1})
    assert len(_track_vectors(svc, video_id, segments)) == 4  # index time: one per part again
    tracks.stitch_video(svc.catalog, svc.index(), COLLECTION, video_id)
    assert _stored_tracks(svc, video_id) == after
    restored = _track_vectors(svc, video_id, segments)
    assert set(restored) == set(rows) and np.allclose(restored[walker_id][1], expected, atol=1e-5)


def _track_vectors(svc, video_id: str, segments) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """{track id: (its parts, its vector)} as Weaviate's track collection holds them."""
    index = svc.index()
    parts = {t: p for seg in segments for t, p in index.stored_tracks(COLLECTION, video_id, seg.index).items()}
    vectors = index.track_vectors(COLLECTION, sorted(parts))
    return {t: (parts[t], vectors[t]) for t in parts}
