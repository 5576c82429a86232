"""The search and labeling API (docs/api.md) against real data: a generated video ingested by the pipeline
into the session's Postgres and Weaviate with tiny models, the app mounted under /vidsearch as in Airflow,
authenticated with JWTs issued by Airflow's auth manager.

Similarities are checked against an oracle computed here with numpy from the vectors stored in Weaviate.
"""

from __future__ import annotations

import io
import re
import uuid

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.integration

C = "search_api"
API = f"api/collections/{C}"
STRANGE_NAMES = ["<script>alert(1)</script>", 'O\'Brien "x"', "'; DROP TABLE labels; --", "a/b ü 🐈 %2F?#"]


def _fresh(prefix: str = "label") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _q(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _sim(vectors, a: str, b: str) -> float:
    return float(vectors[a] @ vectors[b])


def _label(client, ids, name, polarity="positive"):
    r = client.post(f"{API}/labels", json={"object_ids": list(ids), "name": name, "polarity": polarity})
    assert r.status_code == 200, r.text
    return r.json()


def _labels_of(client, oid) -> dict[str, dict]:
    r = client.get(f"{API}/objects/{oid}")
    assert r.status_code == 200, r.text
    labels = r.json()["labels"]
    names = [lb["name"] for lb in labels]
    assert len(names) == len(set(names)), "at most one entry per label name"
    return {lb["name"]: lb for lb in labels}


# ------------------------------------------------------------------------------------ auth, schema


def test_openapi_schema_is_published_without_credentials(anon_client):
    r = anon_client.get("openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in [
        "/api/collections",
        "/api/collections/{c}/videos",
        "/api/collections/{c}/videos/{video_id}/frames",
        "/api/collections/{c}/videos/{video_id}/frames/{segment_index}/{frame_index}/image",
        "/api/collections/{c}/objects/{object_id}",
        "/api/collections/{c}/objects/{object_id}/crop",
        "/api/collections/{c}/objects/{object_id}/similar",
        "/api/collections/{c}/search/text",
        "/api/collections/{c}/labels",
        "/api/collections/{c}/labels/{name}/propagation/preview",
        "/api/collections/{c}/labels/{name}/propagation",
        "/api/collections/{c}/labels/{name}/propagations",
        "/api/collections/{c}/propagations/{propagation_id}",
        "/api/collections/{c}/labels/{name}/events",
    ]:
        assert path in paths, path
    assert set(paths["/api/collections/{c}/labels"]) == {"get", "post", "delete"}


PUBLIC = {"/openapi.json", "/docs", "/docs/oauth2-redirect"}


def _routes(api_app):
    from starlette.routing import Route

    app = api_app.state.vidsearch
    for route in app.routes:
        if isinstance(route, Route) and route.path not in PUBLIC:
            for method in sorted(route.methods - {"HEAD"}):
                yield method, route.path


def _concrete(path: str, ingested) -> str:
    values = {
        "c": C,
        "video_id": ingested["video_id"],
        "segment_index": "0",
        "frame_index": "0",
        "object_id": ingested["object_ids"][0],
        "name": "anything",
        "propagation_id": str(uuid.uuid4()),
        "path": "app.js",
    }
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path).lstrip("/")


def test_every_route_answers_401_without_credentials(api_app, anon_client, ingested):
    routes = list(_routes(api_app))
    assert len(routes) >= 17, routes  # 16 API method+path pairs, the page and its static files
    for method, path in routes:
        r = anon_client.request(method, _concrete(path, ingested), json={})
        assert r.status_code == 401, (method, path, r.status_code, r.text)


def test_bad_tokens_are_refused_and_the_ui_cookie_is_accepted(anon_client, api_token):
    r = anon_client.get("api/collections", headers={"Authorization": "Bearer not-a-jwt"})
    assert r.status_code in (401, 403)  # Airflow answers 403 "Invalid JWT token"
    tampered = api_token[:-4] + ("AAAA" if not api_token.endswith("AAAA") else "BBBB")
    assert anon_client.get("api/collections", headers={"Authorization": f"Bearer {tampered}"}).status_code in (401, 403)
    r = anon_client.get("api/collections", cookies={"_token": api_token})
    assert r.status_code == 200, r.text


def test_unauthenticated_browser_gets_a_sign_in_page_with_no_data(anon_client, api_token):
    r = anon_client.get("")
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
    assert 'id="login-link" href="/auth/login?next=%2Fvidsearch%2F"' in r.text
    assert C not in r.text
    r = anon_client.get("", headers={"Authorization": f"Bearer {api_token[:-3]}xyz"})
    assert r.status_code in (401, 403) and "login-link" in r.text
    assert anon_client.get("static/app.js").status_code == 401


def test_ui_page_and_static_files_are_served(api_client):
    r = api_client.get("")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert api_client.get("static/../app.py").status_code == 404
    assert api_client.get("static/%2e%2e/app.py").status_code == 404


# ----------------------------------------------------------------------------------------- browse


def test_collections_and_videos(api_client, ingested):
    r = api_client.get("api/collections")
    assert r.status_code == 200
    mine = {c["name"]: c for c in r.json()}[C]
    assert mine["videos"] == 1 and mine["objects"] == len(ingested["object_ids"])
    assert mine["embedding_dim"] > 0 and mine["embedder_model"]

    r = api_client.get(f"{API}/videos")
    assert r.status_code == 200
    (video,) = r.json()
    assert video["video_id"] == ingested["video_id"]
    assert video["state"] == "done"
    assert video["segments"] == video["segments_done"] == ingested["segments"]
    assert video["segments_quarantined"] == 0
    assert video["frames"] == ingested["frames"] and video["objects"] == len(ingested["object_ids"])
    assert video["width"] == 320 and video["height"] == 180
    assert video["duration_s"] == pytest.approx(6.0, abs=0.1) and video["frame_rate"] == pytest.approx(25, abs=0.1)
    assert video["last_run_id"]


def test_frames_pages_are_ordered_and_carry_their_objects_and_images(api_client, ingested):
    base = f"{API}/videos/{ingested['video_id']}/frames"
    r = api_client.get(base)
    assert r.status_code == 200
    page = r.json()
    assert page["total"] == ingested["frames"] == len(page["frames"])
    pts = [f["pts_s"] for f in page["frames"]]
    assert pts == sorted(pts)
    assert sum(len(f["objects"]) for f in page["frames"]) == len(ingested["object_ids"])
    for frame in page["frames"]:
        for obj in frame["objects"]:
            assert (obj["segment_index"], obj["frame_index"]) == (frame["segment_index"], frame["frame_index"])

    # Paging: offset/limit slices of the same order.
    parts = []
    for offset in range(0, page["total"], 5):
        part = api_client.get(base, params={"offset": offset, "limit": 5}).json()
        assert part["total"] == page["total"]
        parts += part["frames"]
    assert parts == page["frames"]

    frame = page["frames"][1]
    assert frame["image_url"].startswith("/vidsearch/api/")
    r = api_client.get(frame["image_url"].removeprefix("/vidsearch/"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (frame["width"], frame["height"]) == (320, 180)


def test_object_and_its_crop(api_client, api_app, ingested):
    oid = ingested["object_ids"][3]
    row = ingested["objects"][oid]
    r = api_client.get(f"{API}/objects/{oid}")
    assert r.status_code == 200
    obj = r.json()
    assert obj["object_id"] == oid and obj["video_id"] == ingested["video_id"]
    assert obj["box"] == pytest.approx([row["x0"], row["y0"], row["x1"], row["y1"]])
    assert obj["detector_label"] == row["label"] and obj["score"] == pytest.approx(row["score"])
    assert obj["crop_url"] == f"/vidsearch/{API}/objects/{oid}/crop"
    assert obj["labels"] == []

    r = api_client.get(obj["crop_url"].removeprefix("/vidsearch/"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    w, h = Image.open(io.BytesIO(r.content)).size
    assert abs(w - (row["x1"] - row["x0"])) <= 1.5 and abs(h - (row["y1"] - row["y0"])) <= 1.5
    cache = api_app.state.vidsearch.state.search.get().crops
    assert (C, oid) in cache._data  # cut once, then served from memory
    assert api_client.get(obj["crop_url"].removeprefix("/vidsearch/")).content == r.content


# ----------------------------------------------------------------------------------------- search


def test_similar_objects_are_the_nearest_neighbours_best_first(api_client, ingested, vectors):
    oid = ingested["object_ids"][0]
    r = api_client.get(f"{API}/objects/{oid}/similar", params={"k": 10, "min_similarity": -1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"]["object_id"] == oid
    results = body["results"]
    assert len(results) == 10
    sims = [o["similarity"] for o in results]
    assert sims == sorted(sims, reverse=True)
    assert oid not in {o["object_id"] for o in results}
    for o in results:
        assert o["similarity"] == pytest.approx(_sim(vectors, oid, o["object_id"]), abs=1e-4)
        assert o["crop_url"].endswith(f"/objects/{o['object_id']}/crop")
    # Nothing better was missed (up to float noise): the 10th result is at least the oracle's 10th.
    oracle = sorted((_sim(vectors, oid, other) for other in vectors if other != oid), reverse=True)
    assert sims[-1] >= oracle[9] - 1e-4 and sims[0] == pytest.approx(oracle[0], abs=1e-4)

    # k and min_similarity are honoured.
    assert len(api_client.get(f"{API}/objects/{oid}/similar", params={"k": 3}).json()["results"]) <= 3
    # A cut in a gap between similarities near the median: identical crops have identical vectors, and
    # at a tie float32 rounding (not the API) would decide which side each copy falls on.
    middle = len(oracle) // 2
    near_middle = sorted(range(len(oracle) - 1), key=lambda i: abs(i - middle))
    gap = next(i for i in near_middle if oracle[i] - oracle[i + 1] > 1e-4)
    cut = (oracle[gap] + oracle[gap + 1]) / 2
    r = api_client.get(f"{API}/objects/{oid}/similar", params={"k": 200, "min_similarity": cut})
    got = r.json()["results"]
    assert got and all(o["similarity"] >= cut for o in got)
    assert len(got) == pytest.approx(sum(s >= cut for s in oracle), abs=2)


def test_similar_filters_by_video_and_detector_label(api_client, ingested):
    oid = ingested["object_ids"][0]
    url = f"{API}/objects/{oid}/similar"
    same = api_client.get(url, params={"k": 200, "min_similarity": -1, "video_id": ingested["video_id"]}).json()
    assert len(same["results"]) == len(ingested["object_ids"]) - 1
    assert api_client.get(url, params={"video_id": "0" * 32, "min_similarity": -1}).json()["results"] == []
    for det in ingested["detector_labels"][:2]:
        res = api_client.get(url, params={"k": 200, "min_similarity": -1, "detector_label": det}).json()["results"]
        expected = sum(1 for i, o in ingested["objects"].items() if o["label"] == det and i != oid)
        assert len(res) == expected and all(o["detector_label"] == det for o in res)


def test_similar_label_filter_and_negative_exclusion(api_client, ingested, vectors):
    ids = ingested["object_ids"]
    query = ids[0]
    name = _fresh("dog")
    ranked = sorted((i for i in ids if i != query), key=lambda i: -_sim(vectors, query, i))
    carriers = ranked[5:9]
    _label(api_client, carriers, name, "positive")
    url = f"{API}/objects/{query}/similar"
    res = api_client.get(url, params={"k": 200, "min_similarity": -1, "label": name}).json()["results"]
    assert {o["object_id"] for o in res} == set(carriers)
    assert all(any(lb["name"] == name and lb["polarity"] == "positive" for lb in o["labels"]) for o in res)

    # The query carries `name` positively: objects labeled negative for `name` are never proposed.
    _label(api_client, [query], name, "positive")
    nearest = ranked[:3]
    _label(api_client, nearest, name, "negative")
    res = api_client.get(url, params={"k": 20, "min_similarity": -1}).json()["results"]
    got = [o["object_id"] for o in res]
    assert len(got) == 20 and not set(nearest) & set(got)
    assert res[0]["similarity"] == pytest.approx(_sim(vectors, query, ranked[3]), abs=1e-4)
    # A negative label for another name does not exclude anything.
    other = _fresh("other")
    _label(api_client, [ranked[3]], other, "negative")
    res = api_client.get(url, params={"k": 20, "min_similarity": -1}).json()["results"]
    assert ranked[3] in {o["object_id"] for o in res}


def test_text_search_returns_objects_with_similarities(api_client, api_app, ingested, vectors):
    r = api_client.get(f"{API}/search/text", params={"q": "a red car", "k": 7, "min_similarity": -1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == "a red car"
    sims = [o["similarity"] for o in body["results"]]
    assert len(sims) == 7 and sims == sorted(sims, reverse=True)
    assert all(-1 <= s <= 1 for s in sims)
    # The collection's embedder (loaded once per process, then cached) embeds the text into the crops'
    # space: the similarities are the dot products with the stored vectors.
    search = api_app.state.vidsearch.state.search.get()
    model, loaded = search.embedder_for(C)
    assert search.embedder_for(C)[1] is loaded
    assert model == {c["name"]: c for c in api_client.get("api/collections").json()}[C]["embedder_model"]
    text = loaded.embedder.embed_texts(["a red car"])[0].astype(np.float64)
    for o in body["results"]:
        assert o["similarity"] == pytest.approx(float(vectors[o["object_id"]] @ text), abs=1e-4)
    best = max(float(v @ text) for v in vectors.values())
    assert sims[0] == pytest.approx(best, abs=1e-4)

    det = body["results"][0]["detector_label"]
    res = api_client.get(
        f"{API}/search/text", params={"q": "a red car", "k": 200, "min_similarity": -1, "detector_label": det}
    ).json()["results"]
    assert res and all(o["detector_label"] == det for o in res)
    cut = sims[3]
    res = api_client.get(f"{API}/search/text", params={"q": "a red car", "k": 200, "min_similarity": cut}).json()
    assert all(o["similarity"] >= cut for o in res["results"]) and len(res["results"]) >= 4
    # Any text is a query, HTML and quotes included.
    r = api_client.get(f"{API}/search/text", params={"q": "<b>cat</b> 'dog' \"x\"", "min_similarity": -1})
    assert r.status_code == 200 and r.json()["query"] == "<b>cat</b> 'dog' \"x\""


# ----------------------------------------------------------------------------------------- labels


def test_labels_add_remove_count_and_audit(api_client, ingested):
    ids = ingested["object_ids"][10:16]
    name = _fresh("cat")
    assert _label(api_client, ids[:4], name, "positive") == {"updated": 4}
    assert _label(api_client, ids[4:], name, "negative") == {"updated": 2}
    assert _label(api_client, ids[:2] + ids[:2], name, "positive") == {"updated": 2}  # duplicates once
    counts = {c["name"]: c for c in api_client.get(f"{API}/labels").json()}
    assert counts[name] == {"name": name, "positive": 4, "negative": 2, "propagated": 0}
    assert _labels_of(api_client, ids[0])[name] == {
        "name": name,
        "polarity": "positive",
        "source": "human",
        "score": None,
        "propagation_id": None,
    }
    # Flip one to negative, then remove two (one of them twice).
    _label(api_client, [ids[3]], name, "negative")
    r = api_client.request("DELETE", f"{API}/labels", json={"object_ids": [ids[0], ids[1]], "name": name})
    assert r.status_code == 200 and r.json() == {"removed": 2}
    r = api_client.request("DELETE", f"{API}/labels", json={"object_ids": [ids[0]], "name": name})
    assert r.json() == {"removed": 0}
    counts = {c["name"]: c for c in api_client.get(f"{API}/labels").json()}
    assert counts[name] == {"name": name, "positive": 1, "negative": 3, "propagated": 0}
    assert name not in _labels_of(api_client, ids[0])

    events = api_client.get(f"{API}/labels/{_q(name)}/events").json()
    assert [e["action"] for e in events[:2]] == ["remove", "remove"]
    assert len(events) == 4 + 2 + 2 + 1 + 2
    assert all(e["actor"] == "search-tester" and e["name"] == name for e in events)
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    assert {e["object_id"] for e in events if e["action"] == "remove"} == {ids[0], ids[1]}
    assert api_client.get(f"{API}/labels/{_q(name)}/events", params={"limit": 3}).json() == events[:3]


@pytest.fixture(scope="module")
def live_client(live_api):
    """httpx on the live uvicorn server: it decodes the path once, as production does (the TestClient
    decodes percent-escapes twice, which would turn a literal '%2F' in a label name into '/')."""
    import httpx

    with httpx.Client(base_url=live_api.base_url, headers=live_api.headers, timeout=30) as client:
        yield client


@pytest.mark.parametrize("name", STRANGE_NAMES)
def test_label_names_are_stored_and_returned_exactly(live_client, ingested, name, catalog):
    import sqlalchemy as sa

    api_client = live_client
    oid = ingested["object_ids"][20]
    assert _label(api_client, [oid], name, "positive") == {"updated": 1}
    assert _labels_of(api_client, oid)[name]["name"] == name
    assert name in {c["name"] for c in api_client.get(f"{API}/labels").json()}
    events = api_client.get(f"{API}/labels/{_q(name)}/events").json()
    assert events and all(e["name"] == name for e in events)
    r = api_client.post(f"{API}/labels/{_q(name)}/propagation/preview", json={"threshold": 0.0})
    assert r.status_code == 200, r.text
    assert api_client.get(f"{API}/labels/{_q(name)}/propagations").status_code == 200
    res = api_client.get(
        f"{API}/objects/{ingested['object_ids'][21]}/similar", params={"label": name, "min_similarity": -1}
    ).json()["results"]
    assert [o["object_id"] for o in res] == [oid]
    with catalog.engine.connect() as conn:  # the table is still there, and holds the name verbatim
        stored = conn.execute(sa.text("SELECT name FROM labels WHERE name = :n"), {"n": name}).scalars().all()
    assert stored == [name]
    r = api_client.request("DELETE", f"{API}/labels", json={"object_ids": [oid], "name": name})
    assert r.json() == {"removed": 1}


# ------------------------------------------------------------------------------------ propagation


def _oracle_scores(vectors, sources, negatives, exclude):
    out = {}
    for oid in vectors:
        if oid in exclude:
            continue
        pos = max(_sim(vectors, oid, s) for s in sources)
        neg = max((_sim(vectors, oid, n) for n in negatives), default=0.0)
        out[oid] = pos - max(neg, 0.0)
    return out


def test_propagation_preview_is_monotonic_and_matches_the_oracle(api_client, ingested, vectors):
    ids = ingested["object_ids"]
    name = _fresh("car")
    sources, negatives = [ids[30], ids[60]], [ids[45]]
    _label(api_client, sources, name, "positive")
    _label(api_client, negatives, name, "negative")
    url = f"{API}/labels/{_q(name)}/propagation/preview"
    full = api_client.post(url, json={"threshold": 0.0, "limit": 1000}).json()
    oracle = _oracle_scores(vectors, sources, negatives, set(sources) | set(negatives))
    expected = {i for i, s in oracle.items() if s >= 0.0}
    got = {c["object_id"]: c["score"] for c in full["candidates"]}
    assert full["count"] == len(got) and len(got) >= len(expected) - 2
    assert not (set(sources) | set(negatives)) & set(got)
    for oid, score in got.items():
        assert score == pytest.approx(oracle[oid], abs=1e-4)
    scores = [c["score"] for c in full["candidates"]]
    assert scores == sorted(scores, reverse=True)

    # Counts fall (never rise) as the threshold rises, and agree with the full preview.
    thresholds = sorted({0.0, *np.quantile(scores, [0.1, 0.5, 0.9]).round(6).tolist(), 1.0})
    counts = []
    for t in thresholds:
        body = api_client.post(url, json={"threshold": t}).json()
        assert all(c["score"] >= t for c in body["candidates"])
        assert body["count"] == len(body["candidates"]) == sum(s >= t for s in scores)
        counts.append(body["count"])
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    limited = api_client.post(url, json={"threshold": 0.0, "limit": 5}).json()
    assert limited["count"] == 5 and limited["candidates"] == full["candidates"][:5]

    # A negative pushes its neighbours down: without it the scores are the plain source similarities.
    _label_rm = api_client.request("DELETE", f"{API}/labels", json={"object_ids": negatives, "name": name})
    assert _label_rm.json() == {"removed": 1}
    plain = {c["object_id"]: c["score"] for c in api_client.post(url, json={"threshold": 0.0}).json()["candidates"]}
    assert all(plain[i] >= got[i] - 1e-6 for i in got)


@pytest.mark.parametrize("limit", [7, 40])
def test_propagation_from_many_sources_equals_the_one_by_one_computation(api_client, ingested, service, limit):
    """The deepening searches (a few results per source, more only where they can still matter)
    give what searching every source to the end gives: the same items, the same scores."""
    ids = ingested["object_ids"]
    name = _fresh("many")
    sources, negatives = ids[0:60:2], ids[1:12:4]
    _label(api_client, sources, name, "positive")
    _label(api_client, negatives, name, "negative")
    body = api_client.post(
        f"{API}/labels/{_q(name)}/propagation/preview", json={"threshold": 0.0, "limit": limit}
    ).json()
    got = [(c["object_id"], c["score"]) for c in body["candidates"]]

    # One by one: every source searched as deep as the index goes, every hit scored.
    human = set(sources) | set(negatives)
    stored = service.index.vectors(C, sources + negatives)
    negs = np.stack([stored[n] / np.linalg.norm(stored[n]) for n in negatives])
    best: dict[str, float] = {}
    for s in sources:
        for oid, sim in service.index.near(C, stored[s], 10_000, 0.0):
            if oid not in human:
                best[oid] = max(best.get(oid, -2.0), sim)
    cand = service.index.vectors(C, list(best))
    scores = {}
    for oid, pos in best.items():
        v = cand[oid] / np.linalg.norm(cand[oid])
        scores[oid] = pos - max(float((negs @ v).max()), 0.0)
    expected = sorted(((i, s) for i, s in scores.items() if s >= 0.0), key=lambda t: (-t[1], t[0]))[:limit]
    assert len(got) == len(expected) == body["count"]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-5)
    # The same items, up to the order of equal scores (identical crops have identical vectors).
    for oid, score in got:
        assert scores[oid] == pytest.approx(score, abs=1e-5)
    last = got[-1][1]
    assert {i for i, sc in expected if sc > last + 1e-5} <= {i for i, _ in got}


def test_propagation_apply_provenance_human_wins_and_undo(api_client, ingested, vectors, catalog):
    ids = ingested["object_ids"]
    name = _fresh("person")
    sources, negatives = [ids[2], ids[50]], [ids[70]]
    _label(api_client, sources, name, "positive")
    _label(api_client, negatives, name, "negative")
    preview = api_client.post(f"{API}/labels/{_q(name)}/propagation/preview", json={"threshold": 0.0}).json()
    candidates = [c["object_id"] for c in preview["candidates"]]
    assert len(candidates) >= 10

    r = api_client.post(f"{API}/labels/{_q(name)}/propagation", json={"threshold": 0.0, "limit": 1000})
    assert r.status_code == 200, r.text
    applied = r.json()
    pid = applied["propagation_id"]
    assert applied["count"] == len(candidates)

    (prop,) = api_client.get(f"{API}/labels/{_q(name)}/propagations").json()
    collection = {c["name"]: c for c in api_client.get("api/collections").json()}[C]
    assert prop["propagation_id"] == pid and prop["count"] == len(candidates)
    assert sorted(prop["sources"]) == sorted(sources) and prop["negatives"] == negatives
    assert prop["model"] == collection["embedder_model"] and prop["threshold"] == 0.0
    assert prop["created_by"] == "search-tester" and prop["created_at"] and prop["undone_at"] is None

    scores = {c["object_id"]: c["score"] for c in preview["candidates"]}
    lb = _labels_of(api_client, candidates[0])[name]
    assert lb == {
        "name": name,
        "polarity": "positive",
        "source": "propagated",
        "score": pytest.approx(scores[candidates[0]]),
        "propagation_id": pid,
    }
    assert _labels_of(api_client, sources[0])[name]["source"] == "human"  # sources untouched
    assert _labels_of(api_client, negatives[0])[name]["polarity"] == "negative"  # negatives untouched
    counts = {c["name"]: c for c in api_client.get(f"{API}/labels").json()}[name]
    assert counts == {"name": name, "positive": 2, "negative": 1, "propagated": len(candidates)}

    # A human label replaces a propagated one; propagation and undo never touch it afterwards.
    overridden = candidates[1]
    _label(api_client, [overridden], name, "negative")
    assert _labels_of(api_client, overridden)[name]["source"] == "human"
    preview2 = api_client.post(f"{API}/labels/{_q(name)}/propagation/preview", json={"threshold": 0.0}).json()
    assert overridden not in {c["object_id"] for c in preview2["candidates"]}
    again = api_client.post(f"{API}/labels/{_q(name)}/propagation", json={"threshold": 0.0}).json()
    assert _labels_of(api_client, overridden)[name] == {
        "name": name,
        "polarity": "negative",
        "source": "human",
        "score": None,
        "propagation_id": None,
    }
    # The second propagation stored what its preview proposed, taking over the first one's labels.
    assert again["count"] == preview2["count"]
    # Undo removes exactly the labels the propagation stored and still owns, nothing human.
    before = {i: _labels_of(api_client, i).get(name) for i in ids}
    first_owned = {i for i, lb in before.items() if lb and lb["propagation_id"] == pid}
    assert first_owned <= set(candidates) - set(preview2_ids(preview2)) - {overridden}
    r = api_client.request("DELETE", f"{API}/propagations/{pid}")
    assert r.status_code == 200 and r.json() == {"removed": len(first_owned)}
    for i in first_owned:
        before[i] = None
    assert all(_labels_of(api_client, i).get(name) is None for i in first_owned)
    owned = {i for i, lb in before.items() if lb and lb["propagation_id"] == again["propagation_id"]}
    assert len(owned) == again["count"]
    r = api_client.request("DELETE", f"{API}/propagations/{again['propagation_id']}")
    assert r.status_code == 200 and r.json() == {"removed": again["count"]}
    after = {i: _labels_of(api_client, i).get(name) for i in ids}
    assert {i for i in ids if before[i] != after[i]} == owned
    assert all(after[i] is None for i in owned)
    assert after[overridden]["source"] == "human" and all(after[s]["source"] == "human" for s in sources)
    assert api_client.request("DELETE", f"{API}/propagations/{again['propagation_id']}").json() == {"removed": 0}
    props = {p["propagation_id"]: p for p in api_client.get(f"{API}/labels/{_q(name)}/propagations").json()}
    assert props[again["propagation_id"]]["undone_at"] and props[pid]["undone_at"]

    events = api_client.get(f"{API}/labels/{_q(name)}/events").json()
    actions = [(e["action"], e["propagation_id"]) for e in events[:4]]
    assert actions[:2] == [("undo", again["propagation_id"]), ("undo", pid)]
    assert ("propagate", again["propagation_id"]) in actions
    assert all(e["object_id"] is None for e in events if e["action"] in ("propagate", "undo"))


def preview2_ids(preview):
    return [c["object_id"] for c in preview["candidates"]]


def test_propagation_needs_a_human_positive(api_client, ingested):
    name = _fresh("nobody")
    r = api_client.post(f"{API}/labels/{_q(name)}/propagation/preview", json={"threshold": 0.5})
    assert r.status_code == 422 and "positive" in r.json()["detail"]
    r = api_client.post(f"{API}/labels/{_q(name)}/propagation", json={"threshold": 0.5})
    assert r.status_code == 422
    assert api_client.get(f"{API}/labels/{_q(name)}/propagations").json() == []


# ------------------------------------------------------------------------------------- bad input


def test_unknown_ids_are_404(api_client, ingested):
    vid, oid = ingested["video_id"], ingested["object_ids"][0]
    ghost = str(uuid.uuid4())
    for path in [
        "api/collections/nope/videos",
        "api/collections/Not-A-Name/videos",
        f"{API}/videos/{'f' * 32}/frames",
        f"{API}/videos/{vid}/frames/0/999/image",
        f"{API}/videos/{vid}/frames/99/0/image",
        f"{API}/objects/{ghost}",
        f"{API}/objects/{ghost}/crop",
        f"{API}/objects/{ghost}/similar",
        f"api/collections/nope/objects/{oid}/similar",
        "api/collections/nope/search/text?q=cat",
        "api/collections/nope/labels",
        "api/collections/nope/labels/x/events",
    ]:
        r = api_client.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    r = api_client.post(f"{API}/labels", json={"object_ids": [oid, ghost], "name": "x", "polarity": "positive"})
    assert r.status_code == 404
    assert "x" not in _labels_of(api_client, oid)  # all or nothing
    r = api_client.request("DELETE", f"{API}/labels", json={"object_ids": [ghost], "name": "x"})
    assert r.status_code == 404
    assert api_client.request("DELETE", f"{API}/propagations/{ghost}").status_code == 404


@pytest.mark.parametrize(
    "method, path, params, body, phrase",
    [
        ("GET", "objects/{oid}/similar", {"k": 0}, None, "k"),
        ("GET", "objects/{oid}/similar", {"k": 201}, None, "k"),
        ("GET", "objects/{oid}/similar", {"min_similarity": 1.5}, None, "min_similarity"),
        ("GET", "objects/{oid}/similar", {"min_similarity": "nan"}, None, "min_similarity"),
        ("GET", "objects/{oid}/similar", {"label": ""}, None, "label"),
        ("GET", "objects/not-a-uuid/similar", {}, None, "uuid"),
        ("GET", "search/text", {}, None, "q"),
        ("GET", "search/text", {"q": ""}, None, "q"),
        ("GET", "search/text", {"q": "x" * 501}, None, "q"),
        ("GET", "search/text", {"q": "   "}, None, "blank"),
        ("GET", "search/text", {"q": "cat", "k": -1}, None, "k"),
        ("GET", "videos/{vid}/frames", {"limit": 0}, None, "limit"),
        ("GET", "videos/{vid}/frames", {"offset": -1}, None, "offset"),
        ("GET", "videos/{vid}/frames/x/0/image", {}, None, "segment_index"),
        ("POST", "labels", {}, {"object_ids": [], "name": "x", "polarity": "positive"}, "object_ids"),
        ("POST", "labels", {}, {"object_ids": ["{oid}"] * 1001, "name": "x", "polarity": "positive"}, "object_ids"),
        ("POST", "labels", {}, {"object_ids": ["{oid}"], "name": "", "polarity": "positive"}, "name"),
        ("POST", "labels", {}, {"object_ids": ["{oid}"], "name": "x" * 201, "polarity": "positive"}, "name"),
        ("POST", "labels", {}, {"object_ids": ["{oid}"], "name": "a\u0000b", "polarity": "positive"}, "NUL"),
        ("POST", "labels", {}, {"object_ids": ["{oid}"], "name": "x", "polarity": "maybe"}, "polarity"),
        ("POST", "labels", {}, {"object_ids": ["nope"], "name": "x", "polarity": "positive"}, "uuid"),
        ("POST", "labels", {}, {"object_ids": ["{oid}"], "name": "x"}, "polarity"),
        ("DELETE", "labels", {}, {"object_ids": ["{oid}"]}, "name"),
        ("POST", "labels/x/propagation/preview", {}, {"threshold": 1.5}, "threshold"),
        ("POST", "labels/x/propagation/preview", {}, {"threshold": 0.5, "limit": 0}, "limit"),
        ("POST", "labels/x/propagation", {}, {}, "threshold"),
        ("POST", "labels/{long}/propagation/preview", {}, {"threshold": 0.5}, "label name"),
        ("GET", "labels/x/events", {"limit": 0}, None, "limit"),
        ("DELETE", "propagations/not-a-uuid", {}, None, "uuid"),
    ],
)
def test_invalid_parameters_are_422_with_a_reason(api_client, ingested, method, path, params, body, phrase):
    oid, vid = ingested["object_ids"][0], ingested["video_id"]

    def fill(value):
        if isinstance(value, str):
            return value.replace("{oid}", oid).replace("{vid}", vid).replace("{long}", "y" * 201)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    r = api_client.request(method, f"{API}/{fill(path)}", params=params, json=fill(body))
    assert r.status_code == 422, (path, params, body, r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and phrase.lower() in detail.lower(), detail
