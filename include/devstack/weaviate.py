"""Weaviate as a native single-node server (no Docker), built once with ``go install``.

The binary lives at ``<cache>/weaviate-<version>/weaviate-server`` (`cache_dir()`: ``$VIDSEARCH_CACHE``
or ``~/.cache/vidsearch``). When missing it is built exactly like
``GOBIN=<that dir> go install github.com/weaviate/weaviate/cmd/weaviate-server@v<version>``
(needs Go and the Go module proxy; takes minutes; log in ``<cache>/weaviate-<version>-build.log``).
``$VIDSEARCH_WEAVIATE_BIN`` points at another binary instead.

Layout of a Weaviate `data_dir` (owned by this module):

* ``db/``                  ``PERSISTENCE_DATA_PATH``
* ``cluster-ports.json``   the internal gossip/data/raft ports, kept stable across restarts
* ``weaviate.pid``         pid file, unless the caller passes another `pid_file`

The server listens on 127.0.0.1 (REST at `http_port`, gRPC at `grpc_port`), anonymous access, no
vectorizer module (vectors come from our own models), telemetry and the profiling listener off.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from . import (
    DevstackError,
    cache_dir,
    free_port,
    live_pid,
    log_tail,
    parent_death_signal,
    port_is_free,
    process_alive,
    stop_process,
    wait_until,
    write_pid_file,
)

WEAVIATE_VERSION = "1.38.11"
GO_PACKAGE = "github.com/weaviate/weaviate/cmd/weaviate-server"
HOST = "127.0.0.1"
BINARY_NAME = "weaviate-server"


# --------------------------------------------------------------------------------------------------
# The binary
# --------------------------------------------------------------------------------------------------


def weaviate_binary(version: str = WEAVIATE_VERSION) -> Path:
    """The path of an executable ``weaviate-server`` of `version`, building it first if missing.

    Concurrent callers wait for one build (file lock). Raises `DevstackError` when Go is missing or
    the build fails (the message names the build log).
    """
    override = os.environ.get("VIDSEARCH_WEAVIATE_BIN", "").strip()
    if override:
        path = Path(override).expanduser()
        if not os.access(path, os.X_OK):
            raise DevstackError(f"VIDSEARCH_WEAVIATE_BIN={override} is not an executable file")
        return path
    target = cache_dir() / f"weaviate-{version}" / BINARY_NAME
    if os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f"weaviate-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.access(target, os.X_OK):  # another process may have built it while we waited
            _go_install(version, target)
    return target


def _go_executable() -> str:
    found = shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if os.access(p, os.X_OK)), None
    )
    if not found:
        raise DevstackError(
            "the Weaviate server binary is missing and Go is not installed to build it "
            "(install Go >= 1.26, e.g. via scripts/install-system-deps.sh, or set VIDSEARCH_WEAVIATE_BIN)"
        )
    return found


def _go_install(version: str, target: Path) -> None:
    """``go install`` into a temporary GOBIN, then move the binary into place atomically."""
    go = _go_executable()
    build_log = cache_dir() / f"weaviate-{version}-build.log"
    gobin = target.parent / f".gobin-{os.getpid()}"
    shutil.rmtree(gobin, ignore_errors=True)
    gobin.mkdir(parents=True)
    env = {**os.environ, "GOBIN": str(gobin)}
    print(f"devstack: building weaviate-server v{version} with Go (log: {build_log}) ...", flush=True)
    try:
        with open(build_log, "w") as log:
            result = subprocess.run(
                [go, "install", f"{GO_PACKAGE}@v{version}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=3600,
            )
        built = gobin / BINARY_NAME
        if result.returncode != 0 or not built.exists():
            raise DevstackError(
                f"building weaviate-server v{version} failed (exit {result.returncode}); "
                f"log {build_log}:\n{log_tail(build_log)}"
            )
        os.replace(built, target)
    finally:
        shutil.rmtree(gobin, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


def _free_port_pair(udp: bool = False) -> int:
    """A port p such that p and p+1 are both free (TCP; p also UDP when `udp`)."""
    while True:
        port = free_port()
        if port < 65535 and port_is_free(port, udp=udp) and port_is_free(port + 1):
            return port


def _cluster_ports(data_dir: Path) -> dict[str, int]:
    """Gossip, data, raft and raft-rpc ports: the recorded ones if all are free, else new free ones.

    In localhost cluster mode Weaviate derives a node's data port as gossip+1 and its raft RPC port
    as raft+1, so the ports come in two consecutive pairs. Raft remembers its own address, so stable
    ports keep restarts trivial; when they must change, the server's one-node recovery (enabled
    below) rewrites the single-node raft configuration.
    """
    path = data_dir / "cluster-ports.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        ports = {k: int(v) for k, v in json.loads(path.read_text()).items()}
        if (
            ports["data"] == ports["gossip"] + 1
            and ports["raft_rpc"] == ports["raft"] + 1
            and port_is_free(ports["gossip"], udp=True)
            and all(port_is_free(ports[k]) for k in ("data", "raft", "raft_rpc"))
        ):
            return ports
    gossip = _free_port_pair(udp=True)
    raft = gossip
    while abs(raft - gossip) < 2:
        raft = _free_port_pair()
    ports = {"gossip": gossip, "data": gossip + 1, "raft": raft, "raft_rpc": raft + 1}
    path.write_text(json.dumps(ports) + "\n")
    return ports


# Server tuning that passes through from the caller's environment when set (docs/configuration.md,
# "Weaviate memory and import"): Go's memory limit and GC target, how LSM segments are read (mmap or
# pread), and asynchronous vector indexing.
TUNING_ENV = ("GOMEMLIMIT", "GOGC", "PERSISTENCE_LSM_ACCESS_STRATEGY", "ASYNC_INDEXING")


def server_env(data_dir: Path, grpc_port: int, ports: dict[str, int]) -> dict[str, str]:
    """The complete environment of the server process (nothing inherited but PATH/HOME/TMPDIR and
    the `TUNING_ENV` variables)."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR", "TZ", *TUNING_ENV) if k in os.environ}
    env.update(
        {
            "PERSISTENCE_DATA_PATH": str(data_dir / "db"),
            "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
            "DEFAULT_VECTORIZER_MODULE": "none",
            "ENABLE_MODULES": "",
            "QUERY_DEFAULTS_LIMIT": "25",
            "GRPC_PORT": str(grpc_port),
            "CLUSTER_HOSTNAME": "node1",
            "CLUSTER_IN_LOCALHOST": "true",
            "CLUSTER_BIND_ADDR": HOST,
            "CLUSTER_ADVERTISE_ADDR": HOST,
            "CLUSTER_GOSSIP_BIND_PORT": str(ports["gossip"]),
            "CLUSTER_DATA_BIND_PORT": str(ports["data"]),
            "RAFT_PORT": str(ports["raft"]),
            "RAFT_INTERNAL_RPC_PORT": str(ports["raft_rpc"]),
            "RAFT_BOOTSTRAP_EXPECT": "1",
            "RAFT_ENABLE_ONE_NODE_RECOVERY": "true",
            "RAFT_TIMEOUTS_MULTIPLIER": "1",  # single node: elect itself in ~1 s instead of ~5 s
            "DISABLE_TELEMETRY": "true",
            "GO_PROFILING_DISABLE": "true",
            "PROMETHEUS_MONITORING_ENABLED": "false",
            "LOG_LEVEL": "info",
            "LOG_FORMAT": "text",
        }
    )
    return env


# --------------------------------------------------------------------------------------------------
# The server handle
# --------------------------------------------------------------------------------------------------


@dataclass
class WeaviateServer:
    """A running Weaviate: REST on ``127.0.0.1:http_port``, gRPC on `grpc_port`; `stop()` ends it."""

    data_dir: Path
    http_port: int
    grpc_port: int
    log_path: Path
    pid: int
    pid_file: Path
    host: str = HOST
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The REST base URL, ``http://127.0.0.1:<http_port>``."""
        return f"http://{self.host}:{self.http_port}"

    def is_ready(self) -> bool:
        """True when ``/v1/.well-known/ready`` answers 200."""
        return http_ok(f"{self.url}/v1/.well-known/ready")

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until ready; raise `DevstackError` with the log tail if it dies or times out."""

        def ready() -> bool:
            if not process_alive(self.pid):
                raise DevstackError(
                    f"Weaviate exited while starting (http {self.http_port}, grpc {self.grpc_port}); "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            return self.is_ready()

        if not wait_until(ready, timeout, 0.2):
            raise DevstackError(
                f"Weaviate was not ready at {self.url}/v1/.well-known/ready within {timeout:.0f}s; "
                f"log {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def is_running(self) -> bool:
        return process_alive(self.pid)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (graceful shutdown), SIGKILL after `timeout` s; removes the pid file.

        Safe to call twice or on a server that is already down.
        """
        if process_alive(self.pid):
            stop_process(self.pid, sig=signal.SIGTERM, timeout=timeout)
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=1)
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(self.pid_file.read_text().split()[0]) == self.pid:
                self.pid_file.unlink()

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET `url` answers with a 2xx status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except Exception:  # noqa: BLE001 - a readiness probe: any failure means not ready
        return False


def serves_port(pid: int, http_port: int) -> bool:
    """True when process `pid` is a weaviate-server started with ``--port <http_port>``."""
    try:
        cmd = psutil.Process(pid).cmdline()
        return Path(cmd[0]).name == BINARY_NAME and cmd[cmd.index("--port") + 1] == str(http_port)
    except (psutil.Error, ValueError, IndexError):
        return False


def start_weaviate(
    data_dir: Path,
    http_port: int,
    grpc_port: int,
    log_path: Path,
    *,
    pid_file: Path | None = None,
    detach: bool = False,
    wait: bool = True,
    timeout: float = 120.0,
) -> WeaviateServer:
    """Start (or reuse) the Weaviate of `data_dir` and, with `wait`, block until it is ready.

    A server recorded in `pid_file` that still runs on `http_port` is reused; one running on another
    port is stopped and replaced. Unless `detach`, the server is stopped when the calling process
    exits (atexit, and SIGTERM on parent death). Raises `DevstackError` naming the log file when the
    server dies or is not ready within `timeout` seconds. Builds the binary first if it is missing.
    """
    data_dir = Path(data_dir).resolve()
    (data_dir / "db").mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_file = Path(pid_file) if pid_file else data_dir / "weaviate.pid"

    server = None
    pid = live_pid(pid_file)
    if pid is not None:
        if serves_port(pid, http_port):
            server = WeaviateServer(data_dir, http_port, grpc_port, log_path, pid, pid_file)
        else:
            stop_process(pid, timeout=30)
            pid_file.unlink(missing_ok=True)
    if server is None:
        server = _spawn(data_dir, http_port, grpc_port, log_path, pid_file, detach)
    if not detach:
        atexit.register(server._stop_at_exit)
    if wait:
        try:
            server.wait_ready(timeout)
        except DevstackError:
            server.stop()
            raise
    return server


def _spawn(
    data_dir: Path, http_port: int, grpc_port: int, log_path: Path, pid_file: Path, detach: bool
) -> WeaviateServer:
    binary = weaviate_binary()
    ports = _cluster_ports(data_dir)
    argv = [str(binary), "--host", HOST, "--port", str(http_port), "--scheme", "http"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            cwd=data_dir,
            env=server_env(data_dir, grpc_port, ports),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detach else parent_death_signal(signal.SIGTERM),
        )
    write_pid_file(pid_file, proc.pid)
    return WeaviateServer(data_dir, http_port, grpc_port, log_path, proc.pid, pid_file, _proc=proc)
