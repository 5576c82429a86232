"""The catalog (real Postgres) and the object index (real Weaviate): upserts, stale rows, errors."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from weaviate.exceptions import UnexpectedStatusCodeError

from vidsearch.stores import catalog as cat
from vidsearch.errors import InputError, TransientError
from vidsearch.stores.index import ObjectIndex, is_transient, weaviate_collection_name
from vidsearch.records import Box, DetectedObject, FrameBundle, FrameRef, Segment, VideoManifest, object_id


def _manifest(video_id: str) -> VideoManifest:
    return VideoManifest(
        video_id=video_id,
        source="/videos/x.mp4",
        content_sha256=video_id * 2,
        size_bytes=1000,
        container="mov,mp4,m4a,3gp,3g2,mj2",
        duration_s=4.0,
        video_codec="h264",
        width=64,
        height=48,
        coded_width=64,
        coded_height=48,
        rotation=0,
        frame_rate=25.0,
        nominal_frame_rate=25.0,
        variable_frame_rate=False,
        frame_count=100,
        start_time_s=0.0,
        has_audio=False,
    )


def _objects(video_id: str, seg: int, n_frames: int, per_frame: int) -> list[DetectedObject]:
    out = []
    for f in range(n_frames):
        for k in range(per_frame):
            box = Box(x0=k, y0=k, x1=k + 10.5, y1=k + 8.25)
            pts = seg * 2.0 + f * 0.5
            out.append(
                DetectedObject(
                    object_id=object_id(video_id, seg, pts, box),
                    video_id=video_id,
                    segment_index=seg,
                    frame_index=f,
                    pts_s=pts,
                    box=box,
                    label="car",
                    label_id=3,
                    score=0.9,
                )
            )
    return out


def _bundle(video_id: str, seg: int, n_frames: int) -> FrameBundle:
    return FrameBundle(
        video_id=video_id,
        segment_index=seg,
        uri=f"file:///tmp/{video_id}/{seg}.zip",
        width=64,
        height=48,
        sample_fps=2.0,
        frames=[FrameRef(index=i, pts_s=seg * 2.0 + i * 0.5, member=f"{i:06d}.jpg") for i in range(n_frames)],
    )


def _vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture()
def video_id() -> str:
    return uuid.uuid4().hex


def test_object_ids_are_deterministic():
    box = Box(x0=1, y0=2, x1=3, y1=4)
    assert object_id("v", 0, 1.5, box) == object_id("v", 0, 1.5, box)
    assert object_id("v", 0, 1.5, box) != object_id("v", 1, 1.5, box)
    assert object_id("v", 0, 1.5, box) != object_id("v", 0, 1.5, Box(x0=1, y0=2, x1=3, y1=5))


def test_catalog_segment_write_is_idempotent_and_drops_stale_rows(catalog, video_id):
    catalog.upsert_video("cat_test", _manifest(video_id), "file:///x", "run-1")
    segs = [Segment(video_id=video_id, index=i, start_s=2.0 * i, end_s=2.0 * i + 2, uri=f"file:///s{i}") for i in range(2)]
    catalog.upsert_segments("cat_test", segs)
    assert {s["state"] for s in catalog.segment_states("cat_test", video_id).values()} == {"pending"}

    objs = _objects(video_id, 0, n_frames=4, per_frame=3)
    for _ in range(2):  # the same write twice changes nothing
        catalog.write_segment_index("cat_test", _bundle(video_id, 0, 4), objs, "det", "emb")
        assert catalog.counts("cat_test", video_id) == {"segments": 2, "frames": 4, "objects": 12}

    # A re-run that finds fewer objects leaves exactly those.
    catalog.write_segment_index("cat_test", _bundle(video_id, 0, 3), objs[:5], "det", "emb")
    assert catalog.counts("cat_test", video_id) == {"segments": 2, "frames": 3, "objects": 5}
    assert catalog.object_ids("cat_test", video_id) == {o.object_id for o in objs[:5]}
    states = catalog.segment_states("cat_test", video_id)
    assert states[0]["state"] == "done" and states[0]["object_count"] == 5
    assert states[1]["state"] == "pending"

    # Re-planning the video into fewer segments drops the segment beyond the plan.
    catalog.upsert_segments("cat_test", segs[:1])
    assert catalog.counts("cat_test", video_id)["segments"] == 1
    assert catalog.segment_states("cat_test", video_id)[0]["state"] == "done"


def test_collection_is_pinned_to_one_embedding_space(catalog):
    name = f"c_{uuid.uuid4().hex[:8]}"
    catalog.register_collection(name, "openai/clip-vit-base-patch32", 512, weaviate_collection_name(name))
    catalog.register_collection(name, "openai/clip-vit-base-patch32", 512, weaviate_collection_name(name))
    with pytest.raises(InputError, match="cannot add"):
        catalog.register_collection(name, "other/clip", 768, weaviate_collection_name(name))


def test_runs_record_state_and_error(catalog):
    run_id = f"manual__{uuid.uuid4().hex}"
    catalog.start_run(run_id, "video_ingest", "default", "/nope.mp4", {"source": "/nope.mp4"})
    catalog.end_run(run_id, cat.RunState.FAILED, error="source not found: /nope.mp4")
    run = catalog.get_run(run_id)
    assert run["state"] == "failed" and run["error"] == "source not found: /nope.mp4"


def test_index_upsert_is_idempotent_and_drops_stale_objects(weaviate_client, video_id):
    index = ObjectIndex(weaviate_client)
    assert index.ensure_collection("idx_test") == "VideoObjects_idx_test"
    assert index.ensure_collection("idx_test") == "VideoObjects_idx_test"  # exists: no error
    objs = _objects(video_id, 0, n_frames=3, per_frame=4)
    vecs = _vectors(len(objs))
    for _ in range(2):
        index.upsert_segment("idx_test", video_id, 0, objs, vecs)
        assert index.count("idx_test", video_id) == 12
    assert set(index.ids("idx_test", video_id, 0)) == {o.object_id for o in objs}

    other = _objects(video_id, 1, n_frames=1, per_frame=2)
    index.upsert_segment("idx_test", video_id, 1, other, _vectors(2, seed=1))
    index.upsert_segment("idx_test", video_id, 0, objs[:7], vecs[:7])
    assert index.count("idx_test", video_id, 0) == 7
    assert index.count("idx_test", video_id, 1) == 2  # other segments untouched
    assert index.count("idx_test", video_id) == 9

    # The stored vector is the one we gave (cosine space: nearest is itself).
    coll = weaviate_client.collections.use("VideoObjects_idx_test")
    hit = coll.query.near_vector(near_vector=vecs[3].tolist(), limit=1).objects[0]
    assert str(hit.uuid) == objs[3].object_id


def test_index_raises_batch_errors_instead_of_dropping_them(weaviate_client, video_id):
    index = ObjectIndex(weaviate_client)
    index.ensure_collection("idx_dims")
    objs = _objects(video_id, 0, n_frames=1, per_frame=2)
    index.upsert_segment("idx_dims", video_id, 0, objs, _vectors(2, dim=8))
    more = _objects(video_id, 1, n_frames=1, per_frame=2)
    with pytest.raises(Exception, match="(?i)failed.*dimension|dimension.*failed"):
        index.upsert_segment("idx_dims", video_id, 1, more, _vectors(2, dim=16))  # wrong dimension
    with pytest.raises(ValueError):
        index.upsert_segment("idx_dims", video_id, 1, more, _vectors(1))


def test_invalid_collection_names_are_input_errors():
    for bad in ("", "Upper", "has space", "x" * 64, "1abc", 'a"; drop'):
        with pytest.raises(InputError):
            weaviate_collection_name(bad)


def test_transient_classification():
    assert is_transient(UnexpectedStatusCodeError("boom", _Resp(503)))
    assert is_transient(UnexpectedStatusCodeError("slow down", _Resp(429)))
    assert not is_transient(UnexpectedStatusCodeError("bad", _Resp(422)))


def test_unreachable_weaviate_is_transient():
    import weaviate

    from vidsearch.stores.index import ObjectIndex

    index = ObjectIndex(lambda: weaviate.connect_to_local(host="127.0.0.1", port=1, grpc_port=2))
    with pytest.raises(TransientError, match="weaviate unavailable while connecting"):
        index.ensure_collection("nowhere")


def _Resp(status: int):
    import httpx

    return httpx.Response(status, json={"error": [{"message": "x"}]})
