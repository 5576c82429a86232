"""The API inside Airflow: the plugin registers it, the Airflow API server mounts it under /vidsearch and
its own tokens (POST /auth/token) and UI cookie work there; and `python -m vidsearch_api` standalone
accepts the same tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def airflow_api(airflow_db, ingested):
    """Airflow's own API server app (core API, auth manager, plugins), in-process."""
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    purge_cached_app()
    app = create_app(apps="core")
    with TestClient(app) as client:
        yield client
    purge_cached_app()


def _admin_token(client) -> str:
    """Log in as the simple auth manager's admin with its generated password, as a user would."""
    from airflow.configuration import conf

    path = Path(
        conf.get("core", "simple_auth_manager_passwords_file", fallback="")
        or Path(os.environ["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    )
    password = json.loads(path.read_text())["admin"]
    r = client.post("/auth/token", json={"username": "admin", "password": password})
    assert r.status_code in (200, 201), r.text
    return r.json()["access_token"]


def test_plugin_is_registered_with_an_app_and_a_nav_link():
    from airflow import plugins_manager

    plugins, import_errors = plugins_manager._get_plugins()
    assert not {path: err for path, err in import_errors.items() if "vidsearch" in path}
    (plugin,) = [p for p in plugins if p.name == "vidsearch"]
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/vidsearch" and app["name"] == "vidsearch"
    (view,) = plugin.external_views
    assert view["name"] == "Object search" and view["destination"] == "nav"
    assert view["href"] == "vidsearch/" and view["url_route"]


def test_airflow_api_server_mounts_the_api_and_its_tokens_work_there(airflow_api, ingested):
    r = airflow_api.get("/vidsearch/api/collections")
    assert r.status_code == 401
    assert airflow_api.get("/vidsearch/openapi.json").status_code == 200

    token = _admin_token(airflow_api)
    r = airflow_api.get("/vidsearch/api/collections", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert "search_api" in {c["name"] for c in r.json()}
    # Weaviate through the Airflow connection, URLs under the mount prefix.
    oid = ingested["object_ids"][0]
    r = airflow_api.get(
        f"/vidsearch/api/collections/search_api/objects/{oid}/similar",
        params={"k": 3, "min_similarity": -1},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3 and results[0]["crop_url"].startswith("/vidsearch/api/collections/search_api/")
    # The Airflow UI's cookie authenticates the page and its API calls (the iframe sends it).
    airflow_api.cookies.set("_token", token)
    try:
        assert airflow_api.get("/vidsearch/api/collections").status_code == 200
        page = airflow_api.get("/vidsearch/")
        assert page.status_code in (200, 404)  # 404 only while the UI page is not installed
    finally:
        airflow_api.cookies.clear()

    # The Airflow UI lists the nav entry (external view with a url_route: shown in an iframe).
    plugins = airflow_api.get("/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}).json()
    views = [v for p in plugins["plugins"] if p["name"] == "vidsearch" for v in p["external_views"]]
    assert [v["name"] for v in views] == ["Object search"]


def test_standalone_server_accepts_airflow_tokens(api_token, ingested):
    import httpx
    from devstack import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidsearch_api", "--port", str(port), "--log-level", "warning"],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            try:
                r = httpx.get(f"{base}/api/collections", timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the standalone server did not start"
                time.sleep(0.3)
        assert r.status_code == 401
        r = httpx.get(f"{base}/api/collections", headers={"Authorization": f"Bearer {api_token}"}, timeout=60)
        assert r.status_code == 200, r.text
        assert "search_api" in {c["name"] for c in r.json()}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
