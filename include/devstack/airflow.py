"""Airflow 3 for the dev stack: its configuration (as env), its processes, its health.

Airflow is never imported here: every component runs as ``<this python> -m airflow <command>`` in its
own session, detached from the caller, with a pid file in ``data/run`` and its output in
``data/logs/airflow-<component>.log``. All configuration goes through environment variables built by
`env_for_stack`, which also carries the project's own settings (connections, storage root, models),
so the demo script and a user's shell can talk to the same stack.

State kept under ``data/airflow`` (``AIRFLOW_HOME``), generated once:

* ``simple_auth_manager_passwords.json``  the admin user's random password (SimpleAuthManager format)
* ``devstack-secrets.json``               fernet key, JWT secret and API secret key, shared by all
  components (they must agree, or the api-server rejects the scheduler's task tokens), and the warm
  worker's bearer token
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import secrets
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from . import (
    DevstackError,
    StackConfig,
    cache_dir,
    live_pid,
    log_tail,
    stop_process,
    write_pid_file,
)

# Start order; `down` stops them in reverse.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Keys of /api/v2/monitor/health that report on each heartbeat-based component.
HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
ADMIN_USER = "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
PRELOADING_EXECUTOR = "vidsearch_airflow.executor.PreloadingLocalExecutor"
# Values passed through unchanged from the caller's environment when set.
PASSTHROUGH = (
    "VIDSEARCH_TINY_MODELS",
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "VIDSEARCH_FFMPEG",
    "VIDSEARCH_FFPROBE",
    "VIDSEARCH_PRELOAD",
    "VIDSEARCH_PARALLEL_SLOTS",
)


# --------------------------------------------------------------------------------------------------
# Generated-once state
# --------------------------------------------------------------------------------------------------


def _write_private_json(path: Path, data: dict) -> None:
    """Write `data` to `path` atomically, readable by this user only (0600, whatever the umask or a
    leftover temporary file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def admin_password_file(cfg: StackConfig) -> Path:
    """The SimpleAuthManager passwords file (``{"admin": "<password>"}``)."""
    return cfg.airflow_home / "simple_auth_manager_passwords.json"


def admin_password(cfg: StackConfig) -> str:
    """The admin password, generated (random) and stored on first use; never hardcoded."""
    path = admin_password_file(cfg)
    passwords = json.loads(path.read_text() or "{}") if path.exists() else {}
    if not passwords.get(ADMIN_USER):
        passwords[ADMIN_USER] = secrets.token_urlsafe(12)
        _write_private_json(path, passwords)
    return passwords[ADMIN_USER]


def secrets_file(cfg: StackConfig) -> Path:
    """The stack's generated secrets (mode 0600)."""
    return cfg.airflow_home / "devstack-secrets.json"


def _secrets(cfg: StackConfig) -> dict[str, str]:
    """Fernet key, JWT secret, API secret key and the warm worker's token, shared by all components,
    generated once (random) into `secrets_file` (0600). The worker token reaches the warm worker and
    the tasks through their environment (`env_for_stack`); the warm worker does not start without it."""
    path = secrets_file(cfg)
    if path.exists():
        path.chmod(0o600)  # a file left readable by an older version (or by hand) is closed first
    values = json.loads(path.read_text()) if path.exists() else {}
    wanted = {
        "fernet_key": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "jwt_secret": lambda: secrets.token_urlsafe(32),
        "api_secret_key": lambda: secrets.token_urlsafe(32),
        # The warm worker's bearer token (callers: the Airflow tasks).
        "worker_token": lambda: secrets.token_urlsafe(32),
    }
    missing = {key: make() for key, make in wanted.items() if not values.get(key)}
    if missing:
        values.update(missing)
        _write_private_json(path, values)
    return values


def _postgres_credentials(cfg: StackConfig) -> dict[str, str]:
    from .postgres import load_credentials

    cfg.postgres_dir.mkdir(parents=True, exist_ok=True)
    return load_credentials(cfg.postgres_dir)


# --------------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------------


def api_url(cfg: StackConfig) -> str:
    return f"http://127.0.0.1:{cfg.airflow_port}"


def executor_parallelism(cpus: int | None = None) -> int:
    """LocalExecutor slots for this machine: 4 per core (at least 4). Most segment tasks wait (on the
    warm worker, Weaviate, Postgres); the CPU-heavy ones are held to one per core by the `cpu` pool.
    `VIDSEARCH_EXECUTOR_PARALLELISM` overrides it."""
    configured = os.environ.get("VIDSEARCH_EXECUTOR_PARALLELISM", "").strip()
    if configured:
        return max(1, int(configured))
    return max(4, 4 * (cpus or os.cpu_count() or 1))


def env_for_stack(cfg: StackConfig | None = None) -> dict[str, str]:
    """Everything a client needs to talk to the stack, as env vars (nothing from os.environ but the
    pass-through values and PYTHONPATH).

    Project settings: ``AIRFLOW_CONN_VIDSEARCH_POSTGRES`` (db ``vidsearch``),
    ``AIRFLOW_CONN_WEAVIATE_DEFAULT`` (JSON form read by the Weaviate provider hook),
    ``VIDSEARCH_STORAGE_ROOT`` (``file://<data>/objects``), ``VIDSEARCH_MODEL_CACHE``,
    ``VIDSEARCH_DATABASE_URL``, ``VIDSEARCH_WEAVIATE_*``, ``AIRFLOW_API_URL``,
    ``VIDSEARCH_AIRFLOW_USER`` / ``VIDSEARCH_AIRFLOW_PASSWORD_FILE``, ``PYTHONPATH``; plus the full
    Airflow configuration (``AIRFLOW_HOME``, ``AIRFLOW__*``) so the ``airflow`` CLI works too.
    Creates the generated-once credentials when they do not exist yet.
    """
    cfg = cfg or StackConfig.from_env()
    pg = _postgres_credentials(cfg)
    pg_base = f"{pg['user']}:{pg['password']}@127.0.0.1:{cfg.pg_port}"
    sec = _secrets(cfg)
    admin_password(cfg)
    weaviate_conn = {
        "conn_type": "weaviate",
        "host": "127.0.0.1",
        "port": cfg.weaviate_http_port,
        "extra": {
            "grpc_host": "127.0.0.1",
            "grpc_port": cfg.weaviate_grpc_port,
            "http_secure": False,
            "grpc_secure": False,
        },
    }
    python_path = [str(cfg.repo_root / "include"), str(cfg.repo_root / "plugins")]
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        entry = str(Path(entry).resolve()) if entry else ""
        if entry and entry not in python_path:
            python_path.append(entry)
    env = {
        # --- the project's own settings
        "VIDSEARCH_DATA_DIR": str(cfg.data_dir),
        "VIDSEARCH_STORAGE_ROOT": f"file://{cfg.objects_dir}",
        "VIDSEARCH_MODEL_CACHE": os.environ.get("VIDSEARCH_MODEL_CACHE") or str(cache_dir() / "models"),
        "VIDSEARCH_DATABASE_URL": f"postgresql://{pg_base}/vidsearch",
        "VIDSEARCH_WEAVIATE_URL": f"http://127.0.0.1:{cfg.weaviate_http_port}",
        "VIDSEARCH_WEAVIATE_HTTP_PORT": str(cfg.weaviate_http_port),
        "VIDSEARCH_WEAVIATE_GRPC_PORT": str(cfg.weaviate_grpc_port),
        # The warm detect+embed worker (devstack.worker); jobs fall back to a process when it is down.
        "VIDSEARCH_WORKER_URL": f"http://127.0.0.1:{cfg.worker_port}",
        "VIDSEARCH_WORKER_TOKEN": sec["worker_token"],
        "AIRFLOW_CONN_VIDSEARCH_POSTGRES": f"postgresql://{pg_base}/vidsearch",
        "AIRFLOW_CONN_WEAVIATE_DEFAULT": json.dumps(weaviate_conn),
        "AIRFLOW_API_URL": api_url(cfg),
        "VIDSEARCH_AIRFLOW_USER": ADMIN_USER,
        "VIDSEARCH_AIRFLOW_PASSWORD_FILE": str(admin_password_file(cfg)),
        "PYTHONPATH": os.pathsep.join(python_path),
        # --- Airflow configuration
        "AIRFLOW_HOME": str(cfg.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(cfg.repo_root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(cfg.repo_root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # LocalExecutor whose workers fork with the task libraries imported (vidsearch_airflow.executor),
        # as many as the machine can keep busy: the CPU stages are bounded by the `cpu` pool.
        "AIRFLOW__CORE__EXECUTOR": PRELOADING_EXECUTOR,
        "AIRFLOW__CORE__PARALLELISM": str(executor_parallelism()),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": sec["fernet_key"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url(cfg)}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(admin_password_file(cfg)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg_base}/airflow",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(cfg.airflow_port),
        "AIRFLOW__API__SECRET_KEY": sec["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": sec["jwt_secret"],
        # A scheduler loop that found nothing to do sleeps this long (default 1 s): each hop from a
        # finished task to its downstream waits for the next loop. On the 1-minute benchmark clip the
        # time with no task running fell from 3.1-4.8 s to 1.3-1.8 s, for ~0.05 core more when idle.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": os.environ.get(
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME", "0.25"
        ),
        # New DAG files show up within 30 s instead of the default 5 min.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
    }
    env.update({k: os.environ[k] for k in PASSTHROUGH if os.environ.get(k)})
    return env


def shell_exports(env: dict[str, str]) -> str:
    """`env` as ``export KEY=value`` lines, quoted for POSIX shells."""
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())


def process_env(cfg: StackConfig) -> dict[str, str]:
    """The environment of the Airflow processes: the caller's env overlaid with `env_for_stack`."""
    return {**os.environ, **env_for_stack(cfg)}


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------


def airflow_argv(*args: str) -> list[str]:
    """``<this python> -m airflow <args>``; raises `DevstackError` if Airflow is not installed."""
    if importlib.util.find_spec("airflow") is None:
        raise DevstackError(f"apache-airflow is not installed for {sys.executable}")
    return [sys.executable, "-m", "airflow", *args]


def migrate_db(cfg: StackConfig, timeout: float = 900) -> float:
    """Run ``airflow db migrate`` (idempotent), create missing pools, and return the duration; raises
    with the log tail."""
    log_path = cfg.log_file("airflow-db-migrate")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log_path, "ab") as log:
        try:
            result = subprocess.run(
                airflow_argv("db", "migrate"),
                env=process_env(cfg),
                cwd=cfg.airflow_home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise DevstackError(f"'airflow db migrate' timed out after {timeout:.0f}s; log {log_path}") from exc
    if result.returncode != 0:
        raise DevstackError(
            f"'airflow db migrate' failed (exit {result.returncode}); log {log_path}:\n{log_tail(log_path)}"
        )
    ensure_pools(cfg)
    return time.monotonic() - started


def required_pools(cfg: StackConfig) -> list:
    """The pools of `airflow_settings.yaml` (`weaviate_writers`, `gpu`): tasks in a pool that does not
    exist are never scheduled."""
    from vidsearch_airflow.airflow_settings import read_settings

    return read_settings(cfg.repo_root / "airflow_settings.yaml").airflow.pools


def ensure_pools(cfg: StackConfig, timeout: float = 300) -> list[str]:
    """Create the pools of `airflow_settings.yaml` that do not exist yet; returns their names.

    Idempotent; a pool that exists keeps the slots an operator gave it (UI: Admin → Pools).
    """
    env = process_env(cfg)

    def airflow_cli(*args: str) -> str:
        result = subprocess.run(
            airflow_argv(*args),
            env=env,
            cwd=cfg.airflow_home,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            command = " ".join(arg for arg in args[:3] if not arg.startswith("-"))
            raise DevstackError(
                f"'airflow {command}' failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}"
            )
        return result.stdout

    listed = airflow_cli("pools", "list", "--output", "json")
    start = listed.find("[")
    existing = {p.get("pool") for p in json.loads(listed[start:] if start >= 0 else "[]")}
    created = []
    for pool in required_pools(cfg):
        if pool.pool_name not in existing:
            airflow_cli("pools", "set", pool.pool_name, str(pool.slots()), pool.pool_description)
            created.append(pool.pool_name)
    return created


def component_pid(cfg: StackConfig, name: str) -> int | None:
    """The pid of Airflow component `name` if it runs (a stale pid file is removed)."""
    return live_pid(cfg.pid_file(f"airflow-{name}"))


def start_detached(cfg: StackConfig, component: str, argv: list[str], cwd: Path) -> int:
    """Start `argv` as stack component `component`: detached (own session), with the stack's
    environment, output appended to its log file and its pid in its pid file; return the pid."""
    log_path = cfg.log_file(component)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            env=process_env(cfg),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    write_pid_file(cfg.pid_file(component), proc.pid)
    return proc.pid


def start_component(cfg: StackConfig, name: str) -> int:
    """Start Airflow component `name` detached (own session, pid file, log file); return its pid."""
    args = [name]
    if name == "api-server":
        args += ["--host", "127.0.0.1", "--port", str(cfg.airflow_port)]
    return start_detached(cfg, f"airflow-{name}", airflow_argv(*args), cfg.airflow_home)


def stop_component(cfg: StackConfig, name: str, timeout: float = 60.0) -> bool:
    """SIGTERM component `name` (and its process group), SIGKILL after `timeout` s.

    Returns True when it was running. Tolerates a component that is already down.
    """
    pid = component_pid(cfg, name)
    if pid is not None:
        stop_process(pid, timeout=timeout)
    cfg.pid_file(f"airflow-{name}").unlink(missing_ok=True)
    return pid is not None


# --------------------------------------------------------------------------------------------------
# Health
# --------------------------------------------------------------------------------------------------


def health(cfg: StackConfig, timeout: float = 3.0) -> dict | None:
    """The JSON of ``/api/v2/monitor/health``, or None when the api-server does not answer."""
    try:
        with urllib.request.urlopen(f"{api_url(cfg)}/api/v2/monitor/health", timeout=timeout) as resp:
            return json.loads(resp.read())
    except Exception:  # noqa: BLE001 - a health probe: any failure means not healthy yet
        return None


def component_health(cfg: StackConfig, report: dict | None = None) -> dict[str, bool]:
    """Per component: healthy or not (api-server: it answers; others: their heartbeat is fresh)."""
    report = health(cfg) if report is None else report
    result = {"api-server": report is not None}
    for name, key in HEALTH_KEYS.items():
        status = ((report or {}).get(key) or {}).get("status")
        result[name] = status == "healthy"
    return result


def wait_healthy(cfg: StackConfig, timeout: float = 240.0) -> None:
    """Block until every component is alive and reported healthy.

    Raises `DevstackError` naming the failed component and its log as soon as one process exits, or
    naming the still-unhealthy ones at `timeout`.
    """
    deadline = time.monotonic() + timeout
    while True:
        for name in COMPONENTS:
            if component_pid(cfg, name) is None:
                log_path = cfg.log_file(f"airflow-{name}")
                raise DevstackError(f"Airflow {name} exited while starting; log {log_path}:\n{log_tail(log_path)}")
        status = component_health(cfg)
        if all(status.values()):
            return
        if time.monotonic() >= deadline:
            bad = [name for name, ok in status.items() if not ok]
            details = "\n".join(f"  {name}: log {cfg.log_file(f'airflow-{name}')}" for name in bad)
            raise DevstackError(
                f"Airflow not healthy after {timeout:.0f}s: {', '.join(bad)} "
                f"(health: {api_url(cfg)}/api/v2/monitor/health)\n{details}"
            )
        time.sleep(1.0)


def all_running_and_healthy(cfg: StackConfig) -> bool:
    """True when every component has a live process and the health endpoint reports all healthy."""
    if any(component_pid(cfg, name) is None for name in COMPONENTS):
        return False
    return all(component_health(cfg).values())


def running_pids(cfg: StackConfig) -> dict[str, int | None]:
    return {name: component_pid(cfg, name) for name in COMPONENTS}
