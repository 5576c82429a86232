"""Test-wide infrastructure: real Postgres and Weaviate servers, and an isolated Airflow.

Both servers start at most once per test session, on first use (a test marked `integration`, or a
fixture that hands out a server, a URL or the Airflow metadata DB), on ports picked when the session
starts, with their data under a temporary folder, so the suite never touches a running `make up`
stack and `pytest tests/unit` starts neither. Airflow is configured through environment variables
before anything imports it: metadata DB on the test Postgres (creating its engine does not connect),
connections for the catalog and Weaviate, object storage in a temporary folder, tiny models.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from devstack import free_port, start_postgres, start_weaviate
from devstack.postgres import PostgresServer, load_credentials

ROOT = Path(__file__).resolve().parents[1]
DATABASES = ("airflow", "vidsearch")

_state: dict = {}


class LazyPostgres:
    """The session's Postgres: port and superuser password fixed now, the server started on first use.

    The password is the one `start_postgres` will use for this data dir (it reads the data dir's
    credentials, generated here), so `url()` is right before the server runs. Until then a bound,
    never-listening socket holds the port: no socket that asks the OS for a free port gets it (with
    SO_REUSEADDR, Postgres could bind it even past a copy of that socket in a forked process).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True)
        creds = load_credentials(data_dir)
        self.port = free_port()
        self._hold: socket.socket | None = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._hold.bind(("127.0.0.1", self.port))
        self._planned = PostgresServer(
            data_dir, self.port, creds["user"], creds["password"], pid=0, log_path=data_dir / "postgres.log"
        )
        self.server: PostgresServer | None = None

    def url(self, dbname: str) -> str:
        return self._planned.url(dbname)

    def start(self) -> PostgresServer:
        """The running server (started, with the session's databases, on the first call)."""
        if self.server is None:
            self._release_port()
            server = start_postgres(self.data_dir, self.port)
            assert server.url() == self._planned.url(), "Postgres runs with other credentials than planned"
            for name in DATABASES:
                server.ensure_database(name)
            self.server = server
        return self.server

    def _release_port(self) -> None:
        if self._hold is not None:
            self._hold.close()
            self._hold = None

    def stop(self) -> None:
        self._release_port()
        if self.server is not None:
            self.server.stop()


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # pragma: no cover - xdist workers share the parent's servers
        return
    base = Path(tempfile.mkdtemp(prefix="vidsearch-tests-"))
    _state["base"] = base
    # Airflow reads its configuration when first imported, so the servers' addresses are fixed now;
    # each server starts on first use (see `pytest_runtest_setup` and the fixtures below).
    pg = LazyPostgres(base / "pg")
    _state["pg"] = pg
    wv_http, wv_grpc = free_port(), free_port()
    _state["weaviate_ports"] = (wv_http, wv_grpc)

    env = {
        "AIRFLOW_HOME": str(base / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url("airflow").replace("postgresql://", "postgresql+psycopg2://", 1),
        "AIRFLOW_CONN_VIDSEARCH_POSTGRES": pg.url("vidsearch"),
        "AIRFLOW_CONN_WEAVIATE_DEFAULT": json.dumps(
            {
                "conn_type": "weaviate",
                "host": "127.0.0.1",
                "port": wv_http,
                "extra": {"grpc_host": "127.0.0.1", "grpc_port": wv_grpc, "http_secure": False, "grpc_secure": False},
            }
        ),
        "VIDSEARCH_STORAGE_ROOT": f"file://{base / 'objects'}",
        "VIDSEARCH_TINY_MODELS": "1",
        "VIDSEARCH_MODEL_CACHE": str(base / "models"),
        # Tests load model folders they build under pytest's temporary folders: allow those too.
        "VIDSEARCH_MODEL_ROOTS": tempfile.gettempdir(),
        "HF_HUB_OFFLINE": "1",
        # One JWT secret for every process of the session (in-process servers, subprocess servers,
        # the token generator in tests), as an Airflow deployment shares it between its components.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        # Local sources must lie in a source root (media/sources.py): the session's folders and pytest's
        # temporary folders. The tests' HTTP servers listen on loopback, a private host to allow.
        "VIDSEARCH_SOURCE_ROOTS": os.pathsep.join([str(base.resolve()), str(_pytest_temp_root(config))]),
        "VIDSEARCH_ALLOWED_PRIVATE_HOSTS": "127.0.0.1,::1,localhost",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]),
    }
    os.environ.update(env)


def _pytest_temp_root(config: pytest.Config) -> Path:
    """The folder `tmp_path` and `tmp_path_factory` create their folders in (pytest's rule)."""
    if config.option.basetemp:
        return Path(config.option.basetemp).resolve()
    try:
        user = getpass.getuser()
    except (ImportError, KeyError, OSError):
        user = "unknown"
    temproot = Path(os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir())
    return (temproot / f"pytest-of-{user}").resolve()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture of the test is set up, module- and session-scoped ones included.
    if item.get_closest_marker("integration") is not None and "pg" in _state:
        _state["pg"].start()


def pytest_unconfigure(config: pytest.Config) -> None:
    # Close pooled database connections while Postgres still runs (else they fail at interpreter exit).
    airflow_settings = sys.modules.get("airflow.settings")
    if airflow_settings is not None:
        try:
            airflow_settings.dispose_orm()
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass
    catalog_module = sys.modules.get("vidsearch.stores.catalog")
    if catalog_module is not None:
        catalog_module.engine_for.cache_clear()
    for key in ("weaviate", "pg"):
        server = _state.pop(key, None)
        if server is not None:
            server.stop()
    base = _state.pop("base", None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> PostgresServer:
    return _state["pg"].start()


@pytest.fixture(scope="session")
def catalog_url(pg_server) -> str:
    return pg_server.url("vidsearch")


@pytest.fixture(scope="session")
def catalog(catalog_url):
    from vidsearch.stores import catalog as cat

    catalog = cat.Catalog.from_url(catalog_url)
    cat.migrate(catalog.engine)
    return catalog


@pytest.fixture(scope="session")
def weaviate_server():
    if "weaviate" not in _state:
        base = _state["base"]
        http_port, grpc_port = _state["weaviate_ports"]
        _state["weaviate"] = start_weaviate(base / "weaviate", http_port, grpc_port, base / "weaviate.log")
    return _state["weaviate"]


@pytest.fixture(scope="session")
def weaviate_client(weaviate_server):
    import weaviate

    client = weaviate.connect_to_local(
        host="127.0.0.1", port=weaviate_server.http_port, grpc_port=weaviate_server.grpc_port
    )
    yield client
    client.close()


@pytest.fixture(scope="session")
def storage_root() -> str:
    return os.environ["VIDSEARCH_STORAGE_ROOT"]


@pytest.fixture(scope="session")
def airflow_db(pg_server) -> None:
    """Create the Airflow metadata schema on the test Postgres (once per session)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
    )
    # The pools the DAGs use (`gpu`, `weaviate_writers`), as the embedded stack creates them.
    from airflow.models import Pool
    from vidsearch_airflow.airflow_settings import read_settings

    for pool in read_settings(ROOT / "airflow_settings.yaml").airflow.pools:
        Pool.create_or_update_pool(pool.pool_name, pool.slots(), pool.pool_description, include_deferred=False)


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 in server mode on a free port (tests that read and write s3:// for real)."""
    from devstack import free_port
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3_bucket(s3_server, monkeypatch):
    """`make(name) -> "s3://name"`: creates a bucket on the local S3 server, with this test's AWS
    environment pointing at that server (test credentials)."""
    import boto3

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
    }.items():
        monkeypatch.setenv(key, value)

    def make(name: str) -> str:
        boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
        return f"s3://{name}"

    return make
