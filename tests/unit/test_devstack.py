"""The embedded dev stack (`include/devstack`): process helpers, Postgres, Weaviate and the CLI.

Every server here runs on free ports with its data under `tmp_path`, so the tests never touch a
running `make up` stack nor the session servers of tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import devstack
import psutil
import pytest
from devstack import (
    DevstackError,
    StackConfig,
    free_port,
    live_pid,
    start_postgres,
    start_weaviate,
    stop_process,
    write_pid_file,
)
from devstack.__main__ import main as devstack_main
from devstack.weaviate import http_ok

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def tmp_path():
    """A private temp folder outside ``/tmp/pytest-of-<user>``.

    Postgres runs as an unprivileged OS user when the tests run as root, and every pytest session
    that starts meanwhile resets ``/tmp/pytest-of-<user>`` to mode 0700, locking that user out.
    """
    path = Path(tempfile.mkdtemp(prefix="devstack-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def test_import_does_not_import_airflow():
    code = "import sys, devstack, devstack.__main__; assert 'airflow' not in sys.modules, 'airflow imported'"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_pid_file_live_and_stale(tmp_path):
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    pid_file = tmp_path / "x.pid"
    write_pid_file(pid_file, proc.pid)
    assert live_pid(pid_file) == proc.pid
    proc.kill()
    proc.wait()
    assert live_pid(pid_file) is None
    assert not pid_file.exists(), "a stale pid file is removed"


def test_stop_process_ends_the_whole_group():
    proc = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60; wait"], start_new_session=True)
    time.sleep(0.3)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children
    stop_process(proc.pid, timeout=5)
    proc.wait(timeout=5)
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)


def test_stop_process_escalates_to_sigkill():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('r', flush=True); time.sleep(60)",
        ],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    proc.stdout.readline()  # SIGTERM handler installed
    assert stop_process(proc.pid, sig=signal.SIGTERM, timeout=0.5) is True
    assert proc.wait(timeout=5) == -signal.SIGKILL


# --------------------------------------------------------------------------------------------------
# Postgres
# --------------------------------------------------------------------------------------------------


def test_postgres_start_reuse_stop_restart(tmp_path):
    port = free_port()
    pg = start_postgres(tmp_path / "pg", port)
    try:
        assert pg.url("db1").startswith(f"postgresql://{pg.user}:")
        assert pg.url("db1").endswith(f"@127.0.0.1:{port}/db1")
        assert pg.password and pg.password in pg.url()
        assert pg.ensure_database("db1") is True
        assert pg.ensure_database("db1") is False
        conn = pg.connect("db1")
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (x int)")
        conn.close()

        again = start_postgres(tmp_path / "pg", port)
        assert again.pid == pg.pid, "an already running server is reused"
        assert again.password == pg.password
    finally:
        pg.stop()
    assert not pg.is_running()
    assert not pg.is_ready()
    pg.stop()  # stopping twice is fine

    restarted = start_postgres(tmp_path / "pg", free_port())
    try:
        assert restarted.ensure_database("db1") is False, "the cluster and its data survive a restart"
    finally:
        restarted.stop()


def test_postgres_reports_a_taken_port(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(DevstackError, match="postgres.log"):
            start_postgres(tmp_path / "pg", port, timeout=20)


# --------------------------------------------------------------------------------------------------
# Weaviate
# --------------------------------------------------------------------------------------------------


def test_weaviate_start_reuse_stop(tmp_path):
    log = tmp_path / "weaviate.log"
    wv = start_weaviate(tmp_path / "wv", free_port(), free_port(), log)
    try:
        assert wv.is_ready()
        assert http_ok(f"{wv.url}/v1/meta")
        assert (tmp_path / "wv" / "weaviate.pid").exists()
        again = start_weaviate(tmp_path / "wv", wv.http_port, wv.grpc_port, log)
        assert again.pid == wv.pid, "an already running server is reused"
    finally:
        wv.stop()
    assert not wv.is_running()
    assert not (tmp_path / "wv" / "weaviate.pid").exists()
    wv.stop()  # stopping twice is fine


def test_weaviate_error_names_the_log(tmp_path):
    log = tmp_path / "weaviate.log"
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        with pytest.raises(DevstackError, match=str(log)):
            start_weaviate(tmp_path / "wv", taken, free_port(), log, timeout=30)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


@pytest.fixture()
def stack_env(tmp_path, monkeypatch):
    """A stack configuration on free ports with its data under tmp_path."""
    monkeypatch.setenv("VIDSEARCH_DATA_DIR", str(tmp_path / "data"))
    for name in devstack.PORT_ENV_VARS:
        monkeypatch.setenv(name, str(free_port()))
    return StackConfig.from_env()


def test_cli_status_when_down(stack_env, capsys):
    assert devstack_main(["status"]) == 0
    out = capsys.readouterr().out
    assert "postgres" in out and "airflow scheduler" in out
    health = [line.split()[-1] for line in out.splitlines()[1:8]]
    assert health == ["down"] * 7
    assert devstack_main(["status", "--check"]) == 1


def test_cli_env_is_stable_and_complete(stack_env, capsys):
    assert devstack_main(["env"]) == 0
    first = capsys.readouterr().out
    assert devstack_main(["env"]) == 0
    assert capsys.readouterr().out == first, "generated secrets are generated once"

    env = devstack.env_for_stack(stack_env)
    conn = json.loads(env["AIRFLOW_CONN_WEAVIATE_DEFAULT"])
    assert conn["conn_type"] == "weaviate" and conn["port"] == stack_env.weaviate_http_port
    assert conn["extra"]["grpc_port"] == stack_env.weaviate_grpc_port
    assert env["AIRFLOW_CONN_VIDSEARCH_POSTGRES"].endswith(f":{stack_env.pg_port}/vidsearch")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["VIDSEARCH_STORAGE_ROOT"] == f"file://{stack_env.objects_dir}"
    assert env["VIDSEARCH_WORKER_URL"] == f"http://127.0.0.1:{stack_env.worker_port}"
    # Task processes fork from executor workers that preloaded the task libraries; as many slots as
    # the machine keeps busy, not Airflow's default 32.
    assert env["AIRFLOW__CORE__EXECUTOR"] == "vidsearch_airflow.executor.PreloadingLocalExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == str(max(4, 4 * (os.cpu_count() or 1)))
    passwords = json.loads(Path(env["VIDSEARCH_AIRFLOW_PASSWORD_FILE"]).read_text())
    assert len(passwords["admin"]) >= 12
    assert "export AIRFLOW_HOME=" in first


def test_cli_up_is_idempotent_and_down_stops_everything(stack_env, capsys):
    """The whole stack (Postgres, Weaviate, 4 Airflow processes, the warm worker) on free ports, twice,
    then down."""
    try:
        assert devstack_main(["up"]) == 0
        assert devstack_main(["status", "--check"]) == 0
        pids = {f.name: live_pid(f) for f in stack_env.run_dir.glob("*.pid")}
        assert len(pids) == 7 and all(pids.values())
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{stack_env.worker_port}/health").read())
        assert health["ok"] and health["jobs"] == 0

        assert devstack_main(["up"]) == 0
        out = capsys.readouterr().out
        assert "already running and healthy" in out
        assert {f.name: live_pid(f) for f in stack_env.run_dir.glob("*.pid")} == pids
    finally:
        assert devstack_main(["down"]) == 0
    assert not list(stack_env.run_dir.glob("*.pid"))
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids.values()
    )
    assert devstack_main(["down"]) == 0, "down on a stopped stack is fine"
