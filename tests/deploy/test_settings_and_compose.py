"""docker-compose files validated by compose-go (Docker Compose's own loader) and airflow_settings.yaml
validated against its schema and loaded into a real Airflow metadata database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from vidsearch_airflow.airflow_settings import read_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = [ROOT / "docker-compose.yaml", ROOT / "docker-compose.gpu.yaml"]


@pytest.fixture(scope="module")
def composecheck(tmp_path_factory) -> Path:
    """Build the compose-go validator (Go module in tests/tools/composecheck)."""
    out = tmp_path_factory.mktemp("bin") / "composecheck"
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=ROOT / "tests/tools/composecheck", check=True, timeout=600)
    return out


# The secrets compose requires (no defaults), as a user's .env gives them.
REQUIRED_ENV = {
    name: f"test-{name.lower()}"
    for name in (
        "VIDSEARCH_WORKER_TOKEN",
        "POSTGRES_PASSWORD",
        "AIRFLOW_JWT_SECRET",
        "MINIO_ROOT_PASSWORD",
        "WEAVIATE_API_KEY",
    )
}


def _check(binary: Path, *files: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in REQUIRED_ENV}
    environ.update(REQUIRED_ENV if env is None else env)
    return subprocess.run([str(binary), *map(str, files)], capture_output=True, text=True, timeout=60, env=environ)


@pytest.mark.parametrize("secret", sorted(REQUIRED_ENV))
def test_compose_refuses_to_start_without_each_secret(composecheck, secret):
    """No secret has a default a deployment could run with (a JWT secret everyone knows forges ADMIN
    tokens): leaving any one out fails validation, naming it."""
    env = {k: v for k, v in REQUIRED_ENV.items() if k != secret}
    result = _check(composecheck, *COMPOSE, env=env)
    assert result.returncode == 1 and secret in result.stderr, result.stderr


def test_compose_keeps_stores_private():
    """Weaviate takes API keys only (no anonymous access), the pipeline's connection carries the key,
    and Weaviate, MinIO and Postgres are published on loopback at most."""
    import yaml

    doc = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    services = doc["services"]
    weaviate = services["weaviate"]["environment"]
    assert weaviate["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] == "false"
    assert weaviate["AUTHENTICATION_APIKEY_ENABLED"] == "true"
    assert weaviate["AUTHENTICATION_APIKEY_ALLOWED_KEYS"].startswith("${WEAVIATE_API_KEY:?")
    assert "${WEAVIATE_API_KEY:?" in doc["x-airflow"]["environment"]["AIRFLOW_CONN_WEAVIATE_DEFAULT"]
    for name in ("weaviate", "minio", "postgres"):
        for port in services[name].get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    text = (ROOT / "docker-compose.yaml").read_text()
    assert "change-me" not in text and ":-airflow}" not in text


def test_compose_files_are_valid(composecheck):
    result = _check(composecheck, *COMPOSE)
    assert result.returncode == 0, result.stderr
    services = set(result.stdout.split())
    assert {
        "postgres",
        "weaviate",
        "minio",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    } <= services


def test_compose_pins_the_embedded_weaviate_version():
    from devstack.weaviate import WEAVIATE_VERSION

    compose = yaml.safe_load(COMPOSE[0].read_text())
    assert compose["services"]["weaviate"]["image"].endswith(f":{WEAVIATE_VERSION}")
    for name, service in compose["services"].items():
        if name in {"postgres", "weaviate", "minio", "airflow-apiserver"}:
            assert "healthcheck" in service, name
    gpu = yaml.safe_load(COMPOSE[1].read_text())
    devices = gpu["services"]["airflow-scheduler"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_the_validator_rejects_a_broken_compose_file(composecheck, tmp_path):
    broken = tmp_path / "docker-compose.yaml"
    data = yaml.safe_load(COMPOSE[0].read_text())
    data["services"]["weaviate"]["healthcheck"]["interval"] = {"not": "a duration"}
    data["services"]["postgres"]["restartt"] = "always"
    broken.write_text(yaml.safe_dump(data))
    (tmp_path / "images").mkdir()
    result = _check(composecheck, broken)
    assert result.returncode == 1 and "invalid" in result.stderr


def test_settings_file_matches_its_schema():
    settings = read_settings(ROOT / "airflow_settings.yaml")
    conns = {c.conn_id: c for c in settings.airflow.connections}
    assert {"vidsearch_postgres", "weaviate_default"} <= set(conns)
    assert conns["weaviate_default"].conn_extra["grpc_port"] == 50051
    # Placeholders only: no secret is committed.
    for conn in conns.values():
        assert conn.conn_password in (None, "", "CHANGE_ME")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["airflow"]["pools"].append({"pool_name": "x", "pool_slot": -1}), "pool_slot"),
        (lambda d: d["airflow"]["pools"].append({"pool_name": "x", "pool_slot": "cores"}), "pool_slot"),
        (lambda d: d["airflow"]["connections"][0].update(conn_port="five"), "conn_port"),
        (lambda d: d["airflow"].update(extras=[]), "extras"),
        (lambda d: d["airflow"]["variables"].append(dict(d["airflow"]["variables"][0])), "duplicate"),
    ],
)
def test_settings_schema_rejects_bad_files(tmp_path, mutate, message):
    data = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    mutate(data)
    path = tmp_path / "airflow_settings.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=message):
        read_settings(path)


def test_settings_load_into_airflow(airflow_db):
    env = dict(os.environ)
    subprocess.run(
        [sys.executable, "-m", "vidsearch_airflow.settings_loader", str(ROOT / "airflow_settings.yaml")],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    # Loading twice replaces, never duplicates.
    subprocess.run(
        [sys.executable, "-m", "vidsearch_airflow.settings_loader", str(ROOT / "airflow_settings.yaml")],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    pools = subprocess.run(
        [sys.executable, "-m", "airflow", "pools", "list", "--output", "json"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    settings = read_settings(ROOT / "airflow_settings.yaml")
    listed = {p["pool"]: int(p["slots"]) for p in json.loads(pools[pools.find("[") :])}
    for pool in settings.airflow.pools:
        assert listed[pool.pool_name] == pool.slots()
    # The CPU stages' pool is sized to this machine's cores.
    assert listed["cpu"] == (os.cpu_count() or 1)
    var = settings.airflow.variables[0]
    got = subprocess.run(
        [sys.executable, "-m", "airflow", "variables", "get", var.variable_name],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert got == var.variable_value
    assert shutil.which("go"), "Go is needed to build Weaviate and the compose validator"
