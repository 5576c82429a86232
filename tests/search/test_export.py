"""Exports (docs/export.md): COCO through pycocotools, the zip with frame images, MOT through motmetrics.

Real stack: the session's Postgres and the generated video the pipeline ingested into `search_api`
(tests/search/conftest.py). Its rows are copied into a collection of this module's own, `export_tests`,
as two videos (the ingested one and a copy of its first segment under another id, whose frames point at
the same stored bundle), so the label counts here are exact whatever other tests label in `search_api`.
"""

from __future__ import annotations

import configparser
import io
import json
import uuid
import zipfile
from collections import defaultdict
from typing import Any

import pytest
from PIL import Image

pytestmark = pytest.mark.integration

C = "export_tests"
API = f"api/collections/{C}"


@pytest.fixture(scope="module")
def seeded(catalog, ingested) -> dict[str, Any]:
    """`export_tests`: two videos copied from `search_api`, and labels: L1 positive on six objects, L1
    negative on two, L1 propagated on two (scores 0.9 and 0.4), L2 positive on five (three of them L1
    too), L2 negative on one L1 positive."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql as pg
    from vidsearch.stores import catalog as cat
    from vidsearch.stores.labels import LabelStore

    src, v1 = ingested["collection"], ingested["video_id"]
    v2 = uuid.uuid4().hex
    engine = catalog.engine
    with engine.begin() as conn:
        coll = conn.execute(sa.select(cat.collections).where(cat.collections.c.name == src)).one()._asdict()
        conn.execute(pg.insert(cat.collections).values({**coll, "name": C}).on_conflict_do_nothing())

        def copy(table: sa.Table, video: str, *where: Any, change: Any = None) -> None:
            rows = conn.execute(sa.select(table).where(table.c.collection == src, table.c.video_id == v1, *where)).all()
            out = []
            for r in rows:
                d = {**r._asdict(), "collection": C, "video_id": video}
                if change is not None:
                    d = change(d)
                out.append(d)
            if out:
                conn.execute(sa.insert(table), out)

        def new_id(d: dict[str, Any]) -> dict[str, Any]:
            return {**d, "object_id": str(uuid.uuid5(uuid.UUID(str(d["object_id"])), v2))}

        for video in (v1, v2):
            copy(cat.videos, video)
            for table in (cat.segments, cat.frames, cat.objects):
                where = () if video == v1 else (table.c.segment_index == 0,)
                copy(table, video, *where, change=new_id if (video == v2 and table is cat.objects) else None)
        objs = [
            r._asdict()
            for r in conn.execute(
                sa.select(cat.objects)
                .where(cat.objects.c.collection == C)
                .order_by(cat.objects.c.video_id == v2, cat.objects.c.pts_s, cat.objects.c.object_id)
            ).all()
        ]
        frames = {
            (r.video_id, r.segment_index, r.frame_index): r._asdict()
            for r in conn.execute(sa.select(cat.frames).where(cat.frames.c.collection == C)).all()
        }
    for o in objs:
        o["object_id"] = str(o["object_id"])
    by_video: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in objs:
        by_video[o["video_id"]].append(o)
    assert len(by_video[v1]) >= 14 and by_video[v2], {k: len(v) for k, v in by_video.items()}
    a, b = by_video[v1], by_video[v2]
    ids = [o["object_id"] for o in a]
    l1, l2 = f"car-{uuid.uuid4().hex[:6]}", f"red 'car' <b>{uuid.uuid4().hex[:4]}</b>"
    store = LabelStore(engine)
    pos1 = ids[0:5] + [b[0]["object_id"]]  # one in the second video
    neg1 = ids[8:10]
    pos2 = ids[2:7]
    neg2 = ids[0:1]
    store.add(C, pos1, l1, "positive", "export-test")
    store.add(C, neg1, l1, "negative", "export-test")
    store.add(C, pos2, l2, "positive", "export-test")
    store.add(C, neg2, l2, "negative", "export-test")
    store.record_propagation(
        C,
        l1,
        sources=pos1,
        negatives=neg1,
        model="test",
        threshold=0.3,
        candidates=[(ids[10], 0.9), (ids[11], 0.4)],
        actor="export-test",
    )
    yield {
        "v1": v1,
        "v2": v2,
        "l1": l1,
        "l2": l2,
        "objects": {o["object_id"]: o for o in objs},
        "by_video": dict(by_video),
        "frames": frames,
        "pos1": pos1,
        "neg1": neg1,
        "prop1": {ids[10]: 0.9, ids[11]: 0.4},
        "pos2": pos2,
        "neg2": neg2,
    }
    with engine.begin() as conn:
        for table in (cat.label_events, cat.propagations, cat.labels, cat.videos, cat.collections):
            col = table.c.name if table is cat.collections else table.c.collection
            conn.execute(sa.delete(table).where(col == C))


def _coco(tmp_path, data: bytes):
    from pycocotools.coco import COCO

    path = tmp_path / f"coco-{uuid.uuid4().hex[:6]}.json"
    path.write_bytes(data)
    return COCO(str(path)), json.loads(data)


def _box(o: dict[str, Any]) -> list[float]:
    return [o["x0"], o["y0"], o["x1"] - o["x0"], o["y1"] - o["y0"]]


def _get(client, path: str, **params: Any):
    r = client.get(path, params={k: v for k, v in params.items() if v is not None})
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    return r


# ------------------------------------------------------------------------------------------------ COCO


def test_coco_round_trip_through_pycocotools(api_client, seeded, tmp_path):
    l1 = seeded["l1"]
    r = _get(api_client, f"{API}/export/coco", label=l1)
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["content-disposition"] == f'attachment; filename="{C}-coco.json"'
    coco, raw = _coco(tmp_path, r.content)
    # Human positives only: the negatives and the propagated labels are left out.
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == [l1]
    anns = coco.loadAnns(coco.getAnnIds())
    assert sorted(a["object_id"] for a in anns) == sorted(seeded["pos1"])
    frames_of = {
        (o["video_id"], o["segment_index"], o["frame_index"])
        for i, o in seeded["objects"].items()
        if i in seeded["pos1"]
    }
    assert len(coco.getImgIds()) == len(frames_of)
    for a in anns:
        obj = seeded["objects"][a["object_id"]]
        assert a["bbox"] == pytest.approx(_box(obj))
        assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])
        assert a["iscrowd"] == 0 and a["score"] == pytest.approx(obj["score"])
        assert a["label_source"] == "human" and a["detector_label"] == obj["label"]
        assert a["track_id"] == obj["track_id"] and a["track_id"]  # the object's stored track
        (img,) = coco.loadImgs([a["image_id"]])
        frame = seeded["frames"][(obj["video_id"], obj["segment_index"], obj["frame_index"])]
        assert (img["width"], img["height"]) == (frame["width"], frame["height"])
        assert img["file_name"] == f"{obj['video_id']}/{obj['segment_index']:04d}_{obj['frame_index']:05d}.jpg"
        assert img["video_id"] == obj["video_id"] and img["pts_s"] == pytest.approx(obj["pts_s"])
    assert raw["info"]["vidsearch"]["collection"] == C
    assert len({(i["video_id"], i["segment_index"], i["frame_index"]) for i in raw["images"]}) == len(raw["images"])


def test_coco_counts_propagated_labels_above_the_given_score(api_client, seeded, tmp_path):
    coco, _ = _coco(
        tmp_path, _get(api_client, f"{API}/export/coco", label=seeded["l1"], min_propagated_score=0.5).content
    )
    anns = coco.loadAnns(coco.getAnnIds())
    propagated = {a["object_id"]: a for a in anns if a["label_source"] == "propagated"}
    assert set(propagated) == {i for i, s in seeded["prop1"].items() if s >= 0.5}
    assert all(a["label_score"] == pytest.approx(0.9) for a in propagated.values())
    assert len(anns) == len(seeded["pos1"]) + 1
    assert not set(seeded["neg1"]) & {a["object_id"] for a in anns}


def test_coco_without_filters_has_a_category_per_label_and_an_annotation_per_label(api_client, seeded, tmp_path):
    l1, l2 = seeded["l1"], seeded["l2"]
    coco, _ = _coco(tmp_path, _get(api_client, f"{API}/export/coco").content)
    cats = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
    assert set(cats) == {l1, l2}  # names kept exactly (quotes, HTML)
    by_cat = {n: sorted(a["object_id"] for a in coco.loadAnns(coco.getAnnIds(catIds=[i]))) for n, i in cats.items()}
    # L2's negative (an L1 positive) is in L1 only; the objects with both labels have two annotations.
    assert by_cat == {l1: sorted(seeded["pos1"]), l2: sorted(seeded["pos2"])}
    both = set(seeded["pos1"]) & set(seeded["pos2"])
    assert both and len(coco.getAnnIds()) == len(seeded["pos1"]) + len(seeded["pos2"])
    wanted = {
        (o["video_id"], o["segment_index"], o["frame_index"])
        for i, o in seeded["objects"].items()
        if i in set(seeded["pos1"]) | set(seeded["pos2"])
    }
    assert len(coco.getImgIds()) == len(wanted)


def test_coco_video_filter(api_client, seeded, tmp_path):
    for video in (seeded["v1"], seeded["v2"]):
        r = _get(api_client, f"{API}/export/coco", video_id=video)
        assert video in r.headers["content-disposition"]
        coco, raw = _coco(tmp_path, r.content)
        wanted = [i for i in seeded["pos1"] + seeded["pos2"] if seeded["objects"][i]["video_id"] == video]
        assert sorted(a["object_id"] for a in coco.loadAnns(coco.getAnnIds())) == sorted(wanted)
        assert {i["video_id"] for i in raw["images"]} == {video}
    assert api_client.get(f"{API}/export/coco", params={"video_id": "nope"}).status_code == 404


def test_coco_zip_holds_every_image_decoding_at_its_recorded_size(api_client, seeded, tmp_path):
    r = _get(api_client, f"{API}/export/coco", label=seeded["l1"], images="true")
    assert r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert zf.testzip() is None
    coco, raw = _coco(tmp_path, zf.read("annotations.json"))
    images = coco.loadImgs(coco.getImgIds())
    assert images and set(zf.namelist()) == {"annotations.json"} | {f"images/{i['file_name']}" for i in images}
    for img in images:
        with Image.open(io.BytesIO(zf.read(f"images/{img['file_name']}"))) as im:
            im.load()
            assert im.format == "JPEG" and im.size == (img["width"], img["height"])
    # The second video's frames are the first video's stored frames: same bytes, other names.
    assert any(i["video_id"] == seeded["v2"] for i in raw["images"])


def test_the_zip_is_streamed_a_member_at_a_time(catalog, seeded):
    from vidsearch import export
    from vidsearch.stores.browse import CatalogBrowser

    out = export.coco(CatalogBrowser(catalog.engine), C, label=seeded["l1"], images=True)
    chunks = list(out.chunks)
    n_images = len(zipfile.ZipFile(io.BytesIO(b"".join(chunks))).namelist()) - 1
    assert n_images >= 2 and len(chunks) >= n_images + 1  # annotations, then one chunk per image at least
    # Nothing waits for the whole archive: no chunk is much more than one image or CHUNK_BYTES.
    biggest_image = max(len(c) for c in chunks[1:])
    assert len(chunks[0]) < 2 * export.CHUNK_BYTES + biggest_image


def test_export_refuses_bad_parameters_and_unknown_collections(api_client, seeded):
    assert api_client.get(f"{API}/export/coco", params={"min_propagated_score": 2}).status_code == 422
    r = api_client.get(f"{API}/export/mot", params={"label": "a\x01b"})
    assert r.status_code == 422 and "control" in r.json()["detail"]
    assert api_client.get("api/collections/no_such_collection/export/coco").status_code == 404
    assert api_client.get("api/collections/no_such_collection/export/mot").status_code == 404


def test_export_bounds_are_checked_before_anything_is_sent(catalog, seeded):
    from vidsearch import export
    from vidsearch.errors import InputError
    from vidsearch.stores.browse import CatalogBrowser

    browser = CatalogBrowser(catalog.engine)
    with pytest.raises(InputError, match="annotations"):
        export.coco(browser, C, max_annotations=3)
    with pytest.raises(InputError, match="images"):
        export.coco(browser, C, images=True, max_images=1)
    with pytest.raises(InputError, match="objects"):
        export.mot(browser, C, tracks=export.object_tracks(browser), max_boxes=3)
    ok = export.coco(browser, C, label=seeded["l1"])  # the checks pass: the stream is ready
    assert json.loads(ok.read())["categories"][0]["name"] == seeded["l1"]


# ------------------------------------------------------------------------------------------------- MOT


def _rank_tracks(seeded) -> dict[str, str]:
    """Test tracks: per video and segment, the k-th best-scoring object of each frame is track k."""
    per_frame: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for o in seeded["objects"].values():
        per_frame[(o["video_id"], o["segment_index"], o["frame_index"])].append(o)
    out = {}
    for (video, seg, _), objs in per_frame.items():
        for k, o in enumerate(sorted(objs, key=lambda o: (-o["score"], o["object_id"]))):
            out[o["object_id"]] = f"{video[:6]}-s{seg}-t{k}"
    return out


@pytest.fixture
def with_tracks(api_app, seeded):
    """The API's track source replaced by the test tracks (what the tracks table will provide)."""
    from vidsearch_api import export_routes

    app = api_app.state.vidsearch
    tracks = _rank_tracks(seeded)
    app.dependency_overrides[export_routes.track_of] = lambda: lambda o: tracks.get(str(o["object_id"]))
    yield tracks
    app.dependency_overrides.pop(export_routes.track_of, None)


def _load_gt(data: bytes, tmp_path):
    """gt.txt through motmetrics' MOT Challenge loader (it subtracts the 1-based offset)."""
    import motmetrics as mm

    path = tmp_path / f"gt-{uuid.uuid4().hex[:6]}.txt"
    path.write_bytes(data)
    return mm.io.loadtxt(str(path), fmt="mot15-2D", min_confidence=1)


def _read_csv(data: bytes) -> list[dict[str, str]]:
    import csv

    return list(csv.DictReader(io.StringIO(data.decode())))


def _check_sequence(zf, seeded, video: str, tracks: dict[str, str], tmp_path, members_of=None):
    frames = sorted(
        (f for k, f in seeded["frames"].items() if k[0] == video),
        key=lambda f: (f["pts_s"], f["segment_index"], f["frame_index"]),
    )
    number = {(f["segment_index"], f["frame_index"]): n for n, f in enumerate(frames, 1)}
    ini = configparser.ConfigParser()
    ini.read_string(zf.read(f"{video}/seqinfo.ini").decode())
    assert int(ini["Sequence"]["seqLength"]) == len(frames)
    assert float(ini["Sequence"]["frameRate"]) == 2.0  # the fixture's sample_fps
    assert (int(ini["Sequence"]["imWidth"]), int(ini["Sequence"]["imHeight"])) == (320, 180)
    listed = _read_csv(zf.read(f"{video}/frames.csv"))
    assert [(int(r["segment_index"]), int(r["frame_index"])) for r in listed] == list(number)
    gt = _load_gt(zf.read(f"{video}/gt/gt.txt"), tmp_path)
    ids = {int(r["id"]): r["track_id"] for r in _read_csv(zf.read(f"{video}/tracks.csv"))}
    got: dict[str, set] = defaultdict(set)
    for (frame, mot_id), row in gt.iterrows():
        got[ids[mot_id]].add((frame, round(row.X, 2), round(row.Y, 2), round(row.Width, 2), round(row.Height, 2)))
    want: dict[str, set] = defaultdict(set)
    members_of = members_of or {}
    for oid, key in tracks.items():
        o = seeded["objects"][oid]
        if o["video_id"] != video or (members_of and key not in members_of):
            continue
        x, y, w, h = _box(o)
        want[key].add(
            (number[(o["segment_index"], o["frame_index"])], round(x, 2), round(y, 2), round(w, 2), round(h, 2))
        )
    assert got == want
    return gt, ids


def test_mot_round_trip_through_motmetrics(api_client, seeded, with_tracks, tmp_path):
    r = _get(api_client, f"{API}/export/mot")
    assert r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    classes = json.loads(zf.read("classes.json"))
    assert [c["name"] for c in classes] == sorted([seeded["l1"], seeded["l2"]])
    for video in (seeded["v1"], seeded["v2"]):
        gt, ids = _check_sequence(zf, seeded, video, with_tracks, tmp_path)
        # MOT ids are 1..n in order of first appearance; every box is ground truth (conf 1).
        assert sorted(ids) == list(range(1, len(ids) + 1))
        assert set(gt["Confidence"]) == {1}
        firsts = gt.reset_index().groupby("Id")["FrameId"].min()
        assert list(firsts.sort_index()) == sorted(firsts)


def test_mot_label_filter_keeps_the_tracks_holding_the_label(api_client, seeded, with_tracks, tmp_path):
    l1 = seeded["l1"]
    zf = zipfile.ZipFile(io.BytesIO(_get(api_client, f"{API}/export/mot", label=l1, video_id=seeded["v1"]).content))
    assert {n.split("/")[0] for n in zf.namelist() if "/" in n} == {seeded["v1"]}
    assert json.loads(zf.read("classes.json")) == [{"id": 1, "name": l1}]
    holding = {with_tracks[i] for i in seeded["pos1"] if seeded["objects"][i]["video_id"] == seeded["v1"]}
    negative_only = {with_tracks[i] for i in seeded["neg1"]} - holding
    gt, ids = _check_sequence(zf, seeded, seeded["v1"], with_tracks, tmp_path, members_of=holding)
    assert set(ids.values()) == holding and not negative_only & set(ids.values())
    assert set(gt["ClassId"]) == {1}


def test_mot_from_a_track_source(catalog, seeded, tmp_path):
    """The interface the tracks table will fill: TrackRows of members, straight into `export.mot`."""
    from vidsearch import export
    from vidsearch.stores.browse import CatalogBrowser

    v1 = seeded["v1"]
    objs = seeded["by_video"][v1]
    chosen = objs[:3]
    members = [
        export.TrackMember(
            o["segment_index"], o["frame_index"], o["pts_s"], (o["x0"], o["y0"], o["x1"], o["y1"]), o["object_id"]
        )
        for o in chosen
    ]

    def source(collection: str, video_id: str):
        assert collection == C
        if video_id == v1:
            yield export.TrackRow("7b6f0d6e-0000-4000-8000-000000000001", v1, members)

    out = export.mot(CatalogBrowser(catalog.engine), C, tracks=source, video_id=v1)
    zf = zipfile.ZipFile(io.BytesIO(out.read()))
    tracks = {o["object_id"]: "7b6f0d6e-0000-4000-8000-000000000001" for o in chosen}
    gt, ids = _check_sequence(zf, seeded, v1, tracks, tmp_path)
    assert ids == {1: "7b6f0d6e-0000-4000-8000-000000000001"} and len(gt) == 3


def test_mot_tracks_are_the_stored_tracks(api_client, seeded, tmp_path):
    """One MOT id per stored track (`objects.track_id`), one line per detection."""
    zf = zipfile.ZipFile(io.BytesIO(_get(api_client, f"{API}/export/mot", video_id=seeded["v2"]).content))
    gt = _load_gt(zf.read(f"{seeded['v2']}/gt/gt.txt"), tmp_path)
    objects = seeded["by_video"][seeded["v2"]]
    stored = {o["track_id"] for o in objects}
    assert len(gt) == len(objects)
    assert gt.index.get_level_values("Id").nunique() == len(stored) < len(objects)  # tracks join detections


# ------------------------------------------------------------------------------------- authorisation


def test_export_routes_need_read_access(api_app, anon_client, seeded):
    from fastapi.testclient import TestClient
    from test_api_authz import _token

    paths = [f"{API}/export/coco", f"{API}/export/coco?images=true&label=x", f"{API}/export/mot"]
    for path in paths:
        assert anon_client.get(path).status_code == 401, path
    for role, status in (("viewer", 200), (None, 403), ("no-such-role", 403)):
        headers = {"Authorization": f"Bearer {_token(f'export-{role}', role)}"}
        with TestClient(api_app, base_url="http://testserver/vidsearch/", headers=headers) as client:
            for path in paths:
                r = client.get(path)
                assert r.status_code == status, (role, path, r.status_code, r.text[:200])


def test_export_slots_bound_concurrent_streams():
    from vidsearch.errors import TransientError
    from vidsearch_api.export_routes import ExportSlots

    slots = ExportSlots(1)
    release = slots.lease()
    with pytest.raises(TransientError):
        slots.lease()
    release()
    release()  # twice is once
    slots.lease()()
