"""The stack's warm detect+embed worker: `python -m vidsearch.models.worker_server` as a detached process.

Airflow's tasks find it through ``VIDSEARCH_WORKER_URL`` (set by `env_for_stack`) and send it their
detect+embed jobs, so the models load once per stack instead of once per segment. When it is down the
tasks start worker processes instead, so it speeds the stack up but is never needed for it to work.

It runs with the stack's environment (`airflow.process_env`): the bearer token ``VIDSEARCH_WORKER_TOKEN``,
generated once into ``data/airflow/devstack-secrets.json`` (mode 0600) and given to the tasks the same
way, and the storage root ``VIDSEARCH_STORAGE_ROOT`` its jobs are confined to. It listens on loopback
only and refuses to start without the token.
"""

from __future__ import annotations

import sys

from . import StackConfig, live_pid, stop_process, wait_until
from .airflow import start_detached
from .weaviate import http_ok

NAME = "worker"


def worker_url(cfg: StackConfig) -> str:
    return f"http://127.0.0.1:{cfg.worker_port}"


def worker_pid(cfg: StackConfig) -> int | None:
    """The warm worker's pid if it runs (a stale pid file is removed)."""
    return live_pid(cfg.pid_file(NAME))


def worker_healthy(cfg: StackConfig, timeout: float = 2.0) -> bool:
    """True when the warm worker answers its health check."""
    return http_ok(f"{worker_url(cfg)}/health", timeout=timeout)


def start_worker(cfg: StackConfig) -> int:
    """Start the warm worker detached (own session, pid file, log file); return its pid."""
    argv = [
        sys.executable,
        "-m",
        "vidsearch.models.worker_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(cfg.worker_port),
    ]
    return start_detached(cfg, NAME, argv, cfg.repo_root)


def wait_worker(cfg: StackConfig, timeout: float) -> bool:
    """Wait until the warm worker answers (False when it died or did not answer in `timeout` s)."""
    return wait_until(lambda: worker_healthy(cfg) or worker_pid(cfg) is None, timeout, 0.2) and worker_healthy(cfg)


def stop_worker(cfg: StackConfig, timeout: float = 30.0) -> int | None:
    """Stop the warm worker if it runs; returns the pid it had."""
    pid = worker_pid(cfg)
    if pid is not None:
        stop_process(pid, timeout=timeout)
    cfg.pid_file(NAME).unlink(missing_ok=True)
    return pid
