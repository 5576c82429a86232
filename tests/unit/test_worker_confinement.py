"""The warm worker runs only authenticated jobs addressed to it, and every job (warm worker, process
or pod: the same `worker.execute`) touches only its storage root and its model roots.

Each test here fails on a worker that runs any job it is sent (security issue: warm worker).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from devstack import StackConfig, free_port
from vidsearch.errors import PermanentError
from vidsearch.models import launcher, modelstore, worker, worker_server

TOKEN = "confinement-test-token"
OUTSIDE = "is not under the worker's storage root"


def _request(url: str, path: str, *, host: str | None = None, token: str | None = TOKEN, body: dict | None = None):
    """(status, decoded JSON body) of a request to the worker; `host` overrides the Host header."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if host is not None:
        headers["Host"] = host
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}{path}", data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture()
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's storage root (VIDSEARCH_STORAGE_ROOT), with a bundle-shaped file in it."""
    folder = tmp_path / "objects"
    (folder / "frames").mkdir(parents=True)
    (folder / "frames" / "seg0000.zip").write_bytes(b"not a zip")
    monkeypatch.setenv("VIDSEARCH_STORAGE_ROOT", f"file://{folder}")
    return folder


def _job(frames: str, output: str) -> list[str]:
    return ["--frames-uri", frames, "--output-uri", output, "--device", "cpu", "--tiny-models"]


# --- (a) no token, no jobs ------------------------------------------------------------------------


def test_a_worker_without_a_token_refuses_every_job(monkeypatch, root):
    monkeypatch.delenv(worker_server.TOKEN_ENV, raising=False)
    server, state = worker_server.make_server("127.0.0.1", 0, token="")
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for token in (None, "", "anything"):
            status, body = _request(url, "/run", token=token, body={"argv": ["--check-models"]})
            assert status == 401 and "no token" in body["error"]
        assert state.jobs == 0
    finally:
        server.shutdown()
        server.server_close()


def test_the_devstack_generates_a_private_token_for_the_worker_and_the_tasks(tmp_path, monkeypatch):
    from devstack import airflow as af
    from devstack import worker as warm

    monkeypatch.setenv("VIDSEARCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VIDSEARCH_WORKER_PORT", str(free_port()))
    cfg = StackConfig.from_env()
    env = af.env_for_stack(cfg)
    secrets_file = af.secrets_file(cfg)
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    token = env[worker_server.TOKEN_ENV]
    assert len(token) >= 32 and json.loads(secrets_file.read_text())["worker_token"] == token
    # Another stack gets another token; a secrets file left readable is closed again.
    secrets_file.chmod(0o644)
    assert af.env_for_stack(cfg)[worker_server.TOKEN_ENV] == token
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    monkeypatch.setenv("VIDSEARCH_DATA_DIR", str(tmp_path / "other"))
    assert af.env_for_stack(StackConfig.from_env())[worker_server.TOKEN_ENV] != token

    # The stack's worker runs with that token: a job without it is refused, one with it runs.
    warm.start_worker(cfg)
    try:
        assert warm.wait_worker(cfg, timeout=60), cfg.log_file(warm.NAME).read_text()
        url = warm.worker_url(cfg)
        assert _request(url, "/run", token=None, body={"argv": ["--bogus"]})[0] == 401
        status, body = _request(url, "/run", token=token, body={"argv": ["--bogus"]})
        assert status == 200 and body["exit_code"] == worker.EXIT_PERMANENT
    finally:
        warm.stop_worker(cfg)


# --- (b) the Host header --------------------------------------------------------------------------


def test_requests_naming_another_host_are_refused(root):
    with worker_server.serving(token=TOKEN) as (url, state):
        port = url.rsplit(":", 1)[1]
        job = {"argv": ["--bogus"]}
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", f"10.0.0.1:{port}", ""):
            assert _request(url, "/run", host=host, body=job)[0] == 421, host
            assert _request(url, "/health", host=host)[0] == 421, host
        assert state.jobs == 0
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST"):
            assert _request(url, "/run", host=host, body=job)[0] == 200, host
        assert state.jobs == 3


def test_a_worker_on_all_interfaces_accepts_addresses_and_its_configured_names(monkeypatch):
    monkeypatch.setenv(worker_server.ALLOWED_HOSTS_ENV, "vidsearch-worker.vidsearch.svc, worker")
    server, state = worker_server.make_server("0.0.0.0", 0, TOKEN, ("extra-name",))
    server.server_close()
    for host in ("10.1.2.3:8795", "[fd00::1]:8795", "localhost", "worker:8795", "vidsearch-worker.vidsearch.svc:8795"):
        assert state.host_allowed(host), host
    assert state.host_allowed("extra-name")
    for host in ("evil.example:8795", "worker.evil.example", None, ""):
        assert not state.host_allowed(host), host
    loopback = worker_server.WarmWorker(TOKEN, "127.0.0.1")
    assert loopback.host_allowed("127.0.0.1:1") and loopback.host_allowed("localhost")
    assert not loopback.host_allowed("10.1.2.3") and not loopback.host_allowed("worker")


# --- (c) URIs confined to the storage root -------------------------------------------------------


def _escapes(root: Path, tmp_path: Path) -> dict[str, str]:
    """URIs that name something outside `root`, by kind of escape."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "seg0000.zip").write_bytes(b"not a zip")
    link = root / "link"
    if not link.exists():
        link.symlink_to(outside, target_is_directory=True)
    return {
        "file outside": f"file://{outside / 'seg0000.zip'}",
        "plain path outside": str(outside / "seg0000.zip"),
        "dotdot": f"file://{root}/frames/../../outside/seg0000.zip",
        "symlink": f"file://{root}/link/seg0000.zip",
        "sibling prefix": f"file://{root}-other/seg0000.zip",
        "fragment": f"file://{root}/frames/seg0000.zip#/../../../outside",
        "relative": "objects/frames/seg0000.zip",
        "http": "http://127.0.0.1:9/seg0000.zip",
        "https": "https://example.com/seg0000.zip",
        "s3": "s3://some-bucket/seg0000.zip",
        "memory": "memory://seg0000.zip",
        "file host": f"file://example.com{root}/frames/seg0000.zip",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "file outside",
        "plain path outside",
        "dotdot",
        "symlink",
        "sibling prefix",
        "fragment",
        "relative",
        "http",
        "https",
        "s3",
        "memory",
        "file host",
    ],
)
def test_a_job_naming_a_uri_outside_the_storage_root_is_refused(kind, root, tmp_path):
    uri = _escapes(root, tmp_path)[kind]
    inside_bundle, inside_out = f"file://{root}/frames/seg0000.zip", f"file://{root}/out"
    for argv in (_job(uri, inside_out), _job(inside_bundle, uri)):
        code, reason = worker.execute(argv)
        assert code == worker.EXIT_PERMANENT and reason is not None and OUTSIDE in reason, (argv, reason)
    assert not (tmp_path / "outside" / worker.RESULT_FILE).exists()
    assert sorted(p.name for p in (tmp_path / "outside").iterdir()) == ["seg0000.zip"], "nothing written outside"


def test_the_warm_worker_refuses_uris_outside_its_root_and_writes_nothing_there(root, tmp_path):
    escapes = _escapes(root, tmp_path)
    with worker_server.serving(token=TOKEN) as (url, state):
        for kind in ("dotdot", "symlink", "http", "file outside"):
            status, body = _request(
                url, "/run", body={"argv": _job(f"file://{root}/frames/seg0000.zip", escapes[kind])}
            )
            assert status == 200 and body["exit_code"] == worker.EXIT_PERMANENT, (kind, body)
            assert OUTSIDE in body["log"][-1]
        assert state.models.loads == 0
    assert sorted(p.name for p in (tmp_path / "outside").iterdir()) == ["seg0000.zip"]


def test_a_worker_process_refuses_them_too(root, tmp_path, monkeypatch):
    """The one-shot process (and so a pod, which runs the same argv) applies the same confinement."""
    monkeypatch.delenv(launcher.WORKER_URL_ENV, raising=False)
    argv = ["python", "-m", "vidsearch.models.worker", *_job("https://example.com/b.zip", f"file://{root}/out")]
    with pytest.raises(PermanentError, match="not under the worker's storage root"):
        launcher.run_local(argv, timeout_s=120)


def test_uris_under_the_root_pass_the_confinement(root):
    base = f"file://{root}"
    for uri in (f"{base}/frames/seg0000.zip", f"{base}/videos/x/objects/seg0001", str(root / "a" / "b"), base):
        assert worker.confine_uri(uri, base, "--output-uri") == uri
    # The bundle is refused for what it is (not a zip), not for where it is.
    code, reason = worker.execute(_job(f"{base}/frames/seg0000.zip", f"{base}/out"))
    assert code == worker.EXIT_PERMANENT and reason is not None and OUTSIDE not in reason


def test_s3_uris_must_share_the_roots_bucket_and_prefix():
    root = "s3://vs/objects"
    for uri in ("s3://vs/objects/videos/x/frames/seg0000.zip", "s3://vs/objects/out/", "s3a://vs/objects/x"):
        assert worker.confine_uri(uri, root, "--frames-uri") == uri
    for uri in (
        "s3://other/objects/x",
        "s3://vs/objectsx/y",
        "s3://vs/other/x",
        "s3://vs/objects/../other/x",
        "s3://vs/objects//x",
        "s3://vs/objects/./x",
        "s3://user@vs/objects/x",
        "file:///vs/objects/x",
        "gs://vs/objects/x",
    ):
        with pytest.raises(PermanentError, match="not under"):
            worker.confine_uri(uri, root, "--frames-uri")


def test_a_worker_without_a_storage_root_runs_no_job(monkeypatch, tmp_path):
    monkeypatch.delenv(worker.STORAGE_ROOT_ENV, raising=False)
    code, reason = worker.execute(_job(f"file://{tmp_path}/b.zip", f"file://{tmp_path}/out"))
    assert code == worker.EXIT_PERMANENT and reason is not None and worker.STORAGE_ROOT_ENV in reason


# --- 2. model folders confined to the model roots ------------------------------------------------


@pytest.fixture(scope="module")
def built_models(tmp_path_factory) -> Path:
    """A folder with a model cache holding a tiny detector, and a copy of it elsewhere."""
    base = tmp_path_factory.mktemp("model-roots")
    built = modelstore.ensure_tiny_model("detector", base / "cache")
    shutil.copytree(built, base / "elsewhere" / "detector")
    return base


@pytest.fixture()
def model_roots(built_models, monkeypatch) -> tuple[Path, Path]:
    """(the tiny detector inside the model roots, its copy outside them); the roots: the cache and an
    empty extra root (the session's roots, all of the temp folder, are replaced)."""
    monkeypatch.setenv(modelstore.CACHE_ENV, str(built_models / "cache"))
    monkeypatch.setenv("VIDSEARCH_MODEL_ROOTS", str(built_models / "extra-root"))
    (inside,) = (built_models / "cache").glob("tiny-detector-*")
    return inside, built_models / "elsewhere" / "detector"


def _check(detector: Path | str, embedder: Path | str = "x") -> tuple[int, str | None]:
    return worker.execute(
        ["--check-models", "--detector", str(detector), "--embedder", str(embedder), "--no-tiny-models"]
    )


def test_a_model_folder_outside_the_roots_and_a_missing_one_get_the_same_error(model_roots, tmp_path):
    inside, outside = model_roots
    exists = _check(outside)
    missing = _check(outside.parent / "no-such-detector")
    dotdot = _check(f"{inside.parent}/../elsewhere/detector")
    assert exists[0] == missing[0] == dotdot[0] == worker.EXIT_PERMANENT
    assert exists[1] == missing[1] == dotdot[1]
    assert exists[1] is not None and "not under an allowed model folder" in exists[1]
    assert "elsewhere" not in exists[1] and "does not exist" not in exists[1]
    with pytest.raises(PermanentError) as err:
        modelstore.resolve_model("/etc", "embedder", tiny=False, cache_dir=tmp_path)
    assert "not under an allowed model folder" in str(err.value)


def test_a_symlink_in_the_roots_to_a_folder_outside_is_refused(model_roots):
    inside, outside = model_roots
    link = inside.parent / "linked-detector"
    if not link.is_symlink():
        link.symlink_to(outside, target_is_directory=True)
    code, reason = _check(link)
    assert code == worker.EXIT_PERMANENT and reason is not None and "not under an allowed model folder" in reason


def test_model_folders_inside_the_roots_still_resolve(model_roots, tmp_path, monkeypatch):
    inside, outside = model_roots
    assert modelstore.resolve_model(str(inside), "detector", tiny=False, cache_dir=tmp_path) == str(inside.resolve())
    # VIDSEARCH_MODEL_ROOTS adds folders.
    monkeypatch.setenv(modelstore.ROOTS_ENV, os.pathsep.join(["/nonexistent-root", str(outside.parent)]))
    assert modelstore.resolve_model(str(outside), "detector", tiny=False, cache_dir=tmp_path) == str(outside.resolve())


def test_a_jobs_tiny_model_cache_must_be_inside_the_roots(model_roots, tmp_path):
    with pytest.raises(PermanentError, match="tiny-model cache folder is not under"):
        modelstore.resolve_model("x", "detector", tiny=True, cache_dir=tmp_path / "elsewhere" / "cache")
    assert not (tmp_path / "elsewhere" / "cache").exists(), "no tiny model built outside the roots"
    code, reason = worker.execute(["--check-models", "--tiny-models", "--model-cache", str(tmp_path / "c")])
    assert code == worker.EXIT_PERMANENT and reason is not None and "tiny-model cache folder" in reason
    assert not (tmp_path / "c").exists()


def test_the_worker_image_allows_its_model_volume():
    dockerfile = (Path(__file__).resolve().parents[2] / "images/worker/Dockerfile").read_text()
    assert "VIDSEARCH_MODEL_ROOTS=/models" in dockerfile


def test_a_worker_subprocess_run_without_token_env_exits_quickly():
    env = {k: v for k, v in os.environ.items() if k != worker_server.TOKEN_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "vidsearch.models.worker_server", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and worker_server.TOKEN_ENV in proc.stderr
