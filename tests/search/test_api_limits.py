"""Bounds on what one caller can make the API server do, and what its pages load.

* propagation takes at most `max_propagation_sources` sources and `max_propagation_negatives`
  negatives (a clear 422 beyond, before any search), fetches at most `max_propagation_hits`
  nearest-neighbour results over all its sources, and runs on the propagation executor's own threads,
  not the server's request threads; when that executor is full the answer is 503 with Retry-After;
* the crop and frame caches are bounded in bytes (`VIDSEARCH_CROP_CACHE_MB`, `VIDSEARCH_FRAME_CACHE_MB`);
* no interactive docs page (FastAPI's loads swagger-ui from a CDN), the schema stays; the UI page and
  the sign-in page reference no other origin.
"""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest

C = "search_api"
API = f"api/collections/{C}"


# ------------------------------------------------------------------------------------------ unit


def test_lru_cache_is_bounded_in_bytes():
    from vidsearch.search import LRUCache

    cache = LRUCache(maxsize=100, max_bytes=10)
    for key in "abcd":
        assert cache.get_or_compute(key, lambda: b"xxx") == b"xxx"
    assert list(cache._data) == ["b", "c", "d"] and cache.nbytes == 9  # "a" went first (LRU)
    cache.get_or_compute("b", lambda: b"never")  # a hit: "b" becomes the most recent
    cache.get_or_compute("e", lambda: b"yyyy")
    assert list(cache._data) == ["d", "b", "e"] and cache.nbytes == 10  # "c" made room
    assert cache.get_or_compute("big", lambda: b"z" * 11) == b"z" * 11  # returned, never kept
    assert "big" not in cache._data and cache.nbytes == 10
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0
    counted = LRUCache(maxsize=2)  # entries still bound it too
    for key in "abc":
        counted.get_or_compute(key, lambda: b"x" * 1000)
    assert list(counted._data) == ["b", "c"]


def test_cache_bounds_come_from_the_environment(monkeypatch):
    from vidsearch.errors import InputError
    from vidsearch.search import DEFAULT_CROP_CACHE_MB, SearchService, cache_bytes_from_env

    class NoCatalog:
        engine = None

    monkeypatch.delenv("VIDSEARCH_CROP_CACHE_MB", raising=False)
    monkeypatch.setenv("VIDSEARCH_FRAME_CACHE_MB", "0.5")
    svc = SearchService(NoCatalog(), lambda: None)  # type: ignore[arg-type]
    assert svc.crops.max_bytes == DEFAULT_CROP_CACHE_MB * 2**20
    assert svc.frame_images.max_bytes == 2**19
    for bad in ["lots", "-1", "nan"]:
        monkeypatch.setenv("VIDSEARCH_CROP_CACHE_MB", bad)
        with pytest.raises(InputError, match="VIDSEARCH_CROP_CACHE_MB"):
            cache_bytes_from_env("VIDSEARCH_CROP_CACHE_MB", 64)


def test_bounded_work_runs_off_the_caller_thread_and_refuses_beyond_its_queue():
    import asyncio

    from vidsearch.errors import TransientError
    from vidsearch_api.work import BoundedWork

    work = BoundedWork(workers=1, queue=1)
    release = threading.Event()
    threads: list[str] = []

    def job(n: int) -> int:
        threads.append(threading.current_thread().name)
        release.wait(10)
        return n

    async def main() -> list:
        first = asyncio.create_task(work.run(job, 1))
        second = asyncio.create_task(work.run(job, 2))  # waits for the one worker
        await asyncio.sleep(0.05)
        with pytest.raises(TransientError, match="too many"):
            await work.run(job, 3)
        release.set()
        return [await first, await second, await work.run(job, 4)]  # slots come back

    try:
        assert asyncio.run(main()) == [1, 2, 4]
    finally:
        work.shutdown()
    assert threads and all(t.startswith("vidsearch-propagation") for t in threads)
    assert threading.current_thread().name not in threads


def test_bounded_work_settings(monkeypatch):
    from vidsearch_api.work import BoundedWork

    monkeypatch.setenv("VIDSEARCH_PROPAGATION_WORKERS", "3")
    monkeypatch.setenv("VIDSEARCH_PROPAGATION_QUEUE", "0")
    work = BoundedWork()
    assert (work.workers, work.queue) == (3, 0)
    monkeypatch.setenv("VIDSEARCH_PROPAGATION_WORKERS", "0")
    with pytest.raises(ValueError, match="VIDSEARCH_PROPAGATION_WORKERS"):
        BoundedWork()


def test_no_interactive_docs_and_no_third_party_origin_in_the_app():
    from fastapi.testclient import TestClient
    from vidsearch_api.app import create_app

    app = create_app(lambda: None)
    assert app.docs_url is None and app.redoc_url is None
    with TestClient(app) as client:
        for path in ["/docs", "/redoc", "/docs/oauth2-redirect"]:
            assert client.get(path).status_code == 404, path
        assert client.get("/openapi.json").status_code == 200


# ----------------------------------------------------------------------------------- integration


def _external_refs(text: str) -> list[str]:
    """URLs of another origin: absolute http(s) or protocol-relative ones."""
    return re.findall(r"""(?:https?:)?//[^\s"'<>)]+""", text)


@pytest.mark.integration
def test_pages_reference_no_other_origin(api_client, anon_client):
    from vidsearch_api.routes import STATIC_DIR

    r = anon_client.get("docs")
    assert r.status_code == 404  # no swagger-ui page, so no CDN script on the Airflow origin
    assert anon_client.get("openapi.json").status_code == 200
    pages = {
        "index": api_client.get("").text,
        "sign-in": anon_client.get("").text,
        **{p.name: p.read_text() for p in STATIC_DIR.iterdir() if p.suffix in {".html", ".js", ".css"}},
    }
    for name, text in pages.items():
        assert text and _external_refs(text) == [], (name, _external_refs(text))


def _label(client, ids, name, polarity="positive"):
    r = client.post(f"{API}/labels", json={"object_ids": list(ids), "name": name, "polarity": polarity})
    assert r.status_code == 200, r.text


@pytest.mark.integration
def test_propagation_refuses_too_many_sources_or_negatives_before_searching(api_client, ingested, service, monkeypatch):
    ids = ingested["object_ids"]
    name = f"many-{uuid.uuid4().hex[:6]}"
    searched = []
    monkeypatch.setattr(service.index, "near", lambda *a, **k: searched.append(a) or [])
    monkeypatch.setattr(service, "max_propagation_sources", 3)
    monkeypatch.setattr(service, "max_propagation_negatives", 2)
    _label(api_client, ids[:3], name)
    _label(api_client, ids[10:12], name, "negative")
    assert api_client.post(f"{API}/labels/{name}/propagation/preview", json={"threshold": 0.5}).status_code == 200
    _label(api_client, ids[3:4], name)  # a 4th source
    for route in ["propagation/preview", "propagation"]:
        r = api_client.post(f"{API}/labels/{name}/{route}", json={"threshold": 0.5})
        assert r.status_code == 422, r.text
        assert "at most 3 sources" in r.json()["detail"]
    r = api_client.request("DELETE", f"{API}/labels", json={"object_ids": ids[:2], "name": name})
    assert r.status_code == 200
    _label(api_client, ids[12:13], name, "negative")  # a 3rd negative
    r = api_client.post(f"{API}/labels/{name}/propagation", json={"threshold": 0.5})
    assert r.status_code == 422 and "at most 2 negatives" in r.json()["detail"], r.text
    assert len(searched) == 3  # only the first, accepted preview searched (once per source)
    assert api_client.get(f"{API}/labels/{name}/propagations").json() == []


@pytest.mark.integration
def test_propagation_keeps_to_its_result_budget_off_the_request_threads(api_client, ingested, service, monkeypatch):
    ids = ingested["object_ids"]
    name = f"budget-{uuid.uuid4().hex[:6]}"
    _label(api_client, ids[:4], name)
    _label(api_client, ids[40:41], name, "negative")
    real_near = service.index.near
    calls = []

    def near(collection, vector, limit, min_similarity, **kwargs):
        calls.append((limit, threading.current_thread().name))
        return real_near(collection, vector, limit, min_similarity, **kwargs)

    monkeypatch.setattr(service.index, "near", near)
    monkeypatch.setattr(service, "max_propagation_hits", 40)
    r = api_client.post(f"{API}/labels/{name}/propagation/preview", json={"threshold": 0.0, "limit": 1000})
    assert r.status_code == 200, r.text
    found = r.json()["candidates"]
    assert 0 < len(found) <= 40
    assert sum(limit for limit, _ in calls) <= 40
    # The first round asks each of the 4 sources for its share; deeper rounds only where they can matter.
    assert [limit for limit, _ in calls[:4]] == [10, 10, 10, 10]
    assert all(thread.startswith("vidsearch-propagation") for _, thread in calls)
    human = set(ids[:4]) | {ids[40]}
    assert not human & {c["object_id"] for c in found}


@pytest.mark.integration
def test_a_full_propagation_executor_answers_503(api_app, api_client, ingested, service, monkeypatch):
    from vidsearch_api.work import BoundedWork

    app = api_app.state.vidsearch
    work = BoundedWork(workers=1, queue=0)
    # Not monkeypatch.setattr: Starlette's State keeps attributes outside __dict__, and pytest >= 9.2
    # undoes such a patch by deleting the attribute, leaving the app without its executor.
    monkeypatch.setitem(app.state._state, "propagation_work", work)
    started, release = threading.Event(), threading.Event()

    def slow_preview(*args, **kwargs):
        started.set()
        release.wait(30)
        return {"count": 0, "candidates": []}

    monkeypatch.setattr(service, "propagation_preview", slow_preview)
    url = f"{API}/labels/anything/propagation/preview"
    results = []
    first = threading.Thread(target=lambda: results.append(api_client.post(url, json={"threshold": 0.5})))
    first.start()
    try:
        assert started.wait(30)
        r = api_client.post(url, json={"threshold": 0.5})
        assert r.status_code == 503 and r.headers["Retry-After"], r.text
        assert "too many propagations" in r.json()["detail"]
        # Reads are not held up by a busy propagation.
        t0 = time.monotonic()
        assert api_client.get(f"{API}/labels").status_code == 200
        assert time.monotonic() - t0 < 10
    finally:
        release.set()
        first.join(30)
        work.shutdown()
    assert results and results[0].status_code == 200
