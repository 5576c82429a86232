"""Test-wide infrastructure: real Postgres and Weaviate servers, and an isolated Airflow.

Both servers start once per test session, on free ports, with their data under a temporary folder,
so the suite never touches a running `make up` stack. Airflow is configured through environment
variables before anything imports it: metadata DB on the test Postgres, connections for the catalog
and Weaviate, object storage in a temporary folder, tiny models.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "plugins")]

from devstack import free_port, start_postgres, start_weaviate  # noqa: E402

_state: dict = {}


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # pragma: no cover - xdist workers share the parent's servers
        return
    base = Path(tempfile.mkdtemp(prefix="vidsearch-tests-"))
    _state["base"] = base
    # Airflow reads its configuration when first imported, so Postgres (seconds to start) runs from
    # the beginning; Weaviate's ports are fixed now but it starts on first use.
    pg = start_postgres(base / "pg", free_port())
    _state["pg"] = pg
    pg.ensure_database("airflow")
    pg.ensure_database("vidsearch")
    wv_http, wv_grpc = free_port(), free_port()
    _state["weaviate_ports"] = (wv_http, wv_grpc)

    env = {
        "AIRFLOW_HOME": str(base / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url("airflow").replace(
            "postgresql://", "postgresql+psycopg2://", 1
        ),
        "AIRFLOW_CONN_VIDSEARCH_POSTGRES": pg.url("vidsearch"),
        "AIRFLOW_CONN_WEAVIATE_DEFAULT": (
            '{"conn_type": "weaviate", "host": "127.0.0.1", "port": %d, '
            '"extra": {"grpc_host": "127.0.0.1", "grpc_port": %d, '
            '"http_secure": false, "grpc_secure": false}}' % (wv_http, wv_grpc)
        ),
        "VIDSEARCH_STORAGE_ROOT": f"file://{base / 'objects'}",
        "VIDSEARCH_TINY_MODELS": "1",
        "VIDSEARCH_MODEL_CACHE": str(base / "models"),
        "HF_HUB_OFFLINE": "1",
        # One JWT secret for every process of the session (in-process servers, subprocess servers,
        # the token generator in tests), as an Airflow deployment shares it between its components.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "include"), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    os.environ.update(env)


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
def pg_server():
    return _state["pg"]


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
def airflow_db() -> None:
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
