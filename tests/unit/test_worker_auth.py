"""The warm worker authenticates its callers: a bearer token when one is configured, JSON bodies only;
the service execution mode has no silent fallback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from devstack import free_port
from vidsearch.errors import PermanentError, TransientError
from vidsearch.models import launcher, worker_server

TOKEN = "s3cret-token-for-tests"


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"{url}/run", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _argv(tmp_path) -> list[str]:
    return ["python", "-m", "vidsearch.models.worker", "--output-uri", f"file://{tmp_path / 'o'}", "--bogus"]


def test_jobs_need_the_token_and_a_json_body(tmp_path):
    body = json.dumps({"argv": ["--bogus"]}).encode()
    with worker_server.serving(token=TOKEN) as (url, state):
        json_type = {"Content-Type": "application/json"}
        assert _post(url, body, json_type) == 401
        assert _post(url, body, {**json_type, "Authorization": "Bearer wrong"}) == 401
        assert _post(url, body, {**json_type, "Authorization": f"Basic {TOKEN}"}) == 401
        # A web page's "simple" cross-origin request (text/plain, no preflight) is refused even with
        # a token, and so is a form post.
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert _post(url, body, {**auth, "Content-Type": "text/plain"}) == 415
        assert _post(url, body, {**auth, "Content-Type": "application/x-www-form-urlencoded"}) == 415
        assert state.jobs == 0, "no refused request ran a job"
        assert _post(url, body, {**auth, **json_type}) == 200
        assert state.jobs == 1


def test_launcher_sends_the_token_from_the_environment(tmp_path, monkeypatch):
    with worker_server.serving(token=TOKEN) as (url, state):
        monkeypatch.setenv(launcher.WORKER_URL_ENV, url)
        monkeypatch.setenv(launcher.WORKER_TOKEN_ENV, "not-the-token")
        with pytest.raises(PermanentError, match="HTTP 401"):
            launcher.run_local(_argv(tmp_path), timeout_s=60)
        assert state.jobs == 0
        monkeypatch.setenv(launcher.WORKER_TOKEN_ENV, TOKEN)
        # The job reaches the worker (and fails on its bad argument, as the command would).
        with pytest.raises(PermanentError, match="invalid arguments"):
            launcher.run_local(_argv(tmp_path), timeout_s=60)
        assert state.jobs == 1


def test_service_mode_does_not_fall_back_to_a_local_process(tmp_path):
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TransientError, match="no warm worker service answers"):
        launcher.run_on_service(_argv(tmp_path), nobody, TOKEN, timeout_s=10)
    with worker_server.serving(token=TOKEN) as (url, state):
        with pytest.raises(PermanentError, match="invalid arguments"):
            launcher.run_on_service(_argv(tmp_path), url, TOKEN, timeout_s=60)
        with pytest.raises(PermanentError, match="HTTP 401"):
            launcher.run_on_service(_argv(tmp_path), url, None, timeout_s=60)
        assert state.jobs == 1
    with pytest.raises(ValueError):
        launcher.run_on_service(["python", "-c", "print(1)", "--output-uri", "file:///x"], nobody)
