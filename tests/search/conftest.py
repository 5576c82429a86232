"""Fixtures for the search API: real data from a generated video, the app, a token, a live server.

* `ingested`: a 6 s generated video ingested into the collection `search_api` by the pipeline
  functions themselves (probe, split, frames, the detect+embed worker, index, finalize) with tiny
  models, against the session's real Postgres and Weaviate. Returns ids and counts.
* `api_token`: a JWT made the way the Airflow API server makes them (the auth manager's
  `generate_jwt`, signed with the session's `[api_auth] jwt_secret`).
* `api_app` / `api_client`: the app mounted under `/vidsearch` exactly as the Airflow plugin mounts it,
  and a TestClient on that prefix carrying the token.
* `live_api`: the same app served by a real uvicorn on a free port (base URL, token, data), for the
  browser tests in tests/browser/.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

COLLECTION = "search_api"
PREFIX = "/vidsearch"
USERNAME = "search-tester"


def _call(fn: Callable[..., Any], **available: Any) -> Any:
    """Call a pipeline step with the arguments its signature names (robust to argument order)."""
    names = inspect.signature(fn).parameters
    missing = [n for n, p in names.items() if n not in available and p.default is inspect.Parameter.empty]
    if missing:
        raise TypeError(f"{fn.__name__} needs {missing}, which the fixture does not provide")
    return fn(**{n: available[n] for n in names if n in available})


@pytest.fixture(scope="session")
def search_services(catalog, weaviate_client, storage_root):
    from vidsearch.pipeline import Services
    from vidsearch.stores.index import ObjectIndex

    index = ObjectIndex(weaviate_client)
    return Services(
        catalog=catalog,
        index=lambda: index,
        storage_root=storage_root,
        tiny_models=True,
        model_cache=os.environ["VIDSEARCH_MODEL_CACHE"],
    )


@pytest.fixture(scope="session")
def ingested(search_services, tmp_path_factory) -> dict[str, Any]:
    """Ingest a generated 6 s video into `search_api`; returns collection, video id, object ids, counts."""
    import sqlalchemy as sa
    from vidsearch import pipeline
    from vidsearch.media import synth
    from vidsearch.stores.catalog import frames, objects

    video = tmp_path_factory.mktemp("search-video") / "shapes.mp4"
    synth.make_video(video, duration_s=6.0, width=320, height=180, fps="25", audio=False, gop_frames=30)
    params = pipeline.IngestParams(
        source=str(video),
        collection=COLLECTION,
        segment_seconds=3,
        sample_fps=2,
        score_threshold=0.0,  # tiny random models: keep every non-degenerate box
        detector_model="facebook/detr-resnet-50",
        embedder_model="openai/clip-vit-base-patch32",
        device="cpu",
    )
    svc = search_services
    run_id = f"search-tests-{uuid.uuid4().hex[:8]}"
    ctx: dict[str, Any] = dict(svc=svc, run_id=run_id, dag_id="search_tests", params=params)
    probed = _call(pipeline.probe_video, **ctx)
    ctx.update(probed=probed, manifest=probed.manifest)
    segments = _call(pipeline.split_video, **ctx)
    for segment in segments:
        bundle = _call(pipeline.extract_frames, **ctx, segment=segment)
        output_uri = _call(pipeline.detect_and_embed_locally, **ctx, segment=segment, bundle=bundle)
        _call(pipeline.index_segment, **ctx, segment=segment, bundle=bundle, output_uri=output_uri)
    video_id = probed.manifest.video_id
    summary = _call(pipeline.finalize, **ctx, video_id=video_id)

    with svc.catalog.engine.connect() as conn:
        rows = conn.execute(
            sa.select(objects)
            .where(objects.c.collection == COLLECTION, objects.c.video_id == video_id)
            .order_by(objects.c.pts_s, objects.c.object_id)
        ).all()
        n_frames = conn.execute(
            sa.select(sa.func.count())
            .select_from(frames)
            .where(frames.c.collection == COLLECTION, frames.c.video_id == video_id)
        ).scalar_one()
    assert len(rows) >= 20, f"the tiny detector found only {len(rows)} objects"
    return {
        "collection": COLLECTION,
        "video_id": video_id,
        "segments": len(segments),
        "frames": n_frames,
        "object_ids": [str(r.object_id) for r in rows],
        "objects": {str(r.object_id): dict(r._mapping) for r in rows},
        "detector_labels": sorted({r.label for r in rows}),
        "summary": summary.model_dump() if hasattr(summary, "model_dump") else summary,
    }


@pytest.fixture(scope="session")
def api_token(airflow_db) -> str:
    """A JWT for user `search-tester` (admin), issued like the Airflow API server issues them."""
    from airflow.api_fastapi.app import get_auth_manager, init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    try:
        manager = get_auth_manager()
    except RuntimeError:
        manager = init_auth_manager()
    return manager.generate_jwt(SimpleAuthManagerUser(username=USERNAME, role="admin"))


@pytest.fixture(scope="session")
def api_app(search_services, airflow_db):
    """The API app mounted under /vidsearch, as the Airflow API server mounts the plugin's app."""
    from fastapi import FastAPI
    from vidsearch_api.app import create_app

    app = create_app(lambda: search_services)
    host = FastAPI()
    host.mount(PREFIX, app)
    host.state.vidsearch = app
    return host


@pytest.fixture(scope="session")
def api_client(api_app, api_token, ingested):
    from fastapi.testclient import TestClient

    with TestClient(
        api_app,
        base_url=f"http://testserver{PREFIX}/",
        headers={"Authorization": f"Bearer {api_token}"},
    ) as client:
        yield client


@pytest.fixture(scope="session")
def anon_client(api_app):
    from fastapi.testclient import TestClient

    with TestClient(api_app, base_url=f"http://testserver{PREFIX}/") as client:
        yield client


@dataclass
class LiveAPI:
    """A running server: `base_url` ends with '/', e.g. http://127.0.0.1:PORT/vidsearch/."""

    base_url: str
    origin: str
    token: str
    cookie_name: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="session")
def live_api(api_app, api_token, ingested):
    """The app under /vidsearch on a real uvicorn (a background thread) on a free port.

    Authenticate with `live_api.headers` (Bearer) or, in a browser, the cookie
    `live_api.cookie_name` = `live_api.token` on `live_api.origin`.
    """
    import uvicorn
    from devstack import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="live-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live API server did not start")
        time.sleep(0.05)
    origin = f"http://127.0.0.1:{port}"
    yield LiveAPI(base_url=f"{origin}{PREFIX}/", origin=origin, token=api_token, cookie_name="_token", data=ingested)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def vectors(ingested, weaviate_client) -> dict[str, np.ndarray]:
    """Every stored vector of the collection, unit-normalised (the oracle's input)."""
    coll = weaviate_client.collections.use(f"VideoObjects_{COLLECTION}")
    res = coll.query.fetch_objects(limit=10_000, include_vector=True, return_properties=[])
    out = {}
    for obj in res.objects:
        v = np.asarray(obj.vector["default"], dtype=np.float64)
        out[str(obj.uuid)] = v / np.linalg.norm(v)
    assert set(out) == set(ingested["object_ids"])
    return out


@pytest.fixture()
def service(api_app):
    """The SearchService the API app serves."""
    return api_app.state.vidsearch.state.search.get()
