"""Who may do what on the search API: Airflow's auth manager decides, route by route.

Reads need read access to the `video_ingest` DAG (SimpleAuthManager: VIEWER and above); every route that
is not a GET (labels, propagation preview / apply / undo) needs edit access to it (USER, OP, ADMIN). A
token with no role may do nothing. The route table of the app drives the checks, so a route added later
is covered without editing this file (a GET route that needs parameters to answer 200 has to be listed
in `GET_PARAMS`, or the test fails and says so).
"""

from __future__ import annotations

import re
import uuid

import pytest

pytestmark = pytest.mark.integration

C = "search_api"
API = f"api/collections/{C}"
PUBLIC = {"/openapi.json"}
# Query parameters a GET route needs before it can answer 200.
GET_PARAMS = {
    "/api/collections/{c}/search/text": {"q": "a red car", "k": 3},
    "/api/collections/{c}/search/transcript": {"q": "hello", "k": 3},
    "/api/collections/{c}/search/moments": {"said": "hello", "visible_label": "person"},
}
# Searches sent as POST because their query is an uploaded file: reads, like the GETs.
READ_POSTS = {"/api/collections/{c}/search/image"}


def _is_read(method: str, path: str) -> bool:
    return method == "GET" or (method == "POST" and path in READ_POSTS)


def _read(client, method: str, url: str, path: str):
    """A read request as a user sends it: GET with its parameters, or POST with a query image."""
    if method == "GET":
        return client.get(url, params=GET_PARAMS.get(path))
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format="PNG")
    return client.post(url, params={"k": 3}, files={"image": ("query.png", buf.getvalue(), "image/png")})


def _token(username: str, role: str | None) -> str:
    from airflow.api_fastapi.app import get_auth_manager, init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    try:
        manager = get_auth_manager()
    except RuntimeError:
        manager = init_auth_manager()
    return manager.generate_jwt(SimpleAuthManagerUser(username=username, role=role))


@pytest.fixture(scope="module")
def clients(api_app, airflow_db, ingested):
    """A TestClient per identity: role -> client (None: a valid token without a role)."""
    from fastapi.testclient import TestClient

    out = {}
    roles = {"viewer": "viewer", "user": "user", "op": "op", "admin": "admin", None: None, "bogus": "no-such-role"}
    for key, role in roles.items():
        token = _token(f"authz-{key or 'norole'}", role)
        headers = {"Authorization": f"Bearer {token}"}
        out[key] = TestClient(api_app, base_url="http://testserver/vidsearch/", headers=headers)
    yield out
    for client in out.values():
        client.close()


def _routes(api_app):
    from starlette.routing import Route

    for route in api_app.state.vidsearch.routes:
        if isinstance(route, Route) and route.path not in PUBLIC:
            for method in sorted(route.methods - {"HEAD"}):
                yield method, route.path


def _concrete(path: str, ingested, name: str = "anything", propagation_id: str | None = None) -> str:
    values = {
        "c": C,
        "video_id": ingested["video_id"],
        "segment_index": "0",
        "frame_index": "0",
        "object_id": ingested["object_ids"][0],
        "name": name,
        "propagation_id": propagation_id or str(uuid.uuid4()),
        "path": "app.js",
    }
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path).lstrip("/")


def _body(method: str, path: str, ingested, name: str) -> dict:
    """A valid body for each write route (so a 403 is the authorisation, not the input)."""
    oid = ingested["object_ids"][0]
    if path.endswith("/labels"):
        return {"object_ids": [oid], "name": name} | ({"polarity": "positive"} if method == "POST" else {})
    if path.endswith("/propagation") or path.endswith("/propagation/preview"):
        return {"threshold": 0.5, "limit": 5}
    return {}


def test_the_route_table_is_what_this_file_checks(api_app):
    routes = list(_routes(api_app))
    writes = [(m, p) for m, p in routes if not _is_read(m, p)]
    assert len(routes) >= 16 and len(writes) >= 5, routes
    assert ("DELETE", "/api/collections/{c}/propagations/{propagation_id}") in writes
    assert ("POST", "/api/collections/{c}/labels") in writes
    # The interactive docs are off (no third-party script on the Airflow origin); the schema stays.
    assert not any(p.startswith("/docs") or p.startswith("/redoc") for _, p in routes)


def test_every_read_route_answers_200_for_a_viewer(api_app, clients, ingested):
    viewer = clients["viewer"]
    name = f"authz-read-{uuid.uuid4().hex[:6]}"
    for method, path in _routes(api_app):
        if not _is_read(method, path):
            continue
        r = _read(viewer, method, _concrete(path, ingested, name), path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300], "add its parameters to GET_PARAMS?")


@pytest.mark.parametrize("who", [None, "bogus"])
def test_a_token_without_a_role_may_read_nothing(api_app, clients, ingested, who):
    for method, path in _routes(api_app):
        if not _is_read(method, path):
            continue
        r = _read(clients[who], method, _concrete(path, ingested), path)
        assert r.status_code == 403, (who, path, r.status_code, r.text[:300])


@pytest.mark.parametrize("who", ["viewer", None, "bogus"])
def test_every_write_route_is_403_without_edit_access_and_changes_nothing(api_app, clients, ingested, who):
    admin = clients["admin"]
    name = f"authz-write-{uuid.uuid4().hex[:6]}"
    oid = ingested["object_ids"][0]
    # Something for the propagation routes to act on: a human positive and an applied propagation.
    r = admin.post(f"{API}/labels", json={"object_ids": [oid], "name": name, "polarity": "positive"})
    assert r.status_code == 200, r.text
    r = admin.post(f"{API}/labels/{name}/propagation", json={"threshold": 0.0, "limit": 3})
    assert r.status_code == 200, r.text
    pid = r.json()["propagation_id"]
    before = admin.get(f"{API}/labels/{name}/events").json()
    checked = 0
    for method, path in _routes(api_app):
        if _is_read(method, path):
            continue
        url = _concrete(path, ingested, name, pid)
        r = clients[who].request(method, url, json=_body(method, path, ingested, name))
        assert r.status_code == 403, (who, method, path, r.status_code, r.text[:300])
        assert "detail" in r.json()
        checked += 1
    assert checked >= 5
    assert admin.get(f"{API}/labels/{name}/events").json() == before  # nothing was written
    (prop,) = admin.get(f"{API}/labels/{name}/propagations").json()
    assert prop["undone_at"] is None


@pytest.mark.parametrize("who", ["user", "op", "admin"])
def test_user_op_and_admin_may_write_and_the_audit_trail_names_them(api_app, clients, ingested, who):
    client = clients[who]
    name = f"authz-{who}-{uuid.uuid4().hex[:6]}"
    oid = ingested["object_ids"][1]
    # Every write route lets them through (the answer is the route's own, never 403).
    for method, path in _routes(api_app):
        if _is_read(method, path):
            continue
        r = client.request(method, _concrete(path, ingested, name), json=_body(method, path, ingested, name))
        assert r.status_code != 403, (who, method, path, r.text[:300])
    r = client.post(f"{API}/labels", json={"object_ids": [oid], "name": name, "polarity": "positive"})
    assert r.status_code == 200, r.text
    r = client.post(f"{API}/labels/{name}/propagation", json={"threshold": 0.0, "limit": 2})
    assert r.status_code == 200, r.text
    pid = r.json()["propagation_id"]
    assert client.delete(f"{API}/propagations/{pid}").status_code == 200
    r = client.request("DELETE", f"{API}/labels", json={"object_ids": [oid], "name": name})
    assert r.status_code == 200
    events = client.get(f"{API}/labels/{name}/events").json()
    assert {e["action"] for e in events} >= {"add", "propagate", "undo", "remove"}
    assert {e["actor"] for e in events} == {f"authz-{who}"}
    (prop,) = [p for p in client.get(f"{API}/labels/{name}/propagations").json() if p["propagation_id"] == pid]
    assert prop["created_by"] == f"authz-{who}"


def test_the_ui_page_needs_read_access(clients):
    assert clients["viewer"].get("").status_code == 200
    assert clients["viewer"].get("static/app.js").status_code == 200
    r = clients[None].get("")
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert C not in r.text
    assert clients[None].get("static/app.js").status_code == 403
