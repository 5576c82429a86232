"""Search answers moments (issue 14): `group=track` gives one result per track, found through its best
member, with the track's time range and member count; the query object's own track is left out. Run
against the session's ingested video (real pipeline, Postgres and Weaviate) and checked against an
oracle computed from every stored vector and the catalog's tracks. Labels on tracks (one call labels
or unlabels every member) and the time-range filters too."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

pytestmark = pytest.mark.integration

C = "search_api"  # the session's ingested collection (tests/search/conftest.py)
API = f"api/collections/{C}"


@pytest.fixture(scope="module")
def members(ingested, search_services) -> dict[str, dict]:
    """{object id: its catalog row (track id, pts, ...)}."""
    return {m["object_id"]: m for m in search_services.catalog.track_members(C, ingested["video_id"])}


def test_every_object_has_a_track_and_the_tracks_table_agrees(ingested, members, search_services):
    assert set(members) == set(ingested["object_ids"])
    assert all(m["track_id"] for m in members.values())
    rows = {r["track_id"]: r for r in search_services.catalog.video_tracks(C, ingested["video_id"])}
    assert set(rows) == {m["track_id"] for m in members.values()}
    for track_id, row in rows.items():
        own = [m for m in members.values() if m["track_id"] == track_id]
        assert row["object_count"] == len(own)
        assert row["start_pts_s"] == min(m["pts_s"] for m in own)
        assert row["end_pts_s"] == max(m["pts_s"] for m in own)
        assert sum(row["label_votes"].values()) == len(own)
    assert ingested["summary"]["tracks"] == len(rows)


def test_similar_by_track_gives_each_track_once_ranked_by_its_best_member(api_client, ingested, members, vectors):
    # A query object without labels: other tests label objects, and a positive label would also
    # exclude the objects labelled negative for it (not what this oracle models).
    oid = next(o for o in ingested["object_ids"] if api_client.get(f"{API}/objects/{o}").json()["labels"] == [])
    own_track = members[oid]["track_id"]
    r = api_client.get(f"{API}/objects/{oid}/similar", params={"k": 5, "min_similarity": -1, "group": "track"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["group"] == "track"
    results = body["results"]
    tracks = [t["track_id"] for t in results]
    assert len(tracks) == len(set(tracks)) and own_track not in tracks
    sims = [t["similarity"] for t in results]
    assert sims == sorted(sims, reverse=True)
    # The oracle: each other track's best member similarity, the top 5.
    best: dict[str, float] = {}
    for other, m in members.items():
        if m["track_id"] == own_track:
            continue
        sim = float(vectors[oid] @ vectors[other])
        best[m["track_id"]] = max(best.get(m["track_id"], -2.0), sim)
    oracle = sorted(best.values(), reverse=True)[: len(results)]
    assert sims == pytest.approx(oracle, abs=1e-4)
    assert len(results) == min(5, len(best))
    for t in results:
        member = members[t["best"]["object_id"]]
        assert member["track_id"] == t["track_id"] and t["best"]["track_id"] == t["track_id"]
        assert t["start_pts_s"] <= t["best"]["pts_s"] <= t["end_pts_s"]
        assert t["object_count"] == sum(1 for m in members.values() if m["track_id"] == t["track_id"])
        assert t["best"]["crop_url"].endswith(f"/objects/{t['best']['object_id']}/crop")


def test_text_search_by_track_and_by_object(api_client):
    by_track = api_client.get(f"{API}/search/text", params={"q": "a red square", "k": 4, "group": "track"})
    assert by_track.status_code == 200, by_track.text
    tracks = [t["track_id"] for t in by_track.json()["results"]]
    assert len(tracks) == len(set(tracks)) > 0
    by_object = api_client.get(f"{API}/search/text", params={"q": "a red square", "k": 4}).json()
    assert by_object["group"] == "object" and all("object_id" in o for o in by_object["results"])
    assert api_client.get(f"{API}/search/text", params={"q": "x", "group": "frame"}).status_code == 422


def test_labelling_a_track_labels_every_member_and_one_call_undoes_it(api_client, ingested, members):
    by_track: dict[str, list[str]] = {}
    for oid, m in members.items():
        by_track.setdefault(m["track_id"], []).append(oid)
    track_id, member_ids = max(by_track.items(), key=lambda kv: len(kv[1]))
    assert len(member_ids) > 1, "the tracker should join some detections"
    name = f"track-label-{uuid.uuid4().hex[:8]}"

    r = api_client.post(f"{API}/labels", json={"track_ids": [track_id], "name": name, "polarity": "positive"})
    assert r.status_code == 200, r.text
    assert r.json()["updated"] == len(member_ids)
    labelled = {oid for oid in ingested["object_ids"] if _has_label(api_client, oid, name)}
    assert labelled == set(member_ids)
    events = api_client.get(f"{API}/labels/{name}/events").json()
    assert {e["object_id"] for e in events} == set(member_ids) and {e["action"] for e in events} == {"add"}

    r = api_client.request("DELETE", f"{API}/labels", json={"track_ids": [track_id], "name": name})
    assert r.status_code == 200, r.text
    assert r.json()["removed"] == len(member_ids)
    assert not any(_has_label(api_client, oid, name) for oid in member_ids)

    # Bad input: nothing named, an unknown track, a malformed id.
    body = {"name": name, "polarity": "positive"}
    assert api_client.post(f"{API}/labels", json=body).status_code == 422
    assert api_client.post(f"{API}/labels", json={**body, "track_ids": [str(uuid.uuid4())]}).status_code == 404
    assert api_client.post(f"{API}/labels", json={**body, "track_ids": ["nope"]}).status_code == 422


def _has_label(client, oid: str, name: str) -> bool:
    return any(lb["name"] == name for lb in client.get(f"{API}/objects/{oid}").json()["labels"])


def test_time_range_filters_keep_results_inside_it(api_client, ingested, members):
    oid = ingested["object_ids"][0]
    times = sorted({m["pts_s"] for m in members.values()})
    lo, hi = times[len(times) // 4], times[3 * len(times) // 4]
    for group in ("object", "track"):
        r = api_client.get(
            f"{API}/objects/{oid}/similar",
            params={"k": 50, "min_similarity": -1, "group": group, "from_s": lo, "to_s": hi},
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert results
        seen = [o["pts_s"] for o in results] if group == "object" else [t["best"]["pts_s"] for t in results]
        assert all(lo <= t <= hi for t in seen), (group, lo, hi, seen)
        inside = [m for o, m in members.items() if lo <= m["pts_s"] <= hi and o != oid]
        if group == "object":
            assert len(results) == min(50, len(inside))
    bad = api_client.get(f"{API}/objects/{oid}/similar", params={"from_s": 5, "to_s": 1})
    assert bad.status_code == 422 and "from_s" in bad.text
    assert api_client.get(f"{API}/search/text", params={"q": "x", "from_s": -1}).status_code == 422


def test_query_by_example_finds_the_object_whose_pixels_were_uploaded(api_client, ingested, members):
    """A frame image uploaded with an object's box: the object itself comes first (the same pixels,
    embedded as its crop was), by object and by track."""
    oid = ingested["object_ids"][len(ingested["object_ids"]) // 2]
    obj = api_client.get(f"{API}/objects/{oid}").json()
    frames = api_client.get(f"{API}/videos/{obj['video_id']}/frames", params={"limit": 200}).json()["frames"]
    (frame,) = [
        f for f in frames if (f["segment_index"], f["frame_index"]) == (obj["segment_index"], obj["frame_index"])
    ]
    jpeg = api_client.get(frame["image_url"].removeprefix("/vidsearch/")).content
    box = ",".join(f"{v:g}" for v in obj["box"])

    def search(**params):
        return api_client.post(
            f"{API}/search/image",
            params={"k": 5, "min_similarity": -1, **params},
            files={"image": ("frame.jpg", jpeg, "image/jpeg")},
            data={"box": box},
        )

    r = search()
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == {"width": frame["width"], "height": frame["height"], "box": obj["box"]}
    assert body["results"][0]["object_id"] == oid and body["results"][0]["similarity"] > 0.99
    by_track = search(group="track").json()["results"]
    assert by_track[0]["track_id"] == members[oid]["track_id"]

    # Bad input: not an image, a box outside it, a malformed box, an oversized upload.
    bad = api_client.post(f"{API}/search/image", files={"image": ("x.jpg", b"not an image", "image/jpeg")})
    assert bad.status_code == 422 and "image" in bad.text
    outside = api_client.post(
        f"{API}/search/image", files={"image": ("f.jpg", jpeg, "image/jpeg")}, data={"box": "0,0,99999,10"}
    )
    assert outside.status_code == 422 and "box" in outside.text
    malformed = api_client.post(
        f"{API}/search/image", files={"image": ("f.jpg", jpeg, "image/jpeg")}, data={"box": "a,b"}
    )
    assert malformed.status_code == 422
    huge = api_client.post(
        f"{API}/search/image", files={"image": ("f.jpg", b"\xff" * (10 * 1024 * 1024 + 1), "image/jpeg")}
    )
    assert huge.status_code == 422 and "MiB" in huge.text


def test_the_timeline_lists_the_video_tracks_with_their_labels(api_client, ingested, members):
    r = api_client.get(f"{API}/videos/{ingested['video_id']}/tracks")
    assert r.status_code == 200, r.text
    timeline = r.json()
    assert [t["track_id"] for t in timeline] == sorted(
        {m["track_id"] for m in members.values()},
        key=lambda tid: (min(m["pts_s"] for m in members.values() if m["track_id"] == tid), tid),
    )
    starts = [t["start_pts_s"] for t in timeline]
    assert starts == sorted(starts)
    track = max(timeline, key=lambda t: t["object_count"])
    name = f"timeline-{uuid.uuid4().hex[:8]}"
    api_client.post(f"{API}/labels", json={"track_ids": [track["track_id"]], "name": name, "polarity": "positive"})
    again = {t["track_id"]: t for t in api_client.get(f"{API}/videos/{ingested['video_id']}/tracks").json()}
    assert {"name": name, "objects": track["object_count"]} in again[track["track_id"]]["labels"]
    assert not any(lb["name"] == name for tid, t in again.items() if tid != track["track_id"] for lb in t["labels"])
    api_client.request("DELETE", f"{API}/labels", json={"track_ids": [track["track_id"]], "name": name})
    assert api_client.get(f"{API}/videos/{'0' * 32}/tracks").status_code == 404


def test_propagation_by_track_labels_whole_tracks_scored_by_their_track_vectors(
    api_client, ingested, members, vectors, search_services
):
    """Track to track: the tracks nearest the labelled objects' tracks (by track vector: the mean
    direction of a track's member vectors) take the label, every member of each with its track's
    score; human labels stay; one undo removes them all. Checked against an oracle computed from the
    stored object vectors."""
    from vidsearch.tracks import mean_direction

    by_track: dict[str, list[str]] = {}
    for oid, m in members.items():
        by_track.setdefault(m["track_id"], []).append(oid)
    track_vec = {t: mean_direction([vectors[o] for o in ids]).astype(np.float64) for t, ids in by_track.items()}
    stored = search_services.index().track_vectors(C, sorted(by_track))
    assert set(stored) == set(by_track)
    for t, v in stored.items():
        assert np.allclose(v, track_vec[t], atol=1e-5)

    ordered = sorted(by_track, key=lambda t: (-len(by_track[t]), t))
    source_track, negative_track = ordered[0], ordered[1]
    positive, negative = by_track[source_track][0], by_track[negative_track][0]
    name = f"track-spread-{uuid.uuid4().hex[:8]}"
    for oid, polarity in ((positive, "positive"), (negative, "negative")):
        r = api_client.post(f"{API}/labels", json={"object_ids": [oid], "name": name, "polarity": polarity})
        assert r.status_code == 200, r.text

    def score(t: str) -> float:
        return float(track_vec[t] @ track_vec[source_track]) - max(float(track_vec[t] @ track_vec[negative_track]), 0.0)

    others = sorted((score(t), t) for t in by_track if t not in (source_track, negative_track))
    scores = [s for s, _ in others]
    # A threshold in the middle of the widest gap of the upper half: some tracks in, some out, no tie.
    gaps = [(scores[i + 1] - scores[i], i) for i in range(len(scores) // 2, len(scores) - 1)]
    _, at = max(gaps)
    threshold = max(0.0, (scores[at] + scores[at + 1]) / 2)
    chosen = {t for s, t in others if s >= threshold}
    assert chosen and len(chosen) < len(others)

    body = {"threshold": threshold, "unit": "track"}
    r = api_client.post(f"{API}/labels/{name}/propagation/preview", json=body)
    assert r.status_code == 200, r.text
    preview = r.json()
    assert {t["track_id"] for t in preview["tracks"]} == chosen
    for t in preview["tracks"]:
        assert abs(t["score"] - score(t["track_id"])) < 1e-4 and t["object_count"] == len(by_track[t["track_id"]])
    # Every member of each chosen track; none of the source's or the negative's tracks.
    assert {c["object_id"] for c in preview["candidates"]} == {o for t in chosen for o in by_track[t]}
    assert preview["count"] == len(preview["candidates"])

    r = api_client.post(f"{API}/labels/{name}/propagation", json=body)
    assert r.status_code == 200, r.text
    applied = r.json()
    assert applied["count"] == preview["count"]
    runs = api_client.get(f"{API}/labels/{name}/propagations").json()
    assert [(p["propagation_id"], p["unit"], p["count"]) for p in runs] == [
        (applied["propagation_id"], "track", applied["count"])
    ]
    for t in chosen:
        for oid in by_track[t]:
            (label,) = [lb for lb in api_client.get(f"{API}/objects/{oid}").json()["labels"] if lb["name"] == name]
            assert label["source"] == "propagated" and abs(label["score"] - score(t)) < 1e-4
    # The human labels stay as a person set them.
    for oid, polarity in ((positive, "positive"), (negative, "negative")):
        (label,) = [lb for lb in api_client.get(f"{API}/objects/{oid}").json()["labels"] if lb["name"] == name]
        assert (label["source"], label["polarity"]) == ("human", polarity)

    r = api_client.delete(f"{API}/propagations/{applied['propagation_id']}")
    assert r.status_code == 200 and r.json()["removed"] == applied["count"]
    assert not any(_has_label(api_client, o, name) for t in chosen for o in by_track[t])

    # Bad input: an unknown unit; by object still works beside it.
    assert (
        api_client.post(f"{API}/labels/{name}/propagation/preview", json={**body, "unit": "frame"}).status_code == 422
    )
    by_object = api_client.post(f"{API}/labels/{name}/propagation/preview", json={"threshold": threshold})
    assert by_object.status_code == 200 and by_object.json()["tracks"] == []
