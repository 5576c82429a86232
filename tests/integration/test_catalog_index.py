"""The catalog stores (real Postgres: catalog, browse, labels) and the object index (real Weaviate):
upserts, stale rows, errors, label idempotence and provenance, nearest neighbours."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from vidsearch.errors import InputError, NotFoundError, TransientError
from vidsearch.params import IndexSettings
from vidsearch.records import Box, DetectedObject, FrameBundle, FrameRef, Segment, VideoManifest, object_id
from vidsearch.stores import catalog as cat
from vidsearch.stores.index import ObjectIndex, StoredVector, is_transient, weaviate_collection_name
from weaviate.exceptions import UnexpectedStatusCodeError


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
    segs = [
        Segment(video_id=video_id, index=i, start_s=2.0 * i, end_s=2.0 * i + 2, uri=f"file:///s{i}") for i in range(2)
    ]
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
    assert is_transient(UnexpectedStatusCodeError("boom", _resp(503)))
    assert is_transient(UnexpectedStatusCodeError("slow down", _resp(429)))
    assert not is_transient(UnexpectedStatusCodeError("bad", _resp(422)))


def test_unreachable_weaviate_is_transient():
    import weaviate
    from vidsearch.stores.index import ObjectIndex

    index = ObjectIndex(lambda: weaviate.connect_to_local(host="127.0.0.1", port=1, grpc_port=2))
    with pytest.raises(TransientError, match="weaviate unavailable while connecting"):
        index.ensure_collection("nowhere")


def _indexed(catalog, collection: str, video_id: str, n_frames: int = 2, per_frame: int = 3) -> list[DetectedObject]:
    """One video of one segment written to the catalog; its objects."""
    catalog.upsert_video(collection, _manifest(video_id), "file:///x", "run-1")
    catalog.upsert_segments(collection, [Segment(video_id=video_id, index=0, start_s=0.0, end_s=2.0, uri="file:///s0")])
    objs = _objects(video_id, 0, n_frames=n_frames, per_frame=per_frame)
    catalog.write_segment_index(collection, _bundle(video_id, 0, n_frames), objs, "det", "emb")
    return objs


def test_label_store_writes_are_idempotent_all_or_nothing_and_audited(catalog, video_id):
    from vidsearch.stores.labels import NEGATIVE, POSITIVE, LabelStore

    collection, name = "lbl_test", f"cat-{video_id[:8]}"
    ids = [o.object_id for o in _indexed(catalog, collection, video_id)]
    store = LabelStore(catalog.engine)

    def counts() -> dict:
        return {c["name"]: c for c in store.counts(collection)}[name]

    assert store.add(collection, ids[:3], name, POSITIVE, "tester") == 3
    assert store.add(collection, [ids[3]], name, NEGATIVE, "tester") == 1
    expected = {"name": name, "positive": 3, "negative": 1, "propagated": 0}
    assert counts() == expected
    # The same labels again: the rows are set again (and audited), the counts do not move.
    assert store.add(collection, ids[:3], name, POSITIVE, "tester") == 3
    assert counts() == expected
    assert store.human_labeled(collection, name) == (sorted(ids[:3]), [ids[3]])
    assert store.object_ids(collection, name, NEGATIVE) == [ids[3]]
    events = store.events(collection, name, 100)
    assert len(events) == 3 + 1 + 3 and {e["action"] for e in events} == {"add"}

    # An unknown id fails the whole call: nothing labeled, nothing removed, nothing audited.
    ghost = str(uuid.uuid4())
    with pytest.raises(NotFoundError, match="1 unknown object id"):
        store.add(collection, [ids[4], ghost], name, POSITIVE, "tester")
    with pytest.raises(NotFoundError):
        store.remove(collection, [ids[0], ghost], name, "tester")
    assert counts() == expected and len(store.events(collection, name, 100)) == 7

    assert store.remove(collection, ids[:2], name, "tester") == 2
    assert store.remove(collection, ids[:2], name, "tester") == 0  # removing twice removes nothing
    assert counts() == {"name": name, "positive": 1, "negative": 1, "propagated": 0}
    events = store.events(collection, name, 100)
    assert [e["action"] for e in events[:3]] == ["remove", "remove", "add"] and len(events) == 9
    assert store.negative_for_any(collection, [name, "other"]) == {ids[3]}


def test_label_store_propagation_keeps_human_labels_and_undo_removes_only_its_own(catalog, video_id):
    from vidsearch.stores.labels import NEGATIVE, POSITIVE, LabelStore

    collection, name = "lbl_test", f"dog-{video_id[:8]}"
    ids = [o.object_id for o in _indexed(catalog, collection, video_id)]
    store = LabelStore(catalog.engine)
    store.add(collection, [ids[0]], name, POSITIVE, "tester")
    store.add(collection, [ids[1]], name, NEGATIVE, "tester")
    ghost = str(uuid.uuid4())
    first = store.record_propagation(
        collection,
        name,
        sources=[ids[0]],
        negatives=[ids[1]],
        model="emb",
        threshold=0.5,
        candidates=[(ids[1], 0.9), (ids[2], 0.8), (ids[3], 0.7), (ghost, 0.6)],
        actor="tester",
    )
    assert first["count"] == 2  # the human label and the unknown object are left alone
    prop = store.get_propagation(collection, first["propagation_id"])
    assert (prop["sources"], prop["negatives"], prop["model"], prop["threshold"], prop["count"]) == (
        [ids[0]],
        [ids[1]],
        "emb",
        0.5,
        2,
    )
    assert {c["name"]: c for c in store.counts(collection)}[name]["propagated"] == 2
    assert store.object_ids(collection, name, NEGATIVE) == [ids[1]]

    # A second propagation takes over ids[2]; the first one then owns only ids[3].
    second = store.record_propagation(
        collection,
        name,
        sources=[ids[0]],
        negatives=[],
        model="emb",
        threshold=0.8,
        candidates=[(ids[2], 0.85)],
        actor="tester",
    )
    assert second["count"] == 1
    assert store.undo_propagation(collection, first["propagation_id"], "tester") == 1
    assert store.undo_propagation(collection, first["propagation_id"], "tester") == 0  # undoing twice
    assert store.object_ids(collection, name, POSITIVE) == sorted([ids[0], ids[2]])
    assert store.undo_propagation(collection, second["propagation_id"], "tester") == 1
    assert store.object_ids(collection, name, POSITIVE) == [ids[0]]
    assert [p["undone_at"] is not None for p in store.propagations(collection, name)] == [True, True]
    actions = [(e["action"], e["object_id"]) for e in store.events(collection, name, 4)]
    assert actions == [("undo", None), ("undo", None), ("propagate", None), ("propagate", None)]
    with pytest.raises(NotFoundError):
        store.undo_propagation(collection, ghost, "tester")
    with pytest.raises(NotFoundError):
        store.get_propagation(collection, ghost)


def test_browser_reads_frames_objects_and_their_labels(catalog, video_id):
    from vidsearch.stores.browse import CatalogBrowser
    from vidsearch.stores.labels import POSITIVE, LabelStore

    collection = "browse_test"
    objs = _indexed(catalog, collection, video_id, n_frames=3, per_frame=2)
    browser = CatalogBrowser(catalog.engine)
    LabelStore(catalog.engine).add(collection, [objs[0].object_id], "b", POSITIVE, "tester")
    LabelStore(catalog.engine).add(collection, [objs[0].object_id], "a", POSITIVE, "tester")

    assert browser.has_video(collection, video_id) and not browser.has_video(collection, "f" * 32)
    (video,) = browser.videos(collection)
    assert (video["segments"], video["segments_done"], video["frames"], video["objects"]) == (1, 1, 3, 6)
    page = browser.frame_page(collection, video_id, offset=1, limit=5)
    assert page["total"] == 3 and [f["frame_index"] for f in page["frames"]] == [1, 2]
    assert [len(f["objects"]) for f in page["frames"]] == [2, 2]
    found = browser.objects_by_id(collection, [objs[0].object_id, str(uuid.uuid4())])
    assert list(found) == [objs[0].object_id]  # unknown ids are left out
    assert [lb["name"] for lb in found[objs[0].object_id]["labels"]] == ["a", "b"]
    assert found[objs[0].object_id]["box"] == [objs[0].box.x0, objs[0].box.y0, objs[0].box.x1, objs[0].box.y1]
    assert browser.frame(collection, video_id, 0, 2)["member"] == "000002.jpg"
    assert browser.frame(collection, video_id, 0, 3) is None
    source = browser.crop_source(collection, objs[5].object_id)
    assert source["frame_index"] == objs[5].frame_index and source["bundle_uri"].endswith("/0.zip")
    assert browser.crop_source(collection, str(uuid.uuid4())) is None


def test_index_vectors_and_nearest_neighbours(weaviate_client, video_id):
    index = ObjectIndex(weaviate_client)
    index.ensure_collection("idx_near")
    objs = _objects(video_id, 0, n_frames=4, per_frame=3)
    objs[0] = objs[0].model_copy(update={"label": "dog"})
    vecs = _vectors(len(objs), seed=2)
    index.upsert_segment("idx_near", video_id, 0, objs, vecs)
    ids = [o.object_id for o in objs]

    stored = index.vectors("idx_near", [ids[1], ids[2], str(uuid.uuid4())])
    assert set(stored) == {ids[1], ids[2]}  # ids not in the index are left out
    np.testing.assert_allclose(stored[ids[1]], vecs[1], atol=1e-6)

    oracle = sorted(((float(vecs[1] @ v), i) for i, v in zip(ids, vecs)), reverse=True)
    hits = index.near("idx_near", vecs[1], 5, -1.0)
    assert [i for i, _ in hits] == [i for _, i in oracle[:5]] and hits[0][0] == ids[1]
    assert [s for _, s in hits] == pytest.approx([s for s, _ in oracle[:5]], abs=1e-4)
    cut = (oracle[3][0] + oracle[4][0]) / 2
    assert [i for i, _ in index.near("idx_near", vecs[1], 100, cut)] == [i for _, i in oracle[:4]]
    assert [i for i, _ in index.near("idx_near", vecs[1], 100, -1.0, exclude_ids=[ids[1]])] == [
        i for _, i in oracle[1:]
    ]
    assert {i for i, _ in index.near("idx_near", vecs[1], 100, -1.0, ids=[ids[4], ids[7]])} == {ids[4], ids[7]}
    assert [i for i, _ in index.near("idx_near", vecs[1], 100, -1.0, detector_label="dog")] == [ids[0]]
    assert index.near("idx_near", vecs[1], 100, -1.0, video_id="0" * 32) == []

    # Near an object's stored vector (Weaviate reads it itself): the same answer as near that vector;
    # an object without one is NotFoundError at once, not a retried server error.
    by_object = index.near("idx_near", StoredVector(ids[1]), 100, -1.0, exclude_ids=[ids[1]])
    assert [i for i, _ in by_object] == [i for _, i in oracle[1:]]
    assert [s for _, s in by_object] == pytest.approx([s for s, _ in oracle[1:]], abs=1e-4)
    with pytest.raises(NotFoundError, match="no vector"):  # (retried, it would end as TransientError)
        index.near("idx_near", StoredVector(str(uuid.uuid4())), 5, -1.0)


def _resp(status: int):
    import httpx

    return httpx.Response(status, json={"error": [{"message": "x"}]})


@pytest.mark.parametrize(
    "settings",
    [
        IndexSettings(),
        IndexSettings(ef=64, ef_construction=64, max_connections=16, quantizer="rq8", rescore_limit=200),
        IndexSettings(ef_construction=96, quantizer="bq"),
    ],
    ids=["defaults", "rq8", "bq"],
)
def test_collection_settings_round_trip_and_an_existing_collection_keeps_its_own(weaviate_client, settings):
    index = ObjectIndex(weaviate_client)
    name = f"idx_settings_{uuid.uuid4().hex[:8]}"
    index.ensure_collection(name, settings)
    assert index.index_settings(name) == settings
    # Created before: ensuring it again with other settings changes nothing.
    index.ensure_collection(name, IndexSettings(ef_construction=200, max_connections=48, quantizer="sq"))
    assert index.index_settings(name) == settings
    # Searches still answer (a quantised index rescored from the full vectors).
    vid = "a" * 32
    objs = _objects(vid, 0, n_frames=4, per_frame=3)
    vecs = _vectors(len(objs), seed=5)
    index.upsert_segment(name, vid, 0, objs, vecs)
    assert index.near(name, vecs[3], 1, -1.0)[0][0] == objs[3].object_id


def test_index_settings_from_the_environment(monkeypatch, weaviate_client):
    from vidsearch.stores.index import default_index_settings

    monkeypatch.setenv("VIDSEARCH_INDEX_SETTINGS", '{"quantizer": "rq8", "ef_construction": 64}')
    assert default_index_settings() == IndexSettings(quantizer="rq8", ef_construction=64)
    index = ObjectIndex(weaviate_client)
    name = f"idx_env_{uuid.uuid4().hex[:8]}"
    index.ensure_collection(name)
    assert index.index_settings(name).quantizer == "rq8"
    for bad in ('{"quantizer": "lz4"}', '{"quantizer": "bq", "rescore_limit": 10}', "not json"):
        monkeypatch.setenv("VIDSEARCH_INDEX_SETTINGS", bad)
        with pytest.raises(InputError, match="VIDSEARCH_INDEX_SETTINGS"):
            default_index_settings()
